// Format 6's record block (docs/FORMAT.md appendix A.2, A.3): a frame's records encoded against
// the record before them and against the segment's source list, so that a reading costs its
// payload and about a dozen bytes. The decoder treats every byte as hostile.

import EdgelogCore

/// One record with owned bytes: what the encoder takes and the decoder gives back.
public struct PackedRecord: Equatable, Sendable {
    public var rawType: UInt16
    public var source: String
    public var seq: UInt64
    public var mono: UInt64
    public var time: CaptureTime
    public var bootSeq: UInt16
    public var payload: [UInt8]

    public init(rawType: UInt16, source: String, seq: UInt64, mono: UInt64, time: CaptureTime, bootSeq: UInt16, payload: [UInt8]) {
        self.rawType = rawType
        self.source = source
        self.seq = seq
        self.mono = mono
        self.time = time
        self.bootSeq = bootSeq
        self.payload = payload
    }

    public var type: RecordType? { RecordType(rawValue: rawType) }
}

/// Why a record block does not decode (the record's index in the block and the offset of the byte).
public struct RecordBlockProblem: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Kind: Equatable, Sendable {
        case varint(VarintProblem)
        case reservedHeadBits(UInt8)
        case badSourceName
        case sourceRedefined(String)
        case tooManySources
        case unknownSourceIndex(UInt64)
        case monoNotIncreasing
        case beyondBound(String)
        case countMismatch(decoded: Int, expected: Int)
        case trailingBytes(Int)
    }
    public var kind: Kind
    public var record: Int
    public var offset: Int

    public var description: String {
        let what: String = switch kind {
        case .varint(let p): "bad varint (\(p))"
        case .reservedHeadBits(let b): "reserved head bits set (0x\(String(b, radix: 16)))"
        case .badSourceName: "invalid source name"
        case .sourceRedefined(let name): "source \(name) defined twice in the segment"
        case .tooManySources: "more than \(RecordBlock.maxSources) sources in a segment"
        case .unknownSourceIndex(let i): "source index \(i) not defined"
        case .monoNotIncreasing: "mono_ctr does not increase"
        case .beyondBound(let field): "\(field) is 2^62 or more"
        case .countMismatch(let got, let want): "\(got) records where the frame says \(want)"
        case .trailingBytes(let n): "\(n) bytes after the last record"
        }
        return "record \(record) at block offset \(offset): \(what)"
    }
}

/// The state records are encoded against; reset at each segment's first frame, carried between frames.
public struct RecordBlockContext: Equatable, Sendable {
    public private(set) var sources: [String] = []
    private var index: [String: Int] = [:]
    public private(set) var lastSeq: [UInt64] = []
    public var prevMono: UInt64 = 0
    public var prevWall: Int64 = 0
    public var prevBoot: Int64 = 0
    public var timeFlags: UInt16 = 0
    public var bootSeq: UInt16 = 0
    public var maxErrorUs: UInt32 = CaptureTime.notSampled
    public var estErrorUs: UInt32 = CaptureTime.notSampled
    public var lastSyncNs: Int64 = 0
    /// The source the writer looked up last: sources usually come round in the same order, so the
    /// next one is tried before hashing the name. A cache, not state: not compared.
    private var hint = 0

    public init() {}

    public static func == (a: RecordBlockContext, b: RecordBlockContext) -> Bool {
        a.sources == b.sources && a.lastSeq == b.lastSeq && a.prevMono == b.prevMono && a.prevWall == b.prevWall
            && a.prevBoot == b.prevBoot && a.timeFlags == b.timeFlags && a.bootSeq == b.bootSeq && a.maxErrorUs == b.maxErrorUs
            && a.estErrorUs == b.estErrorUs && a.lastSyncNs == b.lastSyncNs
    }

    func sourceIndex(_ name: String) -> Int? { index[name] }

    /// `sourceIndex` for the writer, trying the source after the last one first.
    mutating func lookUp(_ name: String) -> Int? {
        let next = hint + 1 < sources.count ? hint + 1 : 0
        if next < sources.count && sources[next] == name {
            hint = next
            return next
        }
        guard let i = index[name] else { return nil }
        hint = i
        return i
    }

    mutating func addSource(_ name: String) -> Int {
        index[name] = sources.count
        sources.append(name)
        lastSeq.append(0)
        hint = sources.count - 1
        return sources.count - 1
    }

