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
}
