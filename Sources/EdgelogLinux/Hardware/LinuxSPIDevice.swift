// An SPI chip select through the kernel's spidev (/dev/spidevB.C): mode, word size and speed are
// set at open; each transfer is one SPI_IOC_MESSAGE with chip select held for all of its bytes.

import EdgelogHAL
import Glibc

public final class LinuxSPIDevice: SPIDevice, @unchecked Sendable {
    public let path: String
    public let config: SPIConfig
    private var fd: Int32 = -1

    public init(path: String, config: SPIConfig) {
        self.path = path
        self.config = config
    }

    deinit { if fd >= 0 { Sys.close(fd) } }

    private func opened() throws(HardwareError) -> Int32 {
        if fd >= 0 { return fd }
        guard config.mode <= 3, (1...32).contains(config.bitsPerWord), config.speedHz > 0 else {
            throw HardwareError(.invalidArgument, device: path, detail: "SPI mode \(config.mode), \(config.bitsPerWord) bits, \(config.speedHz) Hz")
        }
        let f: Int32
        switch Sys.open(path, O_RDWR | O_CLOEXEC) {
        case .success(let opened): f = opened
        case .failure(let e): throw .errno(e, device: path, doing: "open")
        }
        if case .failure(let e) = Sys.spiConfigure(f, mode: config.mode, bits: config.bitsPerWord, speedHz: config.speedHz) {
            Sys.close(f)
            throw .errno(e, device: path, doing: "set SPI mode \(config.mode), \(config.bitsPerWord) bits, \(config.speedHz) Hz")
        }
        fd = f
        return f
    }

    public func transfer(_ tx: [UInt8]) throws(HardwareError) -> [UInt8] {
        guard !tx.isEmpty, tx.count <= 4096 else {
            throw HardwareError(.invalidArgument, device: path, detail: "SPI transfer of \(tx.count) bytes (1...4096)")
        }
        let f = try opened()
        switch Sys.spiTransfer(f, tx, speedHz: config.speedHz, bits: config.bitsPerWord) {
        case .success(let rx): return rx
        case .failure(let e):
            // Closed so that the next transfer opens the device again (it may have been re-bound).
            Sys.close(f)
            fd = -1
            throw .errno(e, device: path, doing: "SPI_IOC_MESSAGE")
        }
    }
}