    mutating func setLastSeq(_ i: Int, _ seq: UInt64) { lastSeq[i] = seq }
}

public enum RecordBlock {
    /// Sources one segment may define (the store tracks 256 user sources plus the engine's).
    public static let maxSources = 1024
    /// seq and mono_ctr bound (FORMAT.md section 3.4).
    public static let bound: UInt64 = 1 << 62

    static let hasType: UInt8 = 1
    static let newSource: UInt8 = 2
    static let hasTimeQuality: UInt8 = 4

    /// Why a record cannot be encoded (a writer's error, not the card's).
    public enum EncodeProblem: Error, Equatable, Sendable {
        case badSourceName(String)
        case tooManySources
        case monoNotIncreasing(UInt64, after: UInt64)
        case beyondBound
        /// The payloads alone pass the limit the caller set (`encodeFrame`).
        case blockTooLong(limit: Int)
    }

    /// boot_ns is stored against the previous record's boot_ns moved by as much as wall_ns moved:
    /// both clocks advance together, so the delta is the clocks' drift (usually 0), not the time
    /// between captures (FORMAT.md A.3).
    @inline(__always)
    static func bootBase(wall: Int64, _ ctx: RecordBlockContext) -> UInt64 {
        UInt64(bitPattern: ctx.prevBoot) &+ (UInt64(bitPattern: wall) &- UInt64(bitPattern: ctx.prevWall))
    }

    /// The most bytes a record's fields take besides its source name and payload: the head, the
    /// type, the source index or name length, four 64-bit varints, the time quality (five varints)
    /// and the payload length.
    static let maxFieldBytes = 1 + 3 + 2 + 4 * 10 + (3 + 3 + 5 + 5 + 10) + 10

    /// Appends `r` to `out`, encoded against `ctx`, and moves `ctx` on.
    public static func append(_ r: PackedRecord, to out: inout [UInt8], context ctx: inout RecordBlockContext) throws(EncodeProblem) {
        out.append(contentsOf: try encode([r], context: &ctx))
    }

    /// The block of `records` encoded against `ctx`; `ctx` moves on only when every record encodes.
    public static func encode(_ records: [PackedRecord], context ctx: inout RecordBlockContext) throws(EncodeProblem) -> [UInt8] {
        try encodeFrame(records, context: &ctx).block
    }

    /// `encode`, and what the frame's state needs from the records (A.6): the context's indices of
    /// the sources they name, each once, in the order first named, and how many are data records.
    /// Written through a pointer into a block sized for the worst case: a frame of large commits
    /// encodes a few hundred records, and appending byte by byte to an array cost about twice as much.
    /// Records whose payloads alone pass `payloadLimit` are refused before that block is allocated.
    static func encodeFrame(_ records: [PackedRecord], context ctx: inout RecordBlockContext,
                            payloadLimit: Int = .max) throws(EncodeProblem) -> (block: [UInt8], sources: [Int], dataRecords: Int) {
        var bound = 0, payloads = 0
        for i in records.indices {
            let payload = records[i].payload.count
            guard payload <= payloadLimit - payloads else { throw .blockTooLong(limit: payloadLimit) }
            payloads += payload
            let (n, o) = bound.addingReportingOverflow(payload &+ records[i].source.utf8.count &+ maxFieldBytes)
            guard !o else { throw .beyondBound }
            bound = n
        }
        var c = ctx
        var problem: EncodeProblem?
        var named: [Int] = []
        var seen = [Bool](repeating: false, count: c.sources.count)
        var data = 0
        let block = [UInt8](unsafeUninitializedCapacity: bound) { buffer, count in
            count = 0
            guard let base = buffer.baseAddress else { return }
            var w = BlockWriter(base)
            for i in records.indices {
                let source: Int
                do throws(EncodeProblem) { source = try encodeOne(records[i], into: &w, context: &c) } catch {
                    problem = error
                    return
                }
                if source >= seen.count { seen.append(contentsOf: repeatElement(false, count: source + 1 - seen.count)) }
                if !seen[source] {
                    seen[source] = true
                    named.append(source)
                }
                if records[i].rawType == RecordType.data.rawValue { data += 1 }
            }
            count = w.count
        }
        if let problem { throw problem }
        ctx = c
        return (block, named, data)
    }

