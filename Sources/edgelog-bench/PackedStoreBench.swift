// Section 8: the issue 12 figures measured on format 6's ring engine (PackedLog, FORMAT.md A.5 to
// A.9): partition bytes per retained record, write amplification counted at the block device, and
// records/s against SQLite (WAL, synchronous=FULL, a table with every field, one transaction per
// commit) and raw pwrite+fdatasync of the bytes the engine occupies, under (a) 20 readings a commit
// and (b) commits of about 32 KiB of records; then open (recovery) time on a 64 MiB and a 1 GiB
// store with the most commits the metadata interval allows since the last metadata write. The
// evidence store (edgelog run) still writes format 5; these are the engine's figures.

import CSQLite
import Dispatch
import EdgelogLinux
import EdgelogSeal
import EdgelogStore
import EdgelogTestKit
import Glibc

enum PackedStoreBench {
    /// The block device with a count of what is written to it.
    final class CountingDevice: BlockDevice {
        let inner: FileBlockDevice
        var bytesWritten: UInt64 = 0
        var name: String { inner.name }
        var sectorSize: Int { inner.sectorSize }
        var byteCount: UInt64 { inner.byteCount }
        init(_ inner: FileBlockDevice) { self.inner = inner }
        func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(DeviceError) { try inner.read(at: offset, into: buffer) }
        func write(at offset: UInt64, from buffer: UnsafeRawBufferPointer) throws(DeviceError) {
            bytesWritten += UInt64(buffer.count)
            try inner.write(at: offset, from: buffer)
        }
        func flush() throws(DeviceError) { try inner.flush() }
    }

    static let segmentSize = 1 << 20

    /// The commits of a workload: (a) one second of 20 sources each, (b) about 32 KiB of format 5 records each.
    static func commits(_ workload: Character, count: Int) -> [[PackedRecord]] {
        var w = SensorWorkload(sources: 20, seed: 7)
        if workload == "a" { return (0..<count).map { _ in w.nextSecond() } }
        var out: [[PackedRecord]] = []
        var pending: [PackedRecord] = [], bytes = 0
        while out.count < count {
            for r in w.nextSecond() {
                let n = PackingBench.format5Length(r)
                if bytes + n > 32 * 1024 - 128 - 432 { out.append(pending); pending = []; bytes = 0 }
                pending.append(r)
                bytes += n
            }
        }
        return Array(out.prefix(count))
    }

    struct StoreRun {
        var records = 0
        var commits = 0
        var elapsedNs: UInt64 = 0
        var latency = Latencies(capacity: 4096)
        var consumed: UInt64 = 0
        var committed: UInt64 = 0
        var deviceBytes: UInt64 = 0
        var writeSizes: [Int] = []
    }

    static func identity(_ signer: FileSigner) -> PackedLog.PackedIdentity {
        PackedLog.PackedIdentity(deviceID: Array(repeating: 1, count: 16), fwVerHash: Array(repeating: 2, count: 32), signer: signer)
    }

    static func openStore(path: String, size: UInt64) -> CountingDevice {
        do {
            try FileBlockDevice.createFile(path: path, size: size)
            let device = CountingDevice(try FileBlockDevice(path: path))
            try PackedLog.format(device: device, segmentSize: segmentSize, storeUUID: Array(repeating: 3, count: 16),
                                 deviceID: Array(repeating: 1, count: 16), wallNs: 0)
            return device
        } catch { die("packed store \(path): \(error)") }
    }

    static func runStore(path: String, commits: [[PackedRecord]], signer: FileSigner) -> StoreRun {
        let device = openStore(path: path, size: 256 << 20)
        var run = StoreRun()
        do {
            let log = try PackedLog(device: device, identity: identity(signer), clock: monoNs)
            let startBytes = device.bytesWritten
            var last = log.committedBytes
            for c in commits {
                let t0 = monoNs()
                try log.append(c)
                let dt = monoNs() &- t0
                run.elapsedNs += dt
                run.latency.add(dt)
                run.writeSizes.append(Int(log.committedBytes - last))
                last = log.committedBytes
                run.records += c.count
                run.commits += 1
            }
            run.consumed = UInt64(max(0, log.segmentsOpened - 1)) * UInt64(segmentSize) + UInt64(log.openSegmentBytes)
            run.committed = log.committedBytes
            run.deviceBytes = device.bytesWritten - startBytes
        } catch { die("packed store: \(error)") }
        return run
    }

