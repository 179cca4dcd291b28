// The record line the independent decoder prints for format 6 records (`--frames`, `--segment`,
// `--packed-store`), built from the engine's records for the comparison tests.

import EdgelogCore
import EdgelogStore

func packedRecordLine(frame: UInt64, _ r: PackedRecord) -> String {
    let t = r.time
    return "{\"frame\":\(frame),\"type\":\(r.rawType),\"source\":\"\(r.source)\",\"seq\":\(r.seq),\"mono_ctr\":\(r.mono),"
        + "\"wall_ns\":\(t.wallNs),\"boot_ns\":\(t.bootNs),\"time_flags\":\(t.flags.rawValue),\"boot_seq\":\(r.bootSeq),"
        + "\"maxerror_us\":\(t.maxErrorUs),\"esterror_us\":\(t.estErrorUs),\"last_sync_ns\":\(t.lastSyncNs),"
        + "\"payload_hex\":\"\(Hex.encode(r.payload))\"}"
}
