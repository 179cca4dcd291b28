import EdgelogCore
import Testing

@Suite("CRC-32C")
struct CRC32CTests {
    @Test("check value of '123456789' is 0xE3069283")
    func checkValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    @Test("this machine's CRC instruction is used where the CPU has one")
    func hardwareIsUsed() {
        #if arch(x86_64)
        #expect(CRC32C.usesHardware, "x86-64 machines here have SSE4.2")
        #endif
        #expect(Array("123456789".utf8).withUnsafeBytes { CRC32C.portable($0) } == 0xE306_9283)
    }

    @Test("empty input gives 0, and a seed continues a checksum")
    func incremental() {
        #expect(CRC32C.checksum([UInt8]()) == 0)
        let whole = Array("The quick brown fox jumps over the lazy dog, twice over.".utf8)
        for split in [0, 1, 7, 8, 9, 31, whole.count] {
            let first = CRC32C.checksum(Array(whole[..<split]))
            #expect(CRC32C.checksum(Array(whole[split...]), seed: first) == CRC32C.checksum(whole))
        }
    }

    @Test("slicing-by-8 agrees with the bitwise definition at every length and alignment")
    func againstBitwise() {
        func bitwise(_ bytes: ArraySlice<UInt8>) -> UInt32 {
            var crc: UInt32 = 0xFFFF_FFFF
            for b in bytes {
                crc ^= UInt32(b)
                for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            }
            return ~crc
        }
        let data = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        for start in 0..<9 {
            for end in stride(from: start, through: data.count, by: 13) {
                let slice = Array(data[start..<end])
                #expect(CRC32C.checksum(slice) == bitwise(data[start..<end]))
                #expect(slice.withUnsafeBytes { CRC32C.portable($0) } == bitwise(data[start..<end]))
            }
        }
    }

    @Test("a span's CRC from prefix registers and zero shifts equals the CRC of the span itself")
    func spansFromPrefixes() {
        var x: UInt64 = 0x2545_F491_4F6C_DD1D
        let data = (0..<5000).map { _ -> UInt8 in
            x ^= x << 13; x ^= x >> 7; x ^= x << 17
            return UInt8(truncatingIfNeeded: x)
        }
        data.withUnsafeBytes { bytes in
            for n in [0, 1, 2, 3, 7, 64, 511, 512, 4099] {
                let zeros = [UInt8](repeating: 0, count: n)
                for r: UInt32 in [0, 1, 0x8000_0000, 0xDEAD_BEEF] {
                    #expect(CRC32C.shift(r, zeros: n) == zeros.withUnsafeBytes { CRC32C.register(r, $0) })
                }
            }
            for (origin, stride) in [(0, 512), (100, 64), (7, 1000)] {
                let prefix = CRC32C.PrefixRegisters(bytes, origin: origin, stride: stride)
                for seed: UInt32 in [0, 0x1234_5678] {
                    var from = origin
                    while from < bytes.count {
                        for to in [from, from + 1, from + stride, from + 3 * stride + 5, bytes.count] where to <= bytes.count {
                            let direct = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[from..<to]), seed: seed)
                            #expect(CRC32C.checksum(of: bytes, from: from, to: to, seed: seed, prefix: prefix) == direct, "\(origin) \(stride) \(from)..<\(to)")
                        }
                        from += stride
                    }
                }
                // Not on a boundary of the prefix: refused, not guessed.
                #expect(CRC32C.checksum(of: bytes, from: origin + 1, to: origin + 10, seed: 0, prefix: prefix) == nil)
            }
        }
    }
}