    /// The same records through the product's path: the commit pipeline (double buffering, a flush
    /// per commit) over the format 6 evidence store (evidence records, policy, time fields), signing.
    static func runEvidenceStore(path: String, commits: [[PackedRecord]], signer: FileSigner) -> StoreRun {
        let device = openStore(path: path, size: 256 << 20)
        var run = StoreRun()
        let box = LatencyBox(count: 0)
        do {
            let identity = SealIdentity(deviceID: Array(repeating: 1, count: 16), fwVerHash: Array(repeating: 2, count: 32), signer: signer)
            let store = try PackedEvidenceStore.open(device: device, policy: .overwriteOldest, identity: identity,
                                                     clock: { CaptureTime(wallNs: 1_700_000_000_000_000_000, bootNs: Int64(monoNs())) })
            let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 60_000_000_000, blockNs: 60_000_000_000)) { _ in }
            pipeline.observeCommits { ns, _ in box.append(UInt64(ns)) }
            let startBytes = device.bytesWritten, startCommitted = store.log.committedBytes
            let t0 = monoNs()
            for c in commits {
                for r in c {
                    _ = r.payload.withUnsafeBytes { pipeline.append(source: r.source, payload: $0, time: r.time) }
                }
                try pipeline.flush()
                run.records += c.count
                run.commits += 1
            }
            run.elapsedNs = monoNs() &- t0
            try pipeline.close()
            run.consumed = UInt64(max(0, store.log.segmentsOpened - 1)) * UInt64(segmentSize) + UInt64(store.log.openSegmentBytes)
            run.committed = store.log.committedBytes - startCommitted
            run.deviceBytes = device.bytesWritten - startBytes
        } catch { die("evidence store: \(error)") }
        for ns in box.values { run.latency.add(ns) }
        return run
    }

    /// The log shared by the pipeline's two threads: the caller prepares frame n+1 while the I/O
    /// queue writes frame n (PackedLog's prepare and write touch separate state).
    final class SharedLog: @unchecked Sendable {
        let log: PackedLog
        init(_ log: PackedLog) { self.log = log }
    }

    /// The same commits through a two-stage pipeline: encode, deflate and sign on this thread, write
    /// and flush on another, at most one frame waiting (double buffering, as the evidence store does).
    static func runPipelined(path: String, commits: [[PackedRecord]], signer: FileSigner) -> (elapsedNs: UInt64, latency: Latencies) {
        let device = openStore(path: path, size: 256 << 20)
        var latency = Latencies(capacity: commits.count)
        let shared: SharedLog
        do { shared = SharedLog(try PackedLog(device: device, identity: identity(signer), clock: monoNs)) } catch { die("pipelined: \(error)") }
        let io = DispatchQueue(label: "packed-io")
        let slots = DispatchSemaphore(value: 2)
        let done = DispatchGroup()
        let box = LatencyBox(count: commits.count)
        let t0 = monoNs()
        for (i, c) in commits.enumerated() {
            slots.wait()
            let start = monoNs()
            let prepared: PackedLog.PreparedFrame
            do { prepared = try shared.log.prepare(c) } catch { die("pipelined prepare: \(error)") }
            done.enter()
            io.async {
                do { try shared.log.write(prepared) } catch { die("pipelined write: \(error)") }
                box.set(i, monoNs() &- start)
                slots.signal()
                done.leave()
            }
        }
        done.wait()
        let elapsed = monoNs() &- t0
        for ns in box.values { latency.add(ns) }
        return (elapsed, latency)
    }

    final class LatencyBox: @unchecked Sendable {
        var values: [UInt64]
        private let lock = Monitor()
        init(count: Int) { values = Array(repeating: 0, count: count) }
        func set(_ i: Int, _ v: UInt64) { values[i] = v }
        func append(_ v: UInt64) {
            lock.lock()
            values.append(v)
            lock.unlock()
        }
    }

    /// pwrite + fdatasync of the same sizes at consecutive offsets (O_DIRECT when the file takes it).
    static func runRaw(path: String, sizes: [Int]) -> (elapsedNs: UInt64, latency: Latencies) {
        var latency = Latencies(capacity: sizes.count)
        var elapsed: UInt64 = 0
        do {
            try FileBlockDevice.createFile(path: path, size: 256 << 20)
            let device = try FileBlockDevice(path: path)
            let buffer = AlignedBuffer(count: (sizes.max() ?? 4096 + 4095) / 4096 * 4096 + 4096)
            for i in 0..<buffer.bytes.count { buffer.bytes[i] = UInt8(truncatingIfNeeded: i &* 31) }
            var offset: UInt64 = 32768
            for n in sizes {
                let t0 = monoNs()
                try device.write(at: offset, from: UnsafeRawBufferPointer(rebasing: buffer.bytes[0..<n]))
                try device.flush()
                let dt = monoNs() &- t0
                elapsed += dt
                latency.add(dt)
                offset += UInt64(n)
                if offset + UInt64(buffer.bytes.count) > 256 << 20 { offset = 32768 }
            }
        } catch { die("raw: \(error)") }
        return (elapsed, latency)
    }

    /// The same records in SQLite, one transaction per commit; database bytes per row after a checkpoint.
    static func runSQLite(path: String, commits: [[PackedRecord]]) -> (elapsedNs: UInt64, latency: Latencies, bytesPerRow: Double) {
        for suffix in ["", "-wal", "-shm", "-journal"] { unlink(path + suffix) }
        let db = SQLiteBench.DB(path: path)
        guard db.queryText("PRAGMA journal_mode=WAL") == "wal" else { die("sqlite refused WAL") }
        db.exec("PRAGMA synchronous=FULL")
        db.exec("CREATE TABLE records (type INTEGER, source TEXT, seq INTEGER, mono INTEGER, wall INTEGER, boot INTEGER, boot_seq INTEGER, "
            + "time_flags INTEGER, maxerror INTEGER, esterror INTEGER, last_sync INTEGER, payload BLOB)")
        let insert = db.prepare("INSERT INTO records VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)")
        let begin = db.prepare("BEGIN"), commit = db.prepare("COMMIT")
        var latency = Latencies(capacity: commits.count)
        var elapsed: UInt64 = 0
        var rows = 0
        for c in commits {
            let t0 = monoNs()
            db.run(begin, "BEGIN")
            for r in c {
                sqlite3_bind_int64(insert, 1, Int64(r.rawType))
                r.source.withCString { sqlite3_bind_text(insert, 2, $0, -1, unsafeBitCast(-1, to: sqlite3_destructor_type.self)) }
                sqlite3_bind_int64(insert, 3, Int64(bitPattern: r.seq))
                sqlite3_bind_int64(insert, 4, Int64(bitPattern: r.mono))
                sqlite3_bind_int64(insert, 5, r.time.wallNs)
                sqlite3_bind_int64(insert, 6, r.time.bootNs)
                sqlite3_bind_int64(insert, 7, Int64(r.bootSeq))
                sqlite3_bind_int64(insert, 8, Int64(r.time.flags.rawValue))
                sqlite3_bind_int64(insert, 9, Int64(r.time.maxErrorUs))
                sqlite3_bind_int64(insert, 10, Int64(r.time.estErrorUs))
                sqlite3_bind_int64(insert, 11, r.time.lastSyncNs)
                r.payload.withUnsafeBytes { sqlite3_bind_blob(insert, 12, $0.baseAddress, Int32($0.count), unsafeBitCast(-1, to: sqlite3_destructor_type.self)) }
                db.run(insert, "INSERT")
                rows += 1
            }
            db.run(commit, "COMMIT")
            let dt = monoNs() &- t0
            elapsed += dt
            latency.add(dt)
        }
        sqlite3_finalize(insert)
        sqlite3_finalize(begin)
        sqlite3_finalize(commit)
        db.exec("PRAGMA wal_checkpoint(TRUNCATE)")
        let bytes = Double(Machine.fileSize(path) ?? 0)
        return (elapsed, latency, bytes / Double(max(rows, 1)))
    }

    /// Open time: analyze (both slots, the head segment's walk, the forward scan) of a store whose last
    /// metadata write is `behind` commits old; median of `runs`, O_DIRECT reads (no page cache).
    static func openMs(path: String, size: UInt64, commits: [[PackedRecord]], behind: Int, signer: FileSigner, runs: Int = 5) -> (ms: Double, adopted: Int) {
        let device = openStore(path: path, size: size)
        do {
            let log = try PackedLog(device: device, identity: identity(signer), clock: monoNs)
            log.metadataSeconds = .infinity
            log.metadataEvery = behind + 1
            for c in commits { try log.append(c) }
        } catch { die("open bench: \(error)") }
        var times: [Double] = []
        var adopted = 0
        for _ in 0..<runs {
            do {
                let d = try FileBlockDevice(path: path, readOnly: true)
                let t0 = monoNs()
                let h = try PackedHistory.analyze(device: d)
                times.append(Double(monoNs() &- t0) / 1e6)
                adopted = h.recovery.framesAdopted
            } catch { die("open bench: \(error)") }
        }
        return (median(times), adopted)
    }

    static func section(dir: DataDir, quick: Bool) {
        let signer = FileSigner(key: .ed25519(.init()), epoch: 1)
        var bpr: [Character: Double] = [:]
        for workload: Character in ["a", "b"] {
            let n = workload == "a" ? (quick ? 500 : 3000) : (quick ? 60 : 400)
            let cs = commits(workload, count: n)
            progress("packed store: workload \(workload), \(n) commits: engine, raw, SQLite")
            let store = runStore(path: dir.file("packed-\(workload).img"), commits: cs, signer: signer)
            let raw = runRaw(path: dir.file("packed-raw-\(workload).img"), sizes: store.writeSizes)
            let piped = runPipelined(path: dir.file("packed-pipe-\(workload).img"), commits: cs, signer: signer)
            let sqlite = runSQLite(path: dir.file("packed-\(workload).db"), commits: cs)
            _ = dir.file("packed-\(workload).db-wal")
            _ = dir.file("packed-\(workload).db-shm")
            let records = Double(store.records)
            let bytesPerRecord = Double(store.consumed) / records
            bpr[workload] = bytesPerRecord
            let storeRate = records / (Double(store.elapsedNs) / 1e9)
            let rawRate = records / (Double(raw.elapsedNs) / 1e9)
            let sqliteRate = records / (Double(sqlite.elapsedNs) / 1e9)
            print("packed_\(workload): records=\(store.records) commits=\(store.commits) records_per_commit=\(fixed(records / Double(store.commits), 1)) "
                + "bytes_per_record=\(fixed(bytesPerRecord, 1)) sqlite_bytes_per_row=\(fixed(sqlite.bytesPerRow, 1)) "
                + "bytes_per_record_vs_sqlite=\(fixed(bytesPerRecord / sqlite.bytesPerRow, 3))  # goals: <= 53 under (a); vs_sqlite <= 0.5")
            print("packed_\(workload)_writes: device_bytes=\(store.deviceBytes) committed_bytes=\(store.committed) "
                + "write_amplification=\(fixed(Double(store.deviceBytes) / Double(max(store.committed, 1)), 3))  # goals: <= 1.3 (a), <= 1.05 (b); metadata writes counted at the device")
            print("packed_\(workload)_speed: store_records_per_s=\(fixed(storeRate, 0)) raw_records_per_s=\(fixed(rawRate, 0)) sqlite_records_per_s=\(fixed(sqliteRate, 0)) "
                + "store_vs_raw=\(fixed(storeRate / rawRate, 2)) store_vs_sqlite=\(fixed(storeRate / sqliteRate, 2))  # goal: store_vs_raw >= 0.9; raw writes the bytes the store occupies")
            let pipedRate = records / (Double(piped.elapsedNs) / 1e9)
            print("packed_\(workload)_pipelined: store_records_per_s=\(fixed(pipedRate, 0)) store_vs_raw=\(fixed(pipedRate / rawRate, 2)) "
                + "commit_\(piped.latency.summary())  # prepare (encode, deflate, sign) of the next commit overlaps the write and flush of this one")
            print("packed_\(workload)_commit: \(store.latency.summary())")
            if workload == "a" {
                // The product's path: pipeline and evidence store (a flush per commit of 20 readings).
                let evidence = runEvidenceStore(path: dir.file("packed-evidence-\(workload).img"), commits: cs, signer: signer)
                let rate = Double(evidence.records) / (Double(evidence.elapsedNs) / 1e9)
                print("packed_\(workload)_evidence_store: bytes_per_record=\(fixed(Double(evidence.consumed) / Double(max(evidence.records, 1)), 1)) "
                    + "write_amplification=\(fixed(Double(evidence.deviceBytes) / Double(max(evidence.committed, 1)), 3)) "
                    + "store_records_per_s=\(fixed(rate, 0)) store_vs_raw=\(fixed(rate / rawRate, 2)) commit_\(evidence.latency.summary())  "
                    + "# CommitPipeline over PackedEvidenceStore, signed: what edgelog run will write")
            }
            print("packed_\(workload)_raw_commit: \(raw.latency.summary())")
            print("packed_\(workload)_sqlite_commit: \(sqlite.latency.summary())")
        }
        if let a = bpr["a"], let b = bpr["b"] {
            print("packed_retention_ratio=\(fixed(b / a, 3))  # records a full store keeps under (a) / under (b); goal >= 0.75")
            let days = Double(16_000_000_000 - 32768) / a / (20 * 86400)
            print("packed_days_on_16GB_at_20_per_s=\(fixed(days, 0))  # goal >= 180")
        }
        let history = commits("a", count: quick ? 600 : 2000)
        for (label, size) in [("64MiB", UInt64(64) << 20), ("1GiB", UInt64(1) << 30)] where !(quick && label == "1GiB") {
            progress("packed store: open time, \(label)")
            let r = openMs(path: dir.file("packed-open-\(label).img"), size: size, commits: history, behind: 255, signer: signer)
            print("packed_open_\(label)_ms=\(fixed(r.ms, 2)) frames_since_metadata=\(r.adopted)  # \(history.count) commits, the last metadata write 255 commits back")
        }
    }
}