    /// Writes into memory the caller sized for the records (`encode`'s bound).
    struct BlockWriter {
        let base: UnsafeMutablePointer<UInt8>
        var count = 0
        init(_ base: UnsafeMutablePointer<UInt8>) { self.base = base }

        @inline(__always) mutating func byte(_ b: UInt8) {
            base[count] = b
            count &+= 1
        }

        @inline(__always) mutating func varint(_ value: UInt64) {
            var v = value
            while v >= 0x80 {
                byte(UInt8(truncatingIfNeeded: v) | 0x80)
                v >>= 7
            }
            byte(UInt8(truncatingIfNeeded: v))
        }

        @inline(__always) mutating func bytes(_ b: UnsafeRawBufferPointer) {
            guard let from = b.baseAddress, !b.isEmpty else { return }
            (base + count).update(from: from.assumingMemoryBound(to: UInt8.self), count: b.count)
            count &+= b.count
        }
    }

    /// Encodes `r` against `ctx` and moves `ctx` on; returns the index of its source in `ctx`.
    /// Throws before writing or moving anything.
    static func encodeOne(_ r: PackedRecord, into w: inout BlockWriter, context ctx: inout RecordBlockContext) throws(EncodeProblem) -> Int {
        guard r.mono > ctx.prevMono else { throw .monoNotIncreasing(r.mono, after: ctx.prevMono) }
        guard r.seq < bound, r.mono < bound else { throw .beyondBound }
        let existing = ctx.lookUp(r.source)
        if existing == nil {
            let n = r.source.utf8.count
            guard n >= 1, n <= SourceName.maxLength,
                  Array(r.source.utf8).withUnsafeBytes({ SourceName.isValid($0) }) else { throw .badSourceName(r.source) }
            guard ctx.sources.count < maxSources else { throw .tooManySources }
        }
        let t = r.time
        let timeChanged = t.flags.rawValue != ctx.timeFlags || r.bootSeq != ctx.bootSeq || t.maxErrorUs != ctx.maxErrorUs
            || t.estErrorUs != ctx.estErrorUs || t.lastSyncNs != ctx.lastSyncNs
        var head: UInt8 = 0
        if r.rawType != RecordType.data.rawValue { head |= hasType }
        if existing == nil { head |= newSource }
        if timeChanged { head |= hasTimeQuality }
        w.byte(head)
        if head & hasType != 0 { w.varint(UInt64(r.rawType)) }
        let i: Int
        if let existing {
            i = existing
            w.varint(UInt64(i))
        } else {
            var name = r.source
            name.withUTF8 { u in
                w.byte(UInt8(u.count))
                w.bytes(UnsafeRawBufferPointer(u))
            }
            i = ctx.addSource(r.source)
        }
        w.varint(Varint.zigzag(r.seq, base: ctx.lastSeq[i]))
        ctx.setLastSeq(i, r.seq)
        w.varint(r.mono - ctx.prevMono - 1)
        w.varint(Varint.zigzag(UInt64(bitPattern: t.wallNs), base: UInt64(bitPattern: ctx.prevWall)))
        w.varint(Varint.zigzag(UInt64(bitPattern: t.bootNs), base: bootBase(wall: t.wallNs, ctx)))
        if timeChanged {
            w.varint(UInt64(t.flags.rawValue))
            w.varint(UInt64(r.bootSeq))
            w.varint(UInt64(t.maxErrorUs))
            w.varint(UInt64(t.estErrorUs))
            w.varint(Varint.zigzag(UInt64(bitPattern: t.lastSyncNs), base: UInt64(bitPattern: ctx.lastSyncNs)))
            ctx.timeFlags = t.flags.rawValue
            ctx.bootSeq = r.bootSeq
            ctx.maxErrorUs = t.maxErrorUs
            ctx.estErrorUs = t.estErrorUs
            ctx.lastSyncNs = t.lastSyncNs
        }
        w.varint(UInt64(r.payload.count))
        r.payload.withUnsafeBytes { w.bytes($0) }
        ctx.prevMono = r.mono
        ctx.prevWall = t.wallNs
        ctx.prevBoot = t.bootNs
        return i
    }

