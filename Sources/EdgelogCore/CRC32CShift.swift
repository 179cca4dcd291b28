// CRC-32C of many overlapping spans in linear time. A CRC register is linear over GF(2): the
// register after bytes X from register r is reg(0, X) xor shift(r, |X|), where shift moves r on
// by |X| zero bytes. So one pass of prefix registers over a buffer gives the CRC of any span of
// it in O(log length), and a search that tries one CRC per sector boundary (the verifier's frames
// past a walk's end, FORMAT.md A.11 item 5) costs the buffer once, not once per candidate: each
// candidate's length is claimed by bytes an attacker writes.

extension CRC32C {
    /// The raw register (no initial or final inversion) after `bytes`, from `register`.
    public static func register(_ register: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        ~checksum(bytes, seed: ~register)
    }

    /// `register` moved on by `count` zero bytes (negative counts: unchanged), in O(log count).
    public static func shift(_ register: UInt32, zeros count: Int) -> UInt32 {
        var v = register
        var n = UInt64(max(count, 0))
        var k = 0
        while n != 0 && k < zeroPowers.count {
            if n & 1 != 0 { v = apply(zeroPowers[k], v) }
            n >>= 1
            k += 1
        }
        return v
    }

    /// The CRC (as `checksum` gives it, continuing from `seed`) of `bytes[from ..< to]`, given the
    /// prefix registers of `bytes` at every `stride` bytes from `origin` (`PrefixRegisters`).
    public static func checksum(of bytes: UnsafeRawBufferPointer, from: Int, to: Int, seed: UInt32, prefix: PrefixRegisters) -> UInt32? {
        guard from >= prefix.origin, from <= to, to <= bytes.count, (from - prefix.origin) % prefix.stride == 0 else { return nil }
        let i = (from - prefix.origin) / prefix.stride
        let k = (to - prefix.origin) / prefix.stride
        guard i < prefix.registers.count, k < prefix.registers.count else { return nil }
        let tailStart = prefix.origin + k * prefix.stride
        let atEnd = register(prefix.registers[k], UnsafeRawBufferPointer(rebasing: bytes[tailStart..<to]))
        // reg(~seed, X[from..<to]) = shift(~seed, n) ^ reg(0, X[from..<to]), and
        // reg(0, X[from..<to]) = reg(0, X[origin..<to]) ^ shift(reg(0, X[origin..<from]), n).
        return ~(shift(~seed ^ prefix.registers[i], zeros: to - from) ^ atEnd)
    }

    /// The registers from 0 over `bytes[origin ..< origin + k * stride]` for every k that fits.
    public struct PrefixRegisters: Sendable {
        public let origin: Int
        public let stride: Int
        public let registers: [UInt32]

        public init(_ bytes: UnsafeRawBufferPointer, origin: Int, stride: Int) {
            self.origin = max(origin, 0)
            self.stride = max(stride, 1)
            var registers: [UInt32] = [0]
            var r: UInt32 = 0
            var p = self.origin
            while p + self.stride <= bytes.count {
                r = CRC32C.register(r, UnsafeRawBufferPointer(rebasing: bytes[p..<(p + self.stride)]))
                registers.append(r)
                p += self.stride
            }
            self.registers = registers
        }
    }

    /// zeroPowers[k]: the register after 2^k zero bytes, as the images of the 32 unit vectors.
    private static let zeroPowers: [[UInt32]] = {
        let zero: [UInt8] = [0]
        let one = zero.withUnsafeBytes { z in (0..<32).map { i in register(UInt32(1) << UInt32(i), z) } }
        var powers = [one]
        for _ in 1..<64 {
            let m = powers[powers.count - 1]
            powers.append((0..<32).map { i in apply(m, apply(m, UInt32(1) << UInt32(i))) })
        }
        return powers
    }()

    private static func apply(_ matrix: [UInt32], _ v: UInt32) -> UInt32 {
        var r: UInt32 = 0
        var bits = v
        var i = 0
        while bits != 0 {
            if bits & 1 != 0 { r ^= matrix[i] }
            bits >>= 1
            i += 1
        }
        return r
    }
}
