// CRC-32C (Castagnoli), the checksum of every on-disk structure (docs/FORMAT.md).
// Parameters: poly 0x1EDC6F41 (reflected 0x82F63B78), init 0xFFFFFFFF, reflected in and out,
// xorout 0xFFFFFFFF; check("123456789") == 0xE3069283.
// The CPU's CRC-32C instruction is used when it has one (SSE4.2, ARMv8 CRC); otherwise
// slicing-by-8 tables keep the commit path near memory speed.

import CEdgelogCRC

public enum CRC32C {
    /// True when checksums use the CPU instruction.
    public static let usesHardware = edgelog_crc32c_hw_available() != 0

    /// Eight 256-entry tables laid end to end: entry [k * 256 + b] is the CRC contribution of
    /// byte b seen k bytes before the end of an 8-byte block.
    private static let table: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 8 * 256)
        for byte in 0..<256 {
            var crc = UInt32(byte)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            table[byte] = crc
        }
        for byte in 0..<256 {
            var crc = table[byte]
            for k in 1..<8 {
                crc = table[Int(crc & 0xFF)] ^ (crc >> 8)
                table[k * 256 + byte] = crc
            }
        }
        return table
    }()

    /// CRC of `bytes`, continuing from a previous result when `seed` is given.
    public static func checksum(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return seed }
        if usesHardware { return ~edgelog_crc32c_hw(~seed, base, bytes.count) }
        return portable(bytes, seed: seed)
    }

    /// The table-driven CRC, whatever the CPU (tests compare it with the instruction).
    public static func portable(_ bytes: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return seed }
        let count = bytes.count
        var crc = ~seed
        table.withUnsafeBufferPointer { t in
            var i = 0
            while count - i >= 8 {
                let lo = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt32.self)) ^ crc
                let hi = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self))
                crc = t[7 * 256 + Int(lo & 0xFF)] ^ t[6 * 256 + Int((lo >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((lo >> 16) & 0xFF)] ^ t[4 * 256 + Int(lo >> 24)]
                    ^ t[3 * 256 + Int(hi & 0xFF)] ^ t[2 * 256 + Int((hi >> 8) & 0xFF)]
                    ^ t[256 + Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
                i += 8
            }
            while i < count {
                crc = t[Int((crc ^ UInt32(base.load(fromByteOffset: i, as: UInt8.self))) & 0xFF)] ^ (crc >> 8)
                i += 1
            }
        }
        return ~crc
    }

    public static func checksum(_ bytes: some Collection<UInt8>, seed: UInt32 = 0) -> UInt32 {
        if let result = bytes.withContiguousStorageIfAvailable({ checksum(UnsafeRawBufferPointer($0), seed: seed) }) {
            return result
        }
        return Array(bytes).withUnsafeBytes { checksum($0, seed: seed) }
    }
}
