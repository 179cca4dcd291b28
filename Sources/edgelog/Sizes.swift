// Byte sizes as people write them: 64M, 1G, 32K, or plain bytes (powers of 1024).

import ArgumentParser

struct ByteSize: ExpressibleByArgument {
    let bytes: UInt64

    init(bytes: UInt64) { self.bytes = bytes }

    init?(argument: String) {
        guard let last = argument.last else { return nil }
        let multipliers: [Character: UInt64] = ["K": 1 << 10, "k": 1 << 10, "M": 1 << 20, "m": 1 << 20, "G": 1 << 30, "g": 1 << 30]
        if let m = multipliers[last] {
            guard let n = UInt64(argument.dropLast()), n <= UInt64.max / m else { return nil }
            bytes = n * m
        } else {
            guard let n = UInt64(argument) else { return nil }
            bytes = n
        }
    }
}