    /// Decodes a whole block of `count` records against `ctx`, calling `each` per record; `ctx` is
    /// moved on only when the whole block is valid.
    public static func decode(_ block: UnsafeRawBufferPointer, count: Int, context ctx: inout RecordBlockContext,
                              _ each: (PackedRecord) throws -> Void = { _ in }) throws -> Void {
        var c = ctx
        var cur = ByteCursor(block)
        var n = 0
        while !cur.atEnd {
            guard n < count else { throw RecordBlockProblem(kind: .countMismatch(decoded: n + 1, expected: count), record: n, offset: cur.offset) }
            let r = try decodeOne(&cur, record: n, context: &c)
            try each(r)
            n += 1
        }
        guard n == count else { throw RecordBlockProblem(kind: .countMismatch(decoded: n, expected: count), record: n, offset: cur.offset) }
        ctx = c
    }

    static func decodeOne(_ cur: inout ByteCursor, record n: Int, context c: inout RecordBlockContext) throws(RecordBlockProblem) -> PackedRecord {
        let start = cur.offset
        func fail(_ k: RecordBlockProblem.Kind) -> RecordBlockProblem { RecordBlockProblem(kind: k, record: n, offset: start) }
        do {
            let head = try cur.byte()
            guard head & ~(hasType | newSource | hasTimeQuality) == 0 else { throw fail(.reservedHeadBits(head)) }
            var rawType = RecordType.data.rawValue
            if head & hasType != 0 { rawType = UInt16(try cur.varint(max: UInt64(UInt16.max))) }
            let i: Int
            if head & newSource != 0 {
                let len = Int(try cur.byte())
                guard len >= 1, len <= SourceName.maxLength else { throw fail(.badSourceName) }
                let name = try cur.take(len)
                guard SourceName.isValid(name) else { throw fail(.badSourceName) }
                let s = String(decoding: name, as: UTF8.self)
                guard c.sourceIndex(s) == nil else { throw fail(.sourceRedefined(s)) }
                guard c.sources.count < maxSources else { throw fail(.tooManySources) }
                i = c.addSource(s)
            } else {
                let v = try cur.varint()
                guard v < UInt64(c.sources.count) else { throw fail(.unknownSourceIndex(v)) }
                i = Int(v)
            }
            let seq = Varint.unzigzag(try cur.varint(), base: c.lastSeq[i])
            guard seq < bound else { throw fail(.beyondBound("seq")) }
            let dm = try cur.varint()
            // mono = prev + dm + 1 without passing 2^64 - 1, then the 2^62 bound.
            guard dm < UInt64.max - c.prevMono else { throw fail(.monoNotIncreasing) }
            let mono = c.prevMono + dm + 1
            guard mono < bound else { throw fail(.beyondBound("mono_ctr")) }
            let wall = Int64(bitPattern: Varint.unzigzag(try cur.varint(), base: UInt64(bitPattern: c.prevWall)))
            let boot = Int64(bitPattern: Varint.unzigzag(try cur.varint(), base: bootBase(wall: wall, c)))
            if head & hasTimeQuality != 0 {
                c.timeFlags = UInt16(try cur.varint(max: UInt64(UInt16.max)))
                c.bootSeq = UInt16(try cur.varint(max: UInt64(UInt16.max)))
                c.maxErrorUs = UInt32(try cur.varint(max: UInt64(UInt32.max)))
                c.estErrorUs = UInt32(try cur.varint(max: UInt64(UInt32.max)))
                c.lastSyncNs = Int64(bitPattern: Varint.unzigzag(try cur.varint(), base: UInt64(bitPattern: c.lastSyncNs)))
            }
            let plen = try cur.varint(max: UInt64(cur.remaining))
            let payload = Array(try cur.take(Int(plen)))
            c.setLastSeq(i, seq)
            c.prevMono = mono
            c.prevWall = wall
            c.prevBoot = boot
            let time = CaptureTime(wallNs: wall, bootNs: boot, flags: TimeFlags(rawValue: c.timeFlags),
                                   maxErrorUs: c.maxErrorUs, estErrorUs: c.estErrorUs, lastSyncNs: c.lastSyncNs)
            return PackedRecord(rawType: rawType, source: c.sources[i], seq: seq, mono: mono, time: time, bootSeq: c.bootSeq, payload: payload)
        } catch let p as VarintProblem {
            throw fail(.varint(p))
        } catch let p as RecordBlockProblem {
            throw p
        } catch {
            throw fail(.varint(.truncated))
        }
    }
}
