// Raw deflate (RFC 1951) of a frame's record block with the previous frame's block as preset
// dictionary (docs/FORMAT.md appendix A.4), through the system zlib. Inflating is bounded by the
// length the frame states and must end exactly at the last stored byte: stored bytes are hostile.

import CZlib

/// Why stored bytes do not inflate to the frame's record block.
public enum InflateProblem: Error, Equatable, CustomStringConvertible, Sendable {
    /// zlib rejected the stream (its message).
    case corrupt(String)
    /// The stream would produce more than the frame's block_len.
    case tooLong(limit: Int)
    /// The stream ended before block_len bytes.
    case tooShort(got: Int, want: Int)
    /// The stored bytes go on after the deflate stream's final block.
    case trailingBytes(Int)
    /// The stream is not complete at the last stored byte.
    case unterminated
    /// zlib could not start (memory).
    case zlib(Int32)

    public var description: String {
        switch self {
        case .corrupt(let m): "deflate stream corrupt (\(m))"
        case .tooLong(let n): "deflate stream inflates past the stated \(n) bytes"
        case .tooShort(let got, let want): "deflate stream inflates to \(got) bytes, the frame states \(want)"
        case .trailingBytes(let n): "\(n) bytes after the end of the deflate stream"
        case .unterminated: "deflate stream ends before its final block"
        case .zlib(let code): "zlib error \(code)"
        }
    }
}

public enum Deflate {
    /// Compression level 9 for record blocks up to 4 KiB: on frames of the usual load it keeps most
    /// frames inside one 512-byte sector where level 6 needs two (DESIGN.md 13, PackedSegmentTests),
    /// for about the same time on blocks this small (bench section 7).
    public static let defaultLevel: Int32 = 9
    /// Level 1 above 4 KiB: a large block is a burst of records the commit should write at the
    /// device's pace, and there level 6 costs about twice level 1's time for about a fifth fewer
    /// bytes (DESIGN.md 13).
    public static let largeBlockLevel: Int32 = 1
    public static let largeBlock = 4096
    /// A large block is compressed against the last 8 KiB of its dictionary only: zlib indexes
    /// every dictionary byte it is given, and beyond 8 KiB that took more time than the bytes it
    /// saved (about 1 % of a large frame). The stream keeps the format: every back-reference into a
    /// suffix of the frame's dictionary is one into the whole dictionary a reader presets (A.4).
    public static let largeBlockDictionary = 8 * 1024
    /// Window bits for a raw stream (no zlib header), 32 KiB window.
    static let rawWindowBits: Int32 = -15

    /// The level the writer uses for a block of `count` bytes.
    public static func level(forBlockOf count: Int) -> Int32 { count <= largeBlock ? defaultLevel : largeBlockLevel }

    /// Compresses `block` as one raw deflate stream with `dictionary` preset; nil when zlib fails
    /// (memory), in which case the writer stores the block as it is.
    public static func compress(_ block: [UInt8], dictionary: [UInt8], level: Int32 = defaultLevel) -> [UInt8]? {
        Compressor(level: level)?.compress(block, dictionary: dictionary, level: level)
    }

    /// One deflate stream kept from frame to frame: zlib's set-up (about 270 KiB allocated and its
    /// hash table cleared) would otherwise cost more than compressing a small frame. Not for two
    /// threads at once; each writer holds its own.
    public final class Compressor {
        // zlib keeps a pointer to the stream in its state and checks it: the stream must not move.
        private let stream: UnsafeMutablePointer<z_stream>
        private var currentLevel: Int32

        /// Set up at `level`; nil when zlib cannot start (memory).
        public init?(level: Int32 = Deflate.defaultLevel) {
            stream = .allocate(capacity: 1)
            stream.initialize(to: z_stream())
            currentLevel = level
            guard deflateInit2_(stream, currentLevel, Z_DEFLATED, rawWindowBits, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION,
                                Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                stream.deinitialize(count: 1)
                stream.deallocate()
                return nil
            }
        }

        deinit {
            deflateEnd(stream)
            stream.deinitialize(count: 1)
            stream.deallocate()
        }

