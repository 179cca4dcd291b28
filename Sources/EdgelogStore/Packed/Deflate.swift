// Raw deflate (RFC 1951) of a frame's record block with the previous frame's block as preset
// dictionary (docs/FORMAT.md appendix A.4): written through the system zlib, or ISA-L's igzip
// for large blocks, and read through zlib. Inflating is bounded by the
// length the frame states and must end exactly at the last stored byte: stored bytes are hostile.

import CIsal
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
    /// How a block is deflated. Every method writes one raw deflate stream (RFC 1951) that reads
    /// back with the whole dictionary preset (A.4: a writer may use any suffix of it, none included).
    public enum Method: Equatable, Sendable {
        /// zlib at `level`, against the last `dictionaryBytes` of the dictionary (at most 32 KiB count).
        case zlib(level: Int32, dictionaryBytes: Int)
        /// ISA-L's igzip at `level` (0 to 3), against no dictionary.
        case igzip(level: Int32)
    }

    /// zlib level 9 against the whole dictionary for record blocks up to 4 KiB: on frames of the
    /// usual load it keeps most frames inside one 512-byte sector where level 6 needs two (DESIGN.md
    /// 13, PackedSegmentTests), for about the same time on blocks this small (bench section 7), and
    /// the block before is most of what such a block can refer to.
    public static let defaultLevel: Int32 = 9
    public static let smallBlockMethod = Method.zlib(level: defaultLevel, dictionaryBytes: window)
    /// igzip level 1 above 4 KiB: a large block is a burst of records the commit should write at
    /// the device's pace, and refers mostly to itself. On the bench's 18 KiB blocks it takes about a
    /// third of zlib level 1's time for about 3 % fewer bytes (DESIGN.md 13).
    public static let largeBlockMethod = Method.igzip(level: 1)
    public static let largeBlock = 4096
    /// Window bits for a raw stream (no zlib header), 32 KiB window: no back-reference reaches
    /// further, so no more of a dictionary counts.
    static let rawWindowBits: Int32 = -15
    static let window = 32 * 1024

    /// The method the writer uses for a block of `count` bytes.
    public static func method(forBlockOf count: Int) -> Method { count <= largeBlock ? smallBlockMethod : largeBlockMethod }

    /// Compresses `block` as one raw deflate stream with `dictionary` preset (zlib at `level`, the
    /// whole dictionary); nil when zlib fails (memory), in which case the writer stores the block.
    public static func compress(_ block: [UInt8], dictionary: [UInt8], level: Int32 = defaultLevel) -> [UInt8]? {
        compress(block, dictionary: dictionary, method: .zlib(level: level, dictionaryBytes: window))
    }

    /// Compresses `block` by `method` against `dictionary`; nil when the library fails (memory).
    public static func compress(_ block: [UInt8], dictionary: [UInt8], method: Method) -> [UInt8]? {
        Compressor()?.compress(block, dictionary: dictionary, method: method)
    }

    /// One deflate stream kept from frame to frame: zlib's set-up (about 270 KiB allocated and its
    /// hash table cleared) would otherwise cost more than compressing a small frame; the same for
    /// igzip's stream and level buffer, made at first use. Not for two threads at once; each holds
    /// its own.
    public final class Compressor {
        // zlib keeps a pointer to the stream in its state and checks it: the stream must not move.
        private let stream: UnsafeMutablePointer<z_stream>
        private var currentLevel: Int32
        /// igzip's stream (its state holds the history buffer: about 100 KiB, not for the stack) and
        /// the level buffer of `level`.
        private var igzipStream: UnsafeMutablePointer<isal_zstream>?
        private var igzipBuffer: (level: Int32, bytes: UnsafeMutableRawBufferPointer)?

        /// Set up zlib at `level`; nil when zlib cannot start (memory).
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
            igzipStream?.deallocate()
            igzipBuffer?.bytes.deallocate()
        }

        /// As `Deflate.compress(_:dictionary:method:)`.
        public func compress(_ block: [UInt8], dictionary: [UInt8], method: Method) -> [UInt8]? {
            switch method {
            case .zlib(let level, let dictionaryBytes):
                return zlib(block, dictionary: dictionary.suffix(max(0, min(dictionaryBytes, window))), level: level)
            case .igzip(let level):
                return igzip(block, level: level)
            }
        }

        private func zlib(_ block: [UInt8], dictionary: ArraySlice<UInt8>, level: Int32) -> [UInt8]? {
            guard deflateReset(stream) == Z_OK else { return nil }
            // Right after a reset no input is pending, so a new level takes effect at once.
            if level != currentLevel {
                guard deflateParams(stream, level, Z_DEFAULT_STRATEGY) == Z_OK else { return nil }
                currentLevel = level
            }
            if !dictionary.isEmpty {
                let ok = dictionary.withUnsafeBufferPointer { d in
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

        private func igzip(_ block: [UInt8], level: Int32) -> [UInt8]? {
            guard (0...Int32(ISAL_DEF_MAX_LEVEL)).contains(level), block.count < Int(UInt32.max) / 2 else { return nil }
            let stream: UnsafeMutablePointer<isal_zstream>
            if let s = igzipStream {
                stream = s
            } else {
                // Zeroed in place: a value made first would sit on the thread's stack.
                let raw = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<isal_zstream>.stride,
                                                           alignment: MemoryLayout<isal_zstream>.alignment)
                raw.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<isal_zstream>.stride)
                stream = raw.bindMemory(to: isal_zstream.self, capacity: 1)
                igzipStream = stream
            }
            if igzipBuffer?.level != level {
                igzipBuffer?.bytes.deallocate()
                igzipBuffer = nil
                let size = Int(edgelog_igzip_level_buffer(UInt32(level)))
                igzipBuffer = (level, .allocate(byteCount: max(size, 1), alignment: 64))
            }
            guard let buffer = igzipBuffer?.bytes else { return nil }
            // A stream that does not shrink the block grows it by at most a stored block's header
            // each 64 KiB (igzip_lib.h); the writer stores such a block anyway.
            let bound = block.count + (block.count / 65535 + 1) * 5 + 64
            var produced: Int?
            let out = [UInt8](unsafeUninitializedCapacity: bound) { o, count in
                block.withUnsafeBufferPointer { inp in
                    isal_deflate_stateless_init(stream)
                    stream.pointee.level = UInt32(level)
                    stream.pointee.level_buf = buffer.baseAddress?.assumingMemoryBound(to: UInt8.self)
                    stream.pointee.level_buf_size = UInt32(buffer.count)
                    stream.pointee.gzip_flag = UInt16(IGZIP_DEFLATE)
                    stream.pointee.flush = UInt16(NO_FLUSH)
                    stream.pointee.end_of_stream = 1
                    // igzip does not write through next_in; its type lacks the const. The pointers
                    // are left behind: each call sets them again after the init above.
                    stream.pointee.next_in = UnsafeMutablePointer(mutating: inp.baseAddress)
                    stream.pointee.avail_in = UInt32(inp.count)
                    stream.pointee.next_out = o.baseAddress
                    stream.pointee.avail_out = UInt32(o.count)
                    if isal_deflate_stateless(stream) == COMP_OK, stream.pointee.avail_in == 0 {
                        produced = o.count - Int(stream.pointee.avail_out)
                    }
                }
                // Bytes igzip wrote; none when it failed (then the block is stored).
                count = produced ?? 0
            }
            guard produced != nil else { return nil }
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
            let tail = dictionary.suffix(window)
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
