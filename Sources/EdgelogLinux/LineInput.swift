// Reads newline-delimited input from a file descriptor without Foundation and without a String per
// line. A signal (see StopSignal) ends a blocked read so the caller can commit and exit cleanly.

import Glibc

public final class LineInput {
    public enum Line {
        /// A complete line without its newline (and without a trailing CR).
        case line(UnsafeRawBufferPointer)
        /// A line longer than the limit: skipped up to its newline.
        case tooLong(Int)
    }

    private let fd: Int32
    private let limit: Int
    private var buffer: [UInt8]
    private var start = 0
    private var end = 0
    private var skipping = 0
    private var eof = false

    public init(fd: Int32 = 0, limit: Int = 16 << 20) {
        self.fd = fd
        self.limit = limit
        self.buffer = [UInt8](repeating: 0, count: 64 << 10)
    }

    /// Calls `body` for each line until end of input or until `shouldStop()` turns true.
    public func forEach(shouldStop: () -> Bool, _ body: (Line) -> Void) throws(InputError) {
        while true {
            // Hand out every complete line in the buffer.
            while let newline = buffer[start..<end].firstIndex(of: 0x0A) {
                if skipping > 0 {
                    body(.tooLong(skipping + newline - start))
                    skipping = 0
                } else {
                    var stop = newline
                    if stop > start && buffer[stop - 1] == 0x0D { stop -= 1 }
                    buffer.withUnsafeBytes { body(.line(UnsafeRawBufferPointer(rebasing: $0[start..<stop]))) }
                }
                start = newline + 1
            }
            if eof {
                if end > start || skipping > 0 {
                    if skipping > 0 {
                        body(.tooLong(skipping + end - start))
                    } else {
                        buffer.withUnsafeBytes { body(.line(UnsafeRawBufferPointer(rebasing: $0[start..<end]))) }
                    }
                }
                start = end
                return
            }
            if shouldStop() { return }
            // Make room: move the partial line to the front, grow up to the limit, or start skipping.
            if start > 0 {
                buffer.replaceSubrange(0..<(end - start), with: buffer[start..<end])
                end -= start
                start = 0
            }
            if end == buffer.count {
                if buffer.count < limit {
                    buffer.append(contentsOf: [UInt8](repeating: 0, count: min(buffer.count, limit - buffer.count)))
                } else {
                    skipping += end
                    end = 0
                }
            }
            let result = buffer.withUnsafeMutableBytes { Sys.readInterruptible(fd, UnsafeMutableRawBufferPointer(rebasing: $0[end...])) }
            switch result {
            case .success(0): eof = true
            case .success(let n): end += n
            case .failure(let e) where e.code == EINTR: continue
            case .failure(let e): throw InputError(description: "reading standard input: \(e)")
            }
        }
    }
}

/// Standard input could not be read (not a line problem: those are reported per line).
public struct InputError: Error, CustomStringConvertible {
    public let description: String
}

/// A flag set by SIGINT/SIGTERM: the process finishes its work (commit, close) and exits.
public enum StopSignal {
    nonisolated(unsafe) private static var raised: sig_atomic_t = 0

    public static func install() {
        let handler: @convention(c) (Int32) -> Void = { _ in StopSignal.raised = 1 }
        Sys.installHandler(SIGINT, handler)
        Sys.installHandler(SIGTERM, handler)
    }

    public static var isRaised: Bool { raised != 0 }
}

/// Buffered output to a file descriptor; `flush` writes everything through.
public final class FDOutput {
    private let fd: Int32
    private var pending: [UInt8] = []
    private let threshold: Int

    public init(fd: Int32, threshold: Int = 64 << 10) {
        self.fd = fd
        self.threshold = threshold
        pending.reserveCapacity(threshold)
    }

    public func write(_ text: String) {
        pending.append(contentsOf: text.utf8)
        if pending.count >= threshold { flush() }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) {
        pending.append(contentsOf: bytes)
        if pending.count >= threshold { flush() }
    }

    public func flush() {
        guard !pending.isEmpty else { return }
        _ = pending.withUnsafeBytes { Sys.write(fd, $0) }
        pending.removeAll(keepingCapacity: true)
    }

    /// Writes text straight through, unbuffered.
    public static func write(_ fd: Int32, _ text: String) {
        var text = text
        _ = text.withUTF8 { Sys.write(fd, UnsafeRawBufferPointer($0)) }
    }

    /// Writes one line straight through (acknowledgements must leave the process at once).
    public static func writeLine(_ fd: Int32, _ text: String) {
        var line = text
        line += "\n"
        _ = line.withUTF8 { Sys.write(fd, UnsafeRawBufferPointer($0)) }
    }
}
