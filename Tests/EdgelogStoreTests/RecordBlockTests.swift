// Format 6's record block and its deflate (docs/FORMAT.md appendix A): every field survives the
// round trip whatever its value, hostile bytes give typed errors, and the encoding is as small as
// the appendix says.

import EdgelogCore
import EdgelogStore
import EdgelogTestKit
import Testing

private func randomRecords(_ rng: inout SplitMix64, count: Int, mono: inout UInt64, sources: Int) -> [PackedRecord] {
    let extremes: [Int64] = [0, 1, -1, .max, .min, 1_790_000_000_000_000_000]
    return (0..<count).map { _ in
        mono += 1 + (rng.next() % 4 == 0 ? rng.next() % 1_000_000 : 0)
        func pick() -> Int64 { rng.next() % 5 == 0 ? extremes[Int(rng.next() % UInt64(extremes.count))] : Int64(bitPattern: rng.next()) >> Int64(rng.next() % 40) }
        let time = CaptureTime(wallNs: pick(), bootNs: pick(), flags: TimeFlags(rawValue: UInt16(truncatingIfNeeded: rng.next() % 3 == 0 ? rng.next() : 1)),
                               maxErrorUs: rng.next() % 3 == 0 ? UInt32.max : UInt32(truncatingIfNeeded: rng.next()),
                               estErrorUs: UInt32(truncatingIfNeeded: rng.next() % 7), lastSyncNs: rng.next() % 2 == 0 ? 0 : pick())
        let type: UInt16 = rng.next() % 4 == 0 ? UInt16(truncatingIfNeeded: rng.next()) : 1
        let len = Int(rng.next() % 300)
        let payload = (0..<len).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        return PackedRecord(rawType: type, source: "s\(rng.next() % UInt64(sources))", seq: rng.next() % (1 << 62), mono: mono,
                            time: time, bootSeq: UInt16(truncatingIfNeeded: rng.next() % 3), payload: payload)
    }
}

private func encode(_ records: [PackedRecord], _ ctx: inout RecordBlockContext) throws -> [UInt8] {
    var out: [UInt8] = []
    for r in records { try RecordBlock.append(r, to: &out, context: &ctx) }
    return out
}

private func decode(_ block: [UInt8], count: Int, _ ctx: inout RecordBlockContext) throws -> [PackedRecord] {
    var got: [PackedRecord] = []
    try block.withUnsafeBytes { try RecordBlock.decode($0, count: count, context: &ctx) { got.append($0) } }
    return got
}

@Suite("Format 6 record block")
struct RecordBlockTests {
    @Test("varints: shortest encodings round-trip; overlong, unterminated and 65-bit ones are refused")
    func varints() throws {
        for v: UInt64 in [0, 1, 127, 128, 300, 1 << 35, UInt64.max - 1, UInt64.max] {
            var out: [UInt8] = []
            Varint.append(v, to: &out)
            #expect(out.count == Varint.length(v))
            let back = try out.withUnsafeBytes { b in var c = ByteCursor(b); return try c.varint() }
            #expect(back == v)
        }
        func read(_ bytes: [UInt8]) -> VarintProblem? {
            bytes.withUnsafeBytes { b -> VarintProblem? in
                var c = ByteCursor(b)
                do throws(VarintProblem) { _ = try c.varint(); return nil } catch { return error }
            }
        }
        #expect(read([0x80, 0x00]) == .overlong)
        #expect(read([0x81, 0x80, 0x00]) == .overlong)
        #expect(read([0x80]) == .truncated)
        #expect(read([]) == .truncated)
        #expect(read(Array(repeating: 0xFF, count: 9) + [0x02]) == .overflow)
        #expect(read(Array(repeating: 0xFF, count: 10) + [0x01]) == .overflow)
        #expect(read(Array(repeating: 0xFF, count: 9) + [0x01]) == nil)
        for (v, b): (UInt64, UInt64) in [(0, .max), (.max, 0), (5, 7), (UInt64(bitPattern: Int64.min), UInt64(bitPattern: Int64.max))] {
            #expect(Varint.unzigzag(Varint.zigzag(v, base: b), base: b) == v)
        }
        #expect(Varint.zigzag(8, base: 7) == 2)
        #expect(Varint.zigzag(6, base: 7) == 1)
    }

    @Test("any records round-trip through blocks that carry the context from frame to frame", arguments: [1, 2, 3])
    func roundTrip(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        var mono: UInt64 = 0
        var enc = RecordBlockContext(), dec = RecordBlockContext()
        for _ in 0..<40 {
            let records = randomRecords(&rng, count: Int(rng.next() % 30), mono: &mono, sources: 50)
            let block = try encode(records, &enc)
            let back = try decode(block, count: records.count, &dec)
            #expect(back == records)
            #expect(dec == enc)
        }
    }