        /// As `Deflate.compress`: one raw stream of `block` after `dictionary`; nil when zlib fails.
        public func compress(_ block: [UInt8], dictionary: [UInt8], level: Int32) -> [UInt8]? {
            guard deflateReset(stream) == Z_OK else { return nil }
            // Right after a reset no input is pending, so a new level takes effect at once.
            if level != currentLevel {
                guard deflateParams(stream, level, Z_DEFAULT_STRATEGY) == Z_OK else { return nil }
                currentLevel = level
            }
            if !dictionary.isEmpty {
                // zlib uses the last 32 KiB; passing only those keeps the call cheap.
                let tail = dictionary.suffix(level == largeBlockLevel ? largeBlockDictionary : 32 * 1024)
                let ok = tail.withUnsafeBufferPointer { d in
                    deflateSetDictionary(stream, d.baseAddress, UInt32(d.count)) == Z_OK
                }
                guard ok else { return nil }
            }
            let bound = Int(deflateBound(stream, UInt(block.count)))
            var out = [UInt8](repeating: 0, count: bound)
            let produced: Int? = block.withUnsafeBufferPointer { inp in
                out.withUnsafeMutableBufferPointer { o in
                    // zlib does not write through next_in; its type lacks the const.
                    stream.pointee.next_in = UnsafeMutablePointer(mutating: inp.baseAddress)
                    stream.pointee.avail_in = UInt32(inp.count)
                    stream.pointee.next_out = o.baseAddress
                    stream.pointee.avail_out = UInt32(o.count)
                    defer {
                        stream.pointee.next_in = nil
                        stream.pointee.next_out = nil
                    }
                    guard deflate(stream, Z_FINISH) == Z_STREAM_END else { return nil }
                    return o.count - Int(stream.pointee.avail_out)
                }
            }
            guard let produced else { return nil }
            out.removeSubrange(produced...)
            return out
        }
    }

    /// Inflates `stored` with `dictionary` preset to exactly `length` bytes.
    public static func inflate(_ stored: UnsafeRawBufferPointer, dictionary: [UInt8], length: Int) throws(InflateProblem) -> [UInt8] {
        var s = z_stream()
        let initCode = inflateInit2_(&s, rawWindowBits, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        guard initCode == Z_OK else { throw .zlib(initCode) }
        defer { inflateEnd(&s) }
        if !dictionary.isEmpty {
            let tail = dictionary.suffix(32 * 1024)
            let code = tail.withUnsafeBufferPointer { d in inflateSetDictionary(&s, d.baseAddress, UInt32(d.count)) }
            guard code == Z_OK else { throw .zlib(code) }
        }
        // One byte more than stated, so that a stream that goes on is caught rather than cut.
        var out = [UInt8](repeating: 0, count: length + 1)
        var result: Result<Int, InflateProblem> = .success(0)
        out.withUnsafeMutableBufferPointer { o in
            s.next_in = UnsafeMutablePointer(mutating: stored.baseAddress?.assumingMemoryBound(to: UInt8.self))
            s.avail_in = UInt32(clamping: stored.count)
            s.next_out = o.baseAddress
            s.avail_out = UInt32(o.count)
            let code = CZlib.inflate(&s, Z_FINISH)
            let produced = o.count - Int(s.avail_out)
            switch code {
            case Z_STREAM_END:
                if produced > length { result = .failure(.tooLong(limit: length)) }
                else if produced < length { result = .failure(.tooShort(got: produced, want: length)) }
                else if s.avail_in != 0 { result = .failure(.trailingBytes(Int(s.avail_in))) }
                else { result = .success(produced) }
            case Z_BUF_ERROR, Z_OK:
                // Out of room (more than stated) or out of input (not terminated).
                result = .failure(s.avail_out == 0 ? .tooLong(limit: length) : .unterminated)
            case Z_NEED_DICT:
                result = .failure(.corrupt("asks for a dictionary"))
            default:
                let msg = s.msg.map { String(cString: $0) } ?? "code \(code)"
                result = .failure(.corrupt(msg))
            }
        }
        switch result {
        case .success(let n):
            out.removeSubrange(n...)
            return out
        case .failure(let p):
            throw p
        }
    }
}
