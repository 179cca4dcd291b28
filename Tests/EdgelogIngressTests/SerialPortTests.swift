// The Linux serial port over a pseudo-terminal: one owner per line, poll-bounded reads, raw bytes.

import EdgelogHAL
import EdgelogLinux
import EdgelogTestKit
import Glibc
import Testing

@Suite("Linux serial port")
struct SerialPortTests {

    @Test("a second open of a line that is in use is refused with a clear error naming the port")
    func exclusive() throws {
        let pty = try PseudoTerminal()
        let path = pty.path
        let first = LinuxSerialPort(path: path, config: SerialConfig(baud: 9600))
        try first.open()
        let second = LinuxSerialPort(path: path, config: SerialConfig(baud: 9600))
        #expect(throws: HardwareError.self) { try second.open() }
        do { try second.open() } catch {
            #expect(error.kind == .busy && error.device == path, "\(error)")
            #expect(error.description.contains(path))
        }
        first.close()
        try second.open()
        second.close()
    }

    @Test("bytes written by the far end are read raw; a silent line costs exactly the timeout")
    func readAndTimeout() throws {
        let pty = try PseudoTerminal()
        let port = LinuxSerialPort(path: pty.path, config: SerialConfig(baud: 115200))
        try port.open()
        defer { port.close() }
        let sent: [UInt8] = [0x01, 0x03, 0x0A, 0x0D, 0xFF, 0x00]
        pty.send(sent)
        var got: [UInt8] = []
        for _ in 0..<10 where got.count < sent.count { got += try port.read(max: 64, timeoutMs: 200) }
        #expect(got == sent, "raw: no CR/LF translation, no 0xFF dropped")
        var t0 = timespec(), t1 = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t0)
        #expect(try port.read(max: 64, timeoutMs: 150).isEmpty)
        clock_gettime(CLOCK_MONOTONIC, &t1)
        let ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1_000_000
        #expect(ms >= 140 && ms < 600, "\(ms) ms")
        try port.write([0x55, 0xAA])
        #expect(pty.receive() == [0x55, 0xAA])
    }

    @Test("a port that does not exist is a typed error naming it")
    func missing() {
        let port = LinuxSerialPort(path: "/dev/ttyNOPE9", config: SerialConfig())
        do {
            try port.open()
            Issue.record("opened a port that does not exist")
        } catch {
            #expect(error.kind == .vanished && error.device == "/dev/ttyNOPE9" && error.errno == ENOENT, "\(error)")
        }
    }
}