    @Test("the usual record costs what FORMAT.md says: 8 to 14 bytes besides its payload")
    func overhead() throws {
        var w = SensorWorkload(sources: 20)
        var ctx = RecordBlockContext()
        _ = try encode(w.nextSecond(), &ctx)    // the sources' first records carry their names
        var total = 0, payloads = 0, n = 0
        for _ in 0..<50 {
            let rs = w.nextSecond()
            total += try encode(rs, &ctx).count
            payloads += rs.reduce(0) { $0 + $1.payload.count }
            n += rs.count
        }
        let overhead = Double(total - payloads) / Double(n)
        #expect(overhead >= 8 && overhead <= 14, "overhead \(overhead) bytes a record")
    }

    @Test("hostile blocks give typed errors, never a crash, and never move the context")
    func hostile() throws {
        var w = SensorWorkload(sources: 5)
        var ctx = RecordBlockContext()
        let records = w.nextSecond() + w.nextSecond()
        let block = try encode(records, &ctx)
        var rng = SplitMix64(seed: 99)
        var failures = 0
        for i in 0..<3000 {
            var b = block
            switch i % 4 {
            case 0: b[Int(rng.next() % UInt64(b.count))] ^= UInt8(1 << (rng.next() % 8))
            case 1: b.removeLast(1 + Int(rng.next() % UInt64(b.count - 1)))
            case 2: b.append(UInt8(truncatingIfNeeded: rng.next()))
            default: b[Int(rng.next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: rng.next())
            }
            var d = RecordBlockContext()
            do {
                let back = try decode(b, count: records.count, &d)
                #expect(back.count == records.count)
            } catch is RecordBlockProblem {
                failures += 1
                #expect(d == RecordBlockContext())
            }
        }
        #expect(failures > 1500)
        var d = RecordBlockContext()
        #expect(throws: RecordBlockProblem.self) { try decode(block, count: records.count + 1, &d) }
        #expect(throws: RecordBlockProblem.self) { try decode(block, count: records.count - 1, &d) }
        #expect(throws: RecordBlockProblem.self) { try decode([0x08], count: 1, &d) }
        // A mono_ctr that does not increase cannot be written, and a source name that is not valid neither.
        var e = RecordBlockContext()
        var out: [UInt8] = []
        try RecordBlock.append(records[0], to: &out, context: &e)
        #expect(throws: RecordBlock.EncodeProblem.self) { try RecordBlock.append(records[0], to: &out, context: &e) }
        var bad = records[1]
        bad.source = "-formula"
        #expect(throws: RecordBlock.EncodeProblem.badSourceName("-formula")) { try RecordBlock.append(bad, to: &out, context: &e) }
    }

    @Test("deflate with the previous block as dictionary round-trips and halves the bytes of the usual load")
    func deflate() throws {
        var w = SensorWorkload(sources: 20)
        var ctx = RecordBlockContext(), dctx = RecordBlockContext()
        var previous: [UInt8] = [], dprevious: [UInt8] = []
        var stored = 0, raw = 0, n = 0
        for frame in 0..<100 {
            let rs = w.nextSecond()
            let block = try encode(rs, &ctx)
            let packed = try #require(Deflate.compress(block, dictionary: previous))
            previous = block
            let back = try packed.withUnsafeBytes { try Deflate.inflate($0, dictionary: dprevious, length: block.count) }
            #expect(back == block)
            dprevious = back
            #expect(try decode(back, count: rs.count, &dctx) == rs)
            if frame > 0 { stored += packed.count; raw += block.count; n += rs.count }
        }
        #expect(Double(stored) / Double(n) < 40, "\(Double(stored) / Double(n)) bytes a record compressed, \(Double(raw) / Double(n)) raw")
        #expect(stored * 2 < raw)
    }

    @Test("one compressor kept across frames of both sizes gives each frame the stream a fresh one gives")
    func compressorReuse() throws {
        var w = SensorWorkload(sources: 20, seed: 3)
        var ctx = RecordBlockContext()
        let kept = try #require(Deflate.Compressor())
        var previous: [UInt8] = []
        var methods: Set<String> = []
        // Small and large blocks in turn, so that the kept compressor changes method in both directions.
        for frame in 0..<24 {
            var rs: [PackedRecord] = []
            for _ in 0..<(frame % 3 == 2 ? 12 : 1) { rs += w.nextSecond() }
            let block = try encode(rs, &ctx)
            let method = Deflate.method(forBlockOf: block.count)
            methods.insert("\(method)")
            let reused = try #require(kept.compress(block, dictionary: previous, method: method))
            // A compressor made for this block alone.
            let fresh = try #require(Deflate.compress(block, dictionary: previous, method: method))
            #expect(reused == fresh, "frame \(frame), \(method)")
            if method == Deflate.largeBlockMethod {
                // The method really changes: zlib 9 against the dictionary gives other bytes.
                let other = try #require(kept.compress(block, dictionary: previous, method: Deflate.smallBlockMethod))
                #expect(other != reused, "frame \(frame): \(other.count) bytes by zlib 9, \(reused.count) by igzip 1")
            }
            // Every method reads back with the whole dictionary preset (A.4).
            let back = try reused.withUnsafeBytes { try Deflate.inflate($0, dictionary: previous, length: block.count) }
            #expect(back == block)
            previous = block
        }
        #expect(methods == ["\(Deflate.smallBlockMethod)", "\(Deflate.largeBlockMethod)"])
    }

    @Test("zlib against a suffix of the dictionary, and igzip against none, read back with the whole dictionary preset")
    func dictionarySuffixes() throws {
        var w = SensorWorkload(sources: 20, seed: 5)
        var ctx = RecordBlockContext()
        var previous: [UInt8] = []
        for frame in 0..<8 {
            var rs: [PackedRecord] = []
            for _ in 0..<(1 + frame % 4 * 4) { rs += w.nextSecond() }
            let block = try encode(rs, &ctx)
            for method: Deflate.Method in [.zlib(level: 1, dictionaryBytes: 0), .zlib(level: 6, dictionaryBytes: 100), .zlib(level: 9, dictionaryBytes: 8192),
                                           .zlib(level: 9, dictionaryBytes: 1 << 20), .igzip(level: 0), .igzip(level: 1), .igzip(level: 2), .igzip(level: 3)] {
                let packed = try #require(Deflate.compress(block, dictionary: previous, method: method))
                let back = try packed.withUnsafeBytes { try Deflate.inflate($0, dictionary: previous, length: block.count) }
                #expect(back == block, "frame \(frame), \(method)")
            }
            previous = block
        }
    }

    @Test("igzip: levels past 3 are refused (nil: the block is stored), and random, empty, one-byte and 200 KiB blocks read back")
    func igzipEdges() throws {
        var rng = SplitMix64(seed: 9)
        let random = (0..<20_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let long = [UInt8]((0..<200 * 1024).map { UInt8(truncatingIfNeeded: $0 % 251 ^ $0 / 4093) })
        let kept = try #require(Deflate.Compressor())
        for level: Int32 in 0...3 {
            for block in [random, [], [7], long] {
                let packed = try #require(kept.compress(block, dictionary: random, method: .igzip(level: level)), "level \(level), \(block.count) bytes")
                let back = try packed.withUnsafeBytes { try Deflate.inflate($0, dictionary: random, length: block.count) }
                #expect(back == block, "level \(level), \(block.count) bytes")
                if block.count == random.count { #expect(packed.count <= block.count + 64, "random: \(packed.count) bytes") }
                if block.count == long.count { #expect(packed.count * 4 < block.count, "long: \(packed.count) bytes") }
            }
        }
        for level: Int32 in [-1, 4, 9] {
            #expect(kept.compress(random, dictionary: [], method: .igzip(level: level)) == nil, "level \(level)")
        }
        // The same compressor still works after a refused level.
        #expect(kept.compress(long, dictionary: [], method: .igzip(level: 1)) == Deflate.compress(long, dictionary: [], method: .igzip(level: 1)))
    }

    @Test("encoding a frame's records at once gives the bytes and the context of encoding them one by one, and refuses what one by one refuses without moving")
    func encodeAtOnce() throws {
        var rng = SplitMix64(seed: 21)
        var mono: UInt64 = 0
        var one = RecordBlockContext(), all = RecordBlockContext()
        for frame in 0..<40 {
            let rs = randomRecords(&rng, count: Int(rng.next() % 50), mono: &mono, sources: 300)
            let a = try encode(rs, &one)
            let b = try RecordBlock.encode(rs, context: &all)
            #expect(a == b, "frame \(frame)")
            #expect(one == all)
        }
        // A record going back in mono_ctr after good ones: nothing moves.
        let good = randomRecords(&rng, count: 3, mono: &mono, sources: 300)
        var bad = good[1]
        bad.mono = 1
        let before = all
        #expect(throws: RecordBlock.EncodeProblem.self) { try RecordBlock.encode([good[0], bad], context: &all) }
        #expect(all == before)
    }

    @Test("inflate refuses streams longer or shorter than stated, unterminated ones and bytes after the end")
    func inflateBounds() throws {
        let block = Array("{\"a\":1}{\"a\":2}{\"a\":3}".utf8)
        let packed = try #require(Deflate.compress(block, dictionary: []))
        func inflate(_ s: [UInt8], _ n: Int, dict: [UInt8] = []) -> InflateProblem? {
            s.withUnsafeBytes { b -> InflateProblem? in
                do throws(InflateProblem) { _ = try Deflate.inflate(b, dictionary: dict, length: n); return nil } catch { return error }
            }
        }
        #expect(inflate(packed, block.count) == nil)
        #expect(inflate(packed, block.count - 1) == .tooLong(limit: block.count - 1))
        #expect(inflate(packed, block.count + 1) == .tooShort(got: block.count, want: block.count + 1))
        #expect(inflate(packed + [0], block.count) == .trailingBytes(1))
        #expect(inflate(Array(packed.dropLast()), block.count) == .unterminated)
        #expect(inflate([0xFF, 0xFF, 0xFF], 10) != nil)
        // A stream compressed against a dictionary does not inflate to the block without it.
        let withDict = try #require(Deflate.compress(block, dictionary: block))
        let wrong = withDict.withUnsafeBytes { b in try? Deflate.inflate(b, dictionary: [], length: block.count) }
        #expect(wrong != block)
        #expect(inflate(withDict, block.count, dict: block) == nil)
    }
}
