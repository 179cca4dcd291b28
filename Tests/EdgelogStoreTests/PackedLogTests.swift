// Format 6's ring engine (docs/FORMAT.md A.8, A.9): commits survive closing and reopening, the ring
// wraps and reclaims whole segments, and every power cut at every operation, torn, reordered or
// scrambled, recovers to a history that holds every acknowledged commit, before and after a second
// cut inside recovery.

import EdgelogCore
import EdgelogSeal
@testable import EdgelogStore
import EdgelogTestKit
import Foundation
import Testing

private let uuid6: [UInt8] = Array(11...26)

private func identity() -> PackedLog.PackedIdentity { PackedLog.PackedIdentity(deviceID: Array(repeating: 4, count: 16)) }

/// A signing writer's identity; `verify` false leaves out its check (a configuration error).
private func signed(_ signer: FileSigner, verify: Bool = true) -> PackedLog.PackedIdentity {
    var id = PackedLog.PackedIdentity(deviceID: Array(repeating: 4, count: 16), signer: signer)
    if !verify { id.verify = nil }
    return id
}

private func formatted(slots: Int, segment: Int, sector: Int = 512) throws -> [UInt8] {
    let device = MemoryBlockDevice(size: PackedGeometry.ringOffset + slots * segment, sectorSize: sector)
    try PackedLog.format(device: device, segmentSize: segment, storeUUID: uuid6, deviceID: Array(repeating: 4, count: 16), wallNs: 0)
    return device.bytes
}

/// Small frames of a few records of a few sources, mono_ctr increasing across everything.
private struct FrameSource {
    var w: SensorWorkload
    var pending: [PackedRecord] = []
    init(seed: UInt64) { w = SensorWorkload(sources: 5, seed: seed) }
    mutating func next(_ n: Int) -> [PackedRecord] {
        while pending.count < n { pending += w.nextSecond() }
        defer { pending.removeFirst(n) }
        return Array(pending.prefix(n))
    }
}

private func committed(_ device: BlockDevice) throws -> [PackedFrameInfo] {
    let h = try PackedHistory.analyze(device: device)
    return h.frames(device: device)
}

/// What a run wrote: each frame's records, the operation index of its write and of its
/// acknowledgement, and when each frame's segment began to be overwritten.
private struct Run {
    var frames: [[PackedRecord]] = []          // by frame id - 1
    var writeOp: [Int] = []
    var ackOp: [Int] = []
    var segmentOf: [UInt64] = []
    var overwrittenAt: [UInt64: Int] = [:]     // segment id -> op index of the write that started reusing its slot
    var builtAhead = 0                         // staged frames the staging thread built
}

/// How frames reach the device: one after the other; each prepared before the one before it is
/// written, as a commit pipeline does; each written in the background (`begin`) while the next
/// is prepared, then ended (`finish`); or staged two ahead (`stage`: built on the staging thread)
/// and then prepared and written. The operations on the device must be those of the first.
enum WriteMode: Sendable { case plain, pipelined, overlapped, staged }

private func record(_ device: FaultBlockDevice, sessions: [(frames: Int, close: Bool)], metadataEvery: Int, seed: UInt64,
                    mode: WriteMode = .plain, faults: Bool = false) throws -> Run {
    var run = Run()
    var source = FrameSource(seed: seed)
    var slotHolds: [Int: UInt64] = [:]
    var rng = SplitMix64(seed: seed)
    let pipelined = mode == .pipelined
    device.overlapping = mode == .overlapped
    defer { device.overlapping = false }
    for session in sessions {
        let log = try PackedLog(device: device, identity: identity(), clock: { 0 })
        log.metadataEvery = metadataEvery
        // The thread builds every staged frame it can (never taken back: a memory device writes
        // faster than the thread wakes), so that its path is the one these runs take.
        log.takesBack = false
        var ahead: (PackedLog.PreparedFrame, [PackedRecord])?
        var stagedAhead: [(PackedLog.StagedFrame, [PackedRecord])] = []
        var stagedCount = 0
        for k in 0..<session.frames {
            let records: [PackedRecord]
            let prepared: PackedLog.PreparedFrame
            if mode == .staged {
                while stagedAhead.count < PackedLog.stageDepth && stagedCount < session.frames {
                    let r = source.next(1 + Int(rng.next() % 6))
                    stagedAhead.append((log.stage(r), r))
                    stagedCount += 1
                }
                let (staged, r) = stagedAhead.removeFirst()
                records = r
                prepared = try log.prepare(staged)
                if staged.builtAhead { run.builtAhead += 1 }
            } else if pipelined {
                if ahead == nil {
                    let r = source.next(1 + Int(rng.next() % 6))
                    ahead = (try log.prepare(r), r)
                }
                (prepared, records) = ahead!
                // The next frame is built before this one is written.
                if k + 1 < session.frames {
                    let r = source.next(1 + Int(rng.next() % 6))
                    ahead = (try log.prepare(r), r)
                } else {
                    ahead = nil
                }
            } else if mode == .overlapped {
                if ahead == nil {
                    let r = source.next(1 + Int(rng.next() % 6))
                    ahead = (try log.prepare(r), r)
                }
                (prepared, records) = ahead!
            } else {
                records = source.next(1 + Int(rng.next() % 6))
                prepared = try log.prepare(records)
            }
            let before = device.log.count
            let id: UInt64
            if mode == .overlapped {
                let write = try log.begin(prepared)
                // A write the device refused at once is written in place (faults injected).
                #expect(write.overlapped ? device.writeInFlight : faults)
                // The next frame is built while this one is on its way to the device.
                if k + 1 < session.frames {
                    let r = source.next(1 + Int(rng.next() % 6))
                    ahead = (try log.prepare(r), r)
                } else {
                    ahead = nil
                }
                id = try log.finish(write).frameID
            } else {
                id = try log.write(prepared).frameID
            }
            let m = log.metadata
            if let previous = slotHolds[m.headSlot], previous != m.headSegmentID, run.overwrittenAt[previous] == nil {
                run.overwrittenAt[previous] = before
            }
            slotHolds[m.headSlot] = m.headSegmentID
            #expect(Int(id) == run.frames.count + 1)
            run.frames.append(records)
            run.writeOp.append(before)
            run.ackOp.append(device.log.count)
            run.segmentOf.append(m.headSegmentID)
        }
        if session.close { try log.close() }
    }
    return run
}

/// The oracle: the history is a run of consecutive frames, each exactly as written, ending at or
/// after the last acknowledged one, and holding every acknowledged frame whose segment was not
/// being overwritten by then.
private func check(_ frames: [PackedFrameInfo], run: Run, cut: Int) -> String? {
    for (i, f) in frames.enumerated() {
        let id = Int(f.frameID)
        guard id >= 1, id <= run.frames.count else { return "frame \(id) was never written" }
        if i > 0, f.frameID != frames[i - 1].frameID + 1 { return "frame \(id) after \(frames[i - 1].frameID)" }
        if f.records != run.frames[id - 1] { return "frame \(id) differs from what was written" }
        // The write at the cut itself was in progress: it may have landed whole.
        if run.writeOp[id - 1] > cut { return "frame \(id) was not yet written at the cut" }
    }
    let present = Set(frames.map { Int($0.frameID) })
    for id in 1...max(1, run.frames.count) where id <= run.frames.count && run.ackOp[id - 1] <= cut {
        let segment = run.segmentOf[id - 1]
        if let at = run.overwrittenAt[segment], at <= cut { continue }
        if !present.contains(id) { return "acknowledged frame \(id) (segment \(segment)) missing" }
    }
    return nil
}

@Suite("Format 6 ring engine")
struct PackedLogTests {
    @Test("commits survive close and reopen; the metadata is written at open, per segment, every N commits and at close")
    func reopen() throws {
        let device = FaultBlockDevice(image: try formatted(slots: 8, segment: 64 * 1024))
        let run = try record(device, sessions: [(40, true), (20, true)], metadataEvery: 16, seed: 1)
        let frames = try committed(device)
        #expect(frames.count == 60)
        #expect(check(frames, run: run, cut: device.log.count) == nil)
        let h = try PackedHistory.analyze(device: device)
        #expect(h.metadata.clean)
        #expect(h.metadata.unexpRst == 0 && h.metadata.rollbackCtr == 2)
        #expect(h.recovery.framesAdopted == 0)
        #expect(h.state.recordsTotal == UInt64(run.frames.joined().count))
        let metadataWrites = device.log.filter { if case .write(let o, _) = $0 { o < UInt64(PackedGeometry.ringOffset) } else { false } }.count
        // Two opens, two closes, a new segment per session, and every 16 commits.
        #expect(metadataWrites >= 6 && metadataWrites <= 12, "\(metadataWrites) metadata writes for 60 commits")
    }

    @Test("a ring that wraps reclaims whole segments, counts their records lost, and keeps the newest")
    func wraps() throws {
        let device = FaultBlockDevice(image: try formatted(slots: 5, segment: 8192))
        let run = try record(device, sessions: [(120, true)], metadataEvery: 8, seed: 2)
        let frames = try committed(device)
        let h = try PackedHistory.analyze(device: device)
        #expect(h.wrapCount >= 1)
        #expect(h.tailSegmentID > 1)
        #expect(frames.last?.frameID == 120)
        #expect(check(frames, run: run, cut: device.log.count) == nil)
        let kept = frames.reduce(0) { $0 + $1.records.count }
        #expect(h.state.lostTotal + UInt64(kept) == UInt64(run.frames.joined().count))
    }

    @Test("every cut of every operation recovers with every acknowledged commit; then a second cut inside recovery",
          arguments: [(512, WriteMode.plain), (4096, .plain), (512, .pipelined), (512, .overlapped), (512, .staged)])
    func crashEnumeration(sector: Int, mode: WriteMode) throws {
        let device = FaultBlockDevice(image: try formatted(slots: sector == 4096 ? 6 : 4, segment: sector == 4096 ? 32768 : 8192, sector: sector), sectorSize: sector)
        let run = try record(device, sessions: [(30, true), (60, false)], metadataEvery: 4, seed: UInt64(sector), mode: mode)
        // The ring wrapped: cuts fall inside reclaims of the oldest segment too.
        #expect(run.overwrittenAt.count >= 2)
        let images = CrashImageBuilder(device: device)
        var states = 0, pairs = 0, torn = 0, adopted = 0, givenUp = 0
        var failures: [String] = []
        for cut in images.cuts {
            for (v, variant) in CrashVariant.allCases.enumerated() {
                let point = CrashPoint(cut: cut, variant: variant, seed: UInt64(cut * 31 + v))
                let image = images.image(at: point, sectorSize: sector)
                let recovered = FaultBlockDevice(image: image, sectorSize: sector)
                states += 1
                let log: PackedLog
                do { log = try PackedLog(device: recovered, identity: identity(), clock: { 0 }) } catch {
                    failures.append("\(point): recovery failed: \(error)")
                    continue
                }
                if log.recovery.torn { torn += 1 }
                adopted += log.recovery.framesAdopted
                givenUp += log.recovery.tailsGivenUp
                let frames = try committed(recovered)
                if let problem = check(frames, run: run, cut: cut) { failures.append("\(point): \(problem)") }
                // A second cut inside recovery's own writes (and the commit after it).
                guard cut % 3 == 0 else { continue }
                let headBefore = frames.last?.frameID ?? 0
                var source = FrameSource(seed: 999)
                _ = try? log.append(source.next(2))
                let second = CrashImageBuilder(device: recovered)
                for cut2 in second.cuts {
                    let image2 = second.image(at: CrashPoint(cut: cut2, variant: variant, seed: UInt64(cut2 + 7)), sectorSize: sector)
                    let again = MemoryBlockDevice(image: image2, sectorSize: sector)
                    pairs += 1
                    do {
                        _ = try PackedLog(device: again, identity: identity(), clock: { 0 })
                        let frames2 = try committed(again)
                        // Everything the first recovery found stays, unless the new commit is the one kept past it.
                        let ids = Set(frames2.map(\.frameID))
                        for f in frames where !ids.contains(f.frameID) && f.frameID > (frames2.first?.frameID ?? 0) {
                            failures.append("\(point) then cut \(cut2): frame \(f.frameID) lost")
                        }
                        if (frames2.last?.frameID ?? 0) < headBefore { failures.append("\(point) then cut \(cut2): head went back") }
                    } catch {
                        failures.append("\(point) then cut \(cut2): recovery failed: \(error)")
                    }
                }
            }
        }
        print("packed crash states (\(sector), \(mode)): \(states) states, \(pairs) pairs through recovery, \(torn) torn, \(adopted) frames adopted, \(givenUp) tails given up, \(failures.count) failures")
        #expect(states > 1000)
        #expect(torn > 0 && adopted > 0)
        #expect(failures.isEmpty, "\(failures.prefix(5).joined(separator: " | "))")
    }
}

@Suite("Format 6 recovery and keys")
struct PackedLogKeyTests {

    @Test("a signing writer adopts past the metadata's head only frames its own key, or the key it succeeds, signed")
    func adoptsOwnFramesOnly() throws {
        let key = FileSigner(key: .ed25519(.init()), epoch: 1)
        let other = FileSigner(key: .ed25519(.init()), epoch: 1)
        let image: [UInt8]
        do {
            let device = MemoryBlockDevice(image: try formatted(slots: 6, segment: 64 * 1024))
            let log = try PackedLog(device: device, identity: signed(key), clock: { 0 })
            var source = FrameSource(seed: 4)
            for _ in 0..<5 { try log.append(source.next(3)) }
            // No close: the metadata names frame 1 (written with the segment's first frame); 2 to 5 follow it.
            image = device.bytes
        }
        let h = try PackedHistory.analyze(device: MemoryBlockDevice(image: image))
        #expect(h.metadata.headFrameID == 1 && h.headFrameID == 5)

        let own = try PackedLog(device: MemoryBlockDevice(image: image), identity: signed(key), clock: { 0 })
        #expect(own.recovery.framesAdopted == 4 && own.recovery.refusedFrameID == nil)
        #expect(own.metadata.headFrameID == 5)

        // Another key refuses a head it cannot verify (nothing written)...
        #expect(throws: PackedLogError.headUnverified(1)) { _ = try PackedLog(device: MemoryBlockDevice(image: image), identity: signed(other), clock: { 0 }) }
        // ...and adopts none of the frames past it when it trusts the head frame alone.
        var headOnly = signed(other)
        headOnly.trustsHead = { frame, header in header.keyID == key.keyID && frame.frameID == 1 && key.verifies(frame.signature, of: frame.statement) }
        let stranger = try PackedLog(device: MemoryBlockDevice(image: image), identity: headOnly, clock: { 0 })
        #expect(stranger.recovery.framesAdopted == 0)
        #expect(stranger.recovery.refusedFrameID == 2)
        #expect(stranger.metadata.headFrameID == 1)

        // A key that succeeds the old one (a rotation) adopts the old key's frames past the head:
        // a `keys rotate` cut before its metadata write leaves its frame there (FORMAT.md A.9).
        var successor = signed(other)
        successor.trustsHead = { frame, header in header.keyID == key.keyID && key.verifies(frame.signature, of: frame.statement) }
        let heir = try PackedLog(device: MemoryBlockDevice(image: image), identity: successor, clock: { 0 })
        #expect(heir.recovery.framesAdopted == 4 && heir.recovery.refusedFrameID == nil)
        #expect(heir.metadata.headFrameID == 5)

        // The head-only writer continues from frame 1 in a new segment: frames 2 to 5 of the first
        // segment are past the point the history chains on, so no reader shows them (A.9 step 3).
        let forkDevice = MemoryBlockDevice(image: image)
        let fork = try PackedLog(device: forkDevice, identity: headOnly, clock: { 0 })
        var more = FrameSource(seed: 40)
        for _ in 0..<2 { try fork.append(more.next(2)) }
        let shown = try committed(forkDevice)
        #expect(shown.map(\.frameID) == [1, 2, 3])
        #expect(shown.map(\.segmentID) == [1, 2, 2])
        let decoder = PackageRoot.url.appendingPathComponent("scripts/edgelog_decode.py").path
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("edgelog-fork-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(FileManager.default.createFile(atPath: path, contents: Data(forkDevice.bytes)), "could not write the test file")
        let py = try run("/usr/bin/env", ["python3", decoder, "--packed-store", path])
        let frameLines = String(decoding: py.out, as: UTF8.self).split(separator: "\n").filter { $0.contains("\"kind\":\"frame\"") }
        #expect(frameLines.count == 3, "\(frameLines)")

        // The successor continues from frame 5: the old key's frames stay in the history.
        let heirDevice = MemoryBlockDevice(image: image)
        let continued = try PackedLog(device: heirDevice, identity: successor, clock: { 0 })
        for _ in 0..<2 { try continued.append(more.next(2)) }
        let kept = try committed(heirDevice)
        #expect(kept.map(\.frameID) == Array(1...7))
        #expect(kept.map(\.segmentID) == [1, 1, 1, 1, 1, 2, 2])

        // Without a key there is nothing to check with: frames are adopted by CRC, hash and chain.
        let unsigned = try PackedLog(device: MemoryBlockDevice(image: image), identity: identity(), clock: { 0 })
        #expect(unsigned.recovery.framesAdopted == 4)
    }
}

@Suite("Format 6 recovery against a card writer")
struct PackedLogHostileTests {

    @Test("a head frame that names the writer's key without its signature is refused, nothing written")
    func forgedHead() throws {
        let key = FileSigner(key: .ed25519(.init()), epoch: 1)
        let forger = FileSigner(key: .ed25519(.init()), epoch: 1)
        let device = MemoryBlockDevice(image: try formatted(slots: 6, segment: 64 * 1024))
        // A segment that claims the writer's key, signed by someone else, and a slot that names it.
        var h = PackedSegmentHeader()
        h.storeUUID = uuid6
        h.segmentID = 1
        h.firstFrameID = 1
        h.ringSlots = 6
        h.tailSegmentID = 1
        h.keyID = key.keyID
        h.keyEpoch = 1
        h.sigAlg = .ed25519
        var writer = PackedSegmentWriter(header: h, sectorSize: 512, segmentSize: 64 * 1024)
        var source = FrameSource(seed: 8)
        let (offset, bytes) = try writer.append(source.next(4), sign: { m in try m.withUnsafeBytes { try forger.sign($0) } })
        try bytes.withUnsafeBytes { try device.write(at: UInt64(PackedGeometry.ringOffset + offset), from: $0) }
        let analyzed = try PackedHistory.analyze(device: device)
        var m = analyzed.metadata
        m.generation = 5
        m.headFrameID = 1
        m.headSegmentID = 1
        m.headSlot = 0
        m.headOffset = writer.lastFrameOffset
        m.hashHead = writer.prevHash
        m.headCRC = writer.lastFrameCRC
        let slot = m.encoded()
        try slot.withUnsafeBytes { try device.write(at: UInt64(PackedGeometry.metadataSlotSize), from: $0) }
        let before = device.bytes
        #expect(throws: PackedLogError.headUnverified(1)) { try PackedLog(device: device, identity: signed(key), clock: { 0 }) }
        #expect(device.bytes == before)
        // A signing identity without its check is a configuration error, also before anything is written.
        #expect(throws: PackedLogError.badIdentity("a signing writer needs its key's check too")) {
            try PackedLog(device: device, identity: signed(key, verify: false), clock: { 0 })
        }
        #expect(device.bytes == before)
    }

    @Test("a newer slot that names no frame does not hide the history the other slot points at")
    func emptySlotNotPreferred() throws {
        let device = MemoryBlockDevice(image: try formatted(slots: 6, segment: 64 * 1024))
        let log = try PackedLog(device: device, identity: identity(), clock: { 0 })
        var source = FrameSource(seed: 9)
        for _ in 0..<3 { try log.append(source.next(2)) }
        try log.close()
        var m = try PackedHistory.analyze(device: device).metadata
        let newest = m.generation
        // A card writer's slot: a higher generation naming nothing.
        var forged = PackedMetadata(geometry: m.geometry)
        forged.storeUUID = m.storeUUID
        forged.generation = newest + 1
        try forged.encoded().withUnsafeBytes { try device.write(at: UInt64(Int(forged.slotIndex) * PackedGeometry.metadataSlotSize), from: $0) }
        m = try PackedHistory.analyze(device: device).metadata
        #expect(m.generation == newest)
        #expect(try committed(device).count == 3)
    }

    @Test("at most one oldest segment is given up, and only in a store left open with a full ring: erasure is not a cut")
    func tailGiveUpBounded() throws {
        let segment = 8192
        let device = MemoryBlockDevice(image: try formatted(slots: 4, segment: segment))
        var source = FrameSource(seed: 5)
        var ids: [UInt64] = []
        do {
            let log = try PackedLog(device: device, identity: identity(), clock: { 0 })
            // Until the ring wraps and is full: the next segment would reclaim the tail.
            while log.metadata.tailSegmentID == 1 || log.openSegmentBytes < segment - 512 {
                ids.append(try log.append(source.next(4)))
            }
            // Left open: no close.
        }
        let h = try PackedHistory.analyze(device: device)
        #expect(h.metadata.geometry.ringSlots == 4 && !h.metadata.clean)
        func erase(_ image: [UInt8], _ slots: [Int]) -> MemoryBlockDevice {
            var b = image
            for s in slots { let o = PackedGeometry.ringOffset + s * segment; b.replaceSubrange(o..<(o + segment), with: [UInt8](repeating: 0, count: segment)) }
            return MemoryBlockDevice(image: b, sectorSize: 512)
        }
        let one = erase(device.bytes, [h.tailSlot])
        let h1 = try PackedHistory.analyze(device: one)
        #expect(h1.recovery.tailsGivenUp == 1 && h1.tailSegmentID == h.tailSegmentID + 1)
        #expect(h1.frames(device: one).first.map { $0.segmentID } == h.tailSegmentID + 1)
        let next = h.metadata.nextSlot(after: h.tailSlot)!
        let two = erase(device.bytes, [h.tailSlot, next])
        let h2 = try PackedHistory.analyze(device: two)
        #expect(h2.recovery.tailsGivenUp == 1)
        #expect(h2.frames(device: two).isEmpty, "a second erased segment is shown as damage, not given up")
        #expect(!h2.forEachFrame(device: two) { _, _ in }.isEmpty)
    }

    @Test("a frame that opens its segment in a slot that keeps failing moves to the next good slot and the slot is marked bad, in every write mode; nothing acknowledged is lost, and every cut recovers",
          arguments: [WriteMode.plain, .pipelined, .overlapped, .staged])
    func badSlot(mode: WriteMode) throws {
        // The write fails and nothing lands; or it lands and its flush fails (the slot then holds
        // a valid first frame of the segment that moved: A.9 must not take it).
        for landed in [false, true] {
            let segment = 8192
            let device = FaultBlockDevice(image: try formatted(slots: 6, segment: segment))
            let bad = UInt64(PackedGeometry.ringOffset + 2 * segment)
            device.failWrites(at: bad, landed: landed)
            let run = try record(device, sessions: [(70, true), (60, false)], metadataEvery: 4, seed: 33, mode: mode, faults: true)
            device.failWrite = { _, _ in false }
            device.failFlush = { _ in false }
            let h = try PackedHistory.analyze(device: device)
            #expect(h.metadata.state.tables.badSlots == [PackedTables.BadSlot(slot: 2, reason: landed ? 2 : 1, segmentID: 3)], "\(h.metadata.state.tables.badSlots)")
            #expect(h.state.tables.badSlots.map(\.slot) == [2])
            #expect(h.wrapCount >= 1, "the ring wrapped past the bad slot")
            let frames = try committed(device)
            #expect(frames.last?.frameID == 130)
            #expect(check(frames, run: run, cut: device.log.count) == nil)
            var slots = Set<UInt32>()
            h.forEachFrame(device: device) { header, _ in slots.insert(header.slotIndex) }
            #expect(!slots.contains(2) && slots.count == 5)
            // A writer opens it and goes on.
            let log = try PackedLog(device: device, identity: identity(), clock: { 0 })
            var more = FrameSource(seed: 34)
            #expect(try log.append(more.next(2)) == 131)

            guard mode == .plain || mode == .staged else { continue }
            // Every cut of the run (before the reopen above) recovers with what was acknowledged.
            let images = CrashImageBuilder(device: device)
            var failures: [String] = []
            var states = 0
            for cut in images.cuts where cut <= run.ackOp.last ?? 0 {
                for (v, variant) in CrashVariant.allCases.enumerated() {
                    let point = CrashPoint(cut: cut, variant: variant, seed: UInt64(cut * 17 + v))
                    let recovered = FaultBlockDevice(image: images.image(at: point, sectorSize: 512))
                    states += 1
                    do {
                        _ = try PackedLog(device: recovered, identity: identity(), clock: { 0 })
                        if let problem = check(try committed(recovered), run: run, cut: cut) { failures.append("\(point): \(problem)") }
                    } catch {
                        failures.append("\(point): recovery failed: \(error)")
                    }
                }
            }
            #expect(states > 500)
            #expect(failures.isEmpty, "\(mode) landed \(landed): \(failures.prefix(4).joined(separator: " | "))")
        }
    }

    @Test("a failed write or flush is retried in place; one that keeps failing stops the session with the device's error, and the store still opens with every frame acknowledged before")
    func deviceErrors() throws {
        let device = FaultBlockDevice(image: try formatted(slots: 8, segment: 64 * 1024))
        var source = FrameSource(seed: 9)
        let log = try PackedLog(device: device, identity: identity(), clock: { 0 })
        try log.append(source.next(3))
        // The next frame's write fails once, then its flush fails once: both retried.
        var writesSeen = 0
        device.failWrite = { index, _ in
            writesSeen += 1
            return writesSeen == 1
        }
        var flushesSeen = 0
        device.failFlush = { _ in
            flushesSeen += 1
            return flushesSeen == 1
        }
        let second = try log.append(source.next(3))
        #expect(second == 2 && log.writeErrors == 2)
        #expect(try committed(device).map(\.frameID) == [1, 2])
        // A device that fails every flush: the session stops, typed.
        device.failFlush = { _ in true }
        do {
            try log.append(source.next(3))
            Issue.record("a commit was acknowledged on a device whose flushes all fail")
        } catch {
            guard case .device = error else { throw error }
        }
        #expect(throws: PackedLogError.self) { try log.append(source.next(1)) }
        device.failFlush = { _ in false }
        let frames = try committed(MemoryBlockDevice(image: device.current, sectorSize: 512))
        #expect(frames.map(\.frameID).prefix(2) == [1, 2])
    }

    @Test("a background write (begin, finish) puts on the device exactly what write does, retries in place what fails, and nothing else is written while it is in flight")
    func overlappedWrites() throws {
        // Same frames written both ways: the same operations, byte for byte.
        let plain = FaultBlockDevice(image: try formatted(slots: 5, segment: 8192))
        let overlapped = FaultBlockDevice(image: try formatted(slots: 5, segment: 8192))
        _ = try record(plain, sessions: [(50, true), (20, false)], metadataEvery: 4, seed: 21)
        _ = try record(overlapped, sessions: [(50, true), (20, false)], metadataEvery: 4, seed: 21, mode: .overlapped)
        #expect(plain.log == overlapped.log)

        let device = FaultBlockDevice(image: try formatted(slots: 8, segment: 64 * 1024))
        device.overlapping = true
        var source = FrameSource(seed: 22)
        let log = try PackedLog(device: device, identity: identity(), clock: { 0 })
        let first = try log.begin(log.prepare(source.next(3)))
        // Nothing else goes to the device until the frame in flight is finished.
        let next = try log.prepare(source.next(2))
        #expect(throws: PackedLogError.writeInFlight(1)) { try log.begin(next) }
        #expect(throws: PackedLogError.writeInFlight(1)) { try log.checkpoint(clean: false) }
        #expect(throws: PackedLogError.writeInFlight(1)) { try log.close() }
        #expect(try log.finish(first).frameID == 1)
        // A write is finished once: a second finish would count it twice.
        #expect(throws: PackedLogError.outOfOrder(1, expected: 2)) { try log.finish(first) }
        // The submission fails (nothing started), then the wait fails: both written again in place.
        var writesSeen = 0
        device.failWrite = { _, _ in
            writesSeen += 1
            return writesSeen == 1
        }
        let second = try log.begin(next)
        #expect(!second.overlapped && log.writeErrors == 1, "a refused submission is written before begin returns")
        #expect(try log.finish(second).frameID == 2)
        var flushesSeen = 0
        device.failFlush = { _ in
            flushesSeen += 1
            return flushesSeen == 1
        }
        let third = try log.begin(log.prepare(source.next(4)))
        #expect(third.overlapped)
        #expect(try log.finish(third).frameID == 3 && log.writeErrors == 2)
        #expect(try committed(device).map(\.frameID) == [1, 2, 3])
        // A device that fails every flush: the session stops, typed, and the store keeps what was acknowledged.
        device.failFlush = { _ in true }
        let failedFlushes = device.log.filter { $0 == .failedFlush }.count
        let fourth = try log.begin(log.prepare(source.next(1)))
        do {
            try log.finish(fourth)
            Issue.record("a frame was acknowledged on a device whose flushes all fail")
        } catch {
            guard case .device = error else { throw error }
        }
        // The wait and three writes in place: maxWriteAttempts in all, each counted.
        #expect(log.writeErrors == 2 + PackedLog.maxWriteAttempts)
        #expect(device.log.filter { $0 == .failedFlush }.count == failedFlushes + PackedLog.maxWriteAttempts)
        #expect(throws: PackedLogError.self) { try log.begin(log.prepare(source.next(1))) }
        let frames = try committed(MemoryBlockDevice(image: device.current, sectorSize: 512))
        #expect(frames.map(\.frameID).prefix(3) == [1, 2, 3])
    }

    @Test("frames staged ahead put on the device exactly what prepare and write put, across segment ends, after a frame prepared in between, a record refused, or with no staging thread")
    func stagedFrames() throws {
        // Same frames both ways: the same operations, byte for byte, and most built ahead.
        let plain = FaultBlockDevice(image: try formatted(slots: 5, segment: 8192))
        let staged = FaultBlockDevice(image: try formatted(slots: 5, segment: 8192))
        _ = try record(plain, sessions: [(50, true), (20, false)], metadataEvery: 4, seed: 31)
        let run = try record(staged, sessions: [(50, true), (20, false)], metadataEvery: 4, seed: 31, mode: .staged)
        #expect(plain.log == staged.log)
        #expect(run.builtAhead > 50, "\(run.builtAhead) of 70 built ahead")

        // Signed frames (the thread signs), large ones (igzip) and small ones, a segment ending
        // between a frame built ahead and the one after it, a frame prepared in between, a record
        // the encoder refuses: compared with the same frames prepared and written one by one.
        let signer = FileSigner(key: .ed25519(.init()), epoch: 1)
        var source = FrameSource(seed: 32)
        var frames: [[PackedRecord]] = []
        for i in 0..<40 { frames.append(source.next(i % 5 == 4 ? 300 : 1 + i % 7)) }
        let reference = MemoryBlockDevice(image: try formatted(slots: 12, segment: 32 * 1024), sectorSize: 512)
        let refLog = try PackedLog(device: reference, identity: signed(signer), clock: { 0 })
        for f in frames { try refLog.append(f) }
        try refLog.close()
        for buildsAhead in [true, false] {
            let device = MemoryBlockDevice(image: try formatted(slots: 12, segment: 32 * 1024), sectorSize: 512)
            let log = try PackedLog(device: device, identity: signed(signer), clock: { 0 })
            log.buildsAhead = buildsAhead
            log.takesBack = false
            // Frame 17 prepared while two are staged: they are built again after it.
            let built = try writeStaged(frames, on: log, unstagedAt: 17)
            try log.close()
            #expect(device.bytes == reference.bytes, "buildsAhead \(buildsAhead)")
            #expect(buildsAhead ? built > 25 : built == 0, "\(built) built ahead")
            #expect(log.segmentsOpened >= 3)
        }

        // A record the encoder refuses (mono_ctr going back) is found when its frame is prepared;
        // the frame staged after it is built again after the frame before it, and nothing moves.
        let device = MemoryBlockDevice(image: try formatted(slots: 12, segment: 32 * 1024), sectorSize: 512)
        let log = try PackedLog(device: device, identity: signed(signer), clock: { 0 })
        log.takesBack = false
        var more = FrameSource(seed: 33)
        try log.append(more.next(3))
        let good = more.next(4)
        var bad = more.next(2)
        bad[1].mono = 1
        let after = more.next(3)
        let a = log.stage(good), b = log.stage(bad)
        try log.write(log.prepare(a))
        do {
            _ = try log.prepare(b)
            Issue.record("a frame whose mono_ctr goes back was placed")
        } catch {
            guard case .write(.encode(.monoNotIncreasing)) = error else { throw error }
        }
        let c = log.stage(after)
        #expect(try log.write(log.prepare(c)).frameID == 3)
        #expect(c.builtAhead == log.buildsAhead)
        try log.close()
        let kept = try committed(device).map(\.records)
        #expect(kept.count == 3 && kept.dropFirst() == [good, after])
        // Closed: staging builds nothing and preparing refuses.
        let late = log.stage(more.next(1))
        #expect(!late.builtAhead)
        #expect(throws: PackedLogError.closed) { try log.prepare(late) }
    }

    @Test("a staging thread that stalls: the writer builds the frame the thread was overdue with and the ones it had not started, and the device gets what prepare and write put, byte for byte")
    func stagingThreadStalls() throws {
        let signer = FileSigner(key: .ed25519(.init()), epoch: 1)
        var source = FrameSource(seed: 51)
        var frames: [[PackedRecord]] = []
        for i in 0..<60 { frames.append(source.next(i % 9 == 8 ? 300 : 2 + i % 5)) }
        let reference = MemoryBlockDevice(image: try formatted(slots: 12, segment: 32 * 1024), sectorSize: 512)
        let refLog = try PackedLog(device: reference, identity: signed(signer), clock: { 0 })
        for f in frames { try refLog.append(f) }
        try refLog.close()

        // Each flush takes 2 ms, as a card's may, so that the thread keeps ahead of the writer. The
        // thread stops for 30 ms before the first frame it builds from frame 12 on, and again from
        // frame 40 on (small frames, each): far longer than any frame here takes, so the writer stops waiting for it
        // (overdue) and builds that frame, then the ones queued behind it (taken back), until the
        // thread is back and builds ahead again.
        let stall = StallPlan(at: [frames[12][0].mono, frames[40][0].mono], ms: 30)
        let device = FaultBlockDevice(image: try formatted(slots: 12, segment: 32 * 1024))
        device.failFlush = { _ in
            usleep(2_000)
            return false
        }
        let log = try PackedLog(device: device, identity: signed(signer), clock: { 0 })
        log.buildsAhead = true
        log.stagingBeforeBuild = { stall.reached($0) }
        let built = try writeStaged(frames, on: log)
        try log.close()
        #expect(device.current == reference.bytes)
        #expect(stall.taken == 2)
        #expect(log.framesOverdue >= 2, "\(log.framesOverdue) overdue")
        #expect(log.framesTakenBack >= 2, "\(log.framesTakenBack) taken back")
        #expect(built > 30, "\(built) built ahead")

        // A frame taken back whose record the encoder refuses: the thread, which waits for the
        // writer's build of a frame taken back before it builds the next, is told, and goes on.
        let device2 = MemoryBlockDevice(image: try formatted(slots: 12, segment: 32 * 1024), sectorSize: 512)
        let log2 = try PackedLog(device: device2, identity: signed(signer), clock: { 0 })
        log2.buildsAhead = true
        var more = FrameSource(seed: 52)
        let first = more.next(3), good = more.next(4)
        var bad = more.next(2)
        bad[1].mono = 1
        let after = more.next(3), last = more.next(2)
        let stall2 = StallPlan(at: [good[0].mono], ms: 30)
        log2.stagingBeforeBuild = { stall2.reached($0) }
        try log2.append(first)
        let a = log2.stage(good), b = log2.stage(bad), c = log2.stage(after)
        stall2.waitUntilTaken(1)
        try log2.write(log2.prepare(a))
        #expect(!a.builtAhead && log2.framesOverdue == 1)
        do {
            _ = try log2.prepare(b)
            Issue.record("a frame whose mono_ctr goes back was placed")
        } catch {
            guard case .write(.encode(.monoNotIncreasing)) = error else { throw error }
        }
        #expect(log2.framesTakenBack == 1)
        try log2.write(log2.prepare(c))
        let d = log2.stage(last)
        try log2.write(log2.prepare(d))
        try log2.close()
        #expect(try committed(device2).map(\.records) == [first, good, after, last])
    }

    @Test("a staging thread stopped inside a signature: a signer that signs concurrently lets the writer sign the overdue frame meanwhile; one that does not is called one call at a time, and the writer waits")
    func stagingThreadStopsWhileSigning() throws {
        let key = FileSigner(key: .ed25519(.init()), epoch: 1)
        #expect(key.signsConcurrently)
        var source = FrameSource(seed: 53)
        let first = source.next(3), second = source.next(4), third = source.next(2)
        let reference = MemoryBlockDevice(image: try formatted(slots: 12, segment: 32 * 1024), sectorSize: 512)
        let refLog = try PackedLog(device: reference, identity: signed(key), clock: { 0 })
        for f in [first, second, third] { try refLog.append(f) }
        try refLog.close()

        for concurrent in [true, false] {
            let signer = ThreadStallingSigner(key, concurrent: concurrent)
            let device = MemoryBlockDevice(image: try formatted(slots: 12, segment: 32 * 1024), sectorSize: 512)
            var id = PackedLog.PackedIdentity(deviceID: Array(repeating: 4, count: 16), signer: signer)
            #expect(id.signsConcurrently == concurrent)
            id.verify = { signature, message in key.verifies(signature, of: message) }
            let log = try PackedLog(device: device, identity: id, clock: { 0 })
            log.buildsAhead = true
            try log.append(first)
            let staged = log.stage(second)
            // The thread is inside the signature of the second frame, stopped there.
            #expect(signer.waitUntilStopped(), "the staging thread never signed (concurrent \(concurrent))")
            if !concurrent {
                // The writer's own signature waits for the thread's: let the thread go a while later.
                signer.release(afterMs: 200)
            }
            let t0 = Monitor.monotonicNs()
            let frame = try log.prepare(staged)
            let waitedMs = (Monitor.monotonicNs() - t0) / 1_000_000
            if concurrent {
                // Built and signed here while the thread was still stopped inside its signature.
                #expect(!signer.released, "the writer waited for the thread's signature")
                #expect(signer.mostInside == 2)
                #expect(!staged.builtAhead && log.framesOverdue == 1)
                signer.release(afterMs: 0)
            } else {
                #expect(signer.mostInside == 1, "two signatures at once on a signer that takes one at a time")
                #expect(waitedMs >= 150, "prepare returned after \(waitedMs) ms, before the thread's signature ended")
            }
            try log.write(frame)
            try log.append(third)
            try log.close()
            #expect(!signer.timedOut)
            #expect(device.bytes == reference.bytes, "concurrent \(concurrent)")
            #expect(try committed(device).map(\.records) == [first, second, third])
        }
    }

    @Test("staged frames prepared out of order, twice, on another log, or after close place what prepare(records) places, never a frame built on a chain the device did not see")
    func stagedFramesMisused() throws {
        let signer = FileSigner(key: .ed25519(.init()), epoch: 1)
        func fresh() throws -> (MemoryBlockDevice, PackedLog) {
            let device = MemoryBlockDevice(image: try formatted(slots: 12, segment: 32 * 1024), sectorSize: 512)
            return (device, try PackedLog(device: device, identity: signed(signer), clock: { 0 }))
        }
        var source = FrameSource(seed: 41)
        let first = source.next(3), a = source.next(4), b = source.next(5), c = source.next(2)

        // The second staged first: the first is given up, and the second is built here on the
        // segment's last frame, not on the first's chain the thread built it on. Preparing it again
        // places its records again (mono_ctr goes back: refused), as prepare(records) would.
        let (device, log) = try fresh()
        try log.append(first)
        let sa = log.stage(a), sb = log.stage(b)
        #expect(try log.write(log.prepare(sb)).frameID == 2)
        #expect(!sb.builtAhead)
        #expect(throws: PackedLogError.self) { try log.prepare(sb) }
        #expect(throws: PackedLogError.self) { try log.prepare(sa) }
        let sc = log.stage(c)
        #expect(try log.write(log.prepare(sc)).frameID == 3)
        try log.close()
        #expect(try committed(device).map(\.records) == [first, b, c])

        // A frame staged on another log is built on the log that prepares it.
        let (reference, refLog) = try fresh()
        try refLog.append(first)
        try refLog.append(a)
        try refLog.close()
        let (other, otherLog) = try fresh()
        let (mine, myLog) = try fresh()
        try otherLog.append(first)
        try myLog.append(first)
        let foreign = otherLog.stage(a)
        try myLog.write(myLog.prepare(foreign))
        #expect(!foreign.builtAhead)
        try myLog.close()
        #expect(mine.bytes == reference.bytes)

        // Closed with frames staged: close returns once the thread has stopped; they are refused.
        let queued = otherLog.stage(b)
        try otherLog.close()
        #expect(throws: PackedLogError.closed) { try otherLog.prepare(foreign) }
        #expect(throws: PackedLogError.closed) { try otherLog.prepare(queued) }
        _ = other
        // Dropped with frames staged: the log goes, and its thread with it.
        do {
            let (_, dropped) = try fresh()
            try dropped.append(first)
            _ = dropped.stage(a)
            _ = dropped.stage(b)
        }
    }

    @Test("a signing writer refuses an unsigned head: a card writer's unsigned segment would otherwise set the tail and counters it seals")
    func unsignedHeadRefused() throws {
        let device = MemoryBlockDevice(image: try formatted(slots: 6, segment: 64 * 1024))
        var source = FrameSource(seed: 12)
        let unsigned = try PackedLog(device: device, identity: identity(), clock: { 0 })
        for _ in 0..<3 { try unsigned.append(source.next(2)) }
        try unsigned.close()
        let before = device.bytes
        let key = FileSigner(key: .ed25519(.init()), epoch: 1)
        #expect(throws: PackedLogError.headUnverified(3)) { _ = try PackedLog(device: device, identity: signed(key), clock: { 0 }) }
        #expect(device.bytes == before, "nothing written")
    }

    @Test("hostile numbers in a metadata slot make it not valid, never a trap")
    func hostileMetadata() throws {
        let device = MemoryBlockDevice(image: try formatted(slots: 6, segment: 64 * 1024))
        let good = try PackedHistory.analyze(device: device).metadata
        func slot(_ edit: (inout [UInt8]) -> Void) -> PackedMetadata? {
            var b = good.encoded()
            edit(&b)
            let crc = CRC32C.checksum(b[0..<(b.count - 4)])
            b.replaceSubrange((b.count - 4)..<b.count, with: withUnsafeBytes(of: crc.littleEndian) { Array($0) })
            b += [UInt8](repeating: 0, count: PackedGeometry.metadataSlotSize - b.count)
            return b.withUnsafeBytes { PackedMetadata.decode($0, deviceSize: UInt64.max) }
        }
        func set<T: FixedWidthInteger>(_ v: T, _ o: Int) -> (inout [UInt8]) -> Void {
            { b in withUnsafeBytes(of: v.littleEndian) { b.replaceSubrange(o..<(o + MemoryLayout<T>.size), with: $0) } }
        }
        #expect(slot { _ in } != nil)
        #expect(slot { set(UInt32(1), 52)(&$0); set(UInt64.max, 40)(&$0) } == nil)       // segment_size 1, store_size 2^64-1
        #expect(slot { set(UInt64.max, 32)(&$0) } == nil)                                 // generation
        #expect(slot { set(UInt64(0), 128)(&$0) } == nil)                                 // tail_segment_id 0
        #expect(slot { set(UInt32.max, 140)(&$0) } == nil)                                // unexp_rst
        #expect(slot { set(UInt64(7), 72)(&$0) } == nil)                                  // head segment without a head frame
        #expect(slot { set(UInt8(3), 252)(&$0) } == nil)                                  // rtc_state
        // The unsealed fields (A.8, 232..295) come back as written.
        var m = good
        m.bootID = Array(1...16)
        m.verifyStat = 0x44
        m.time.rtcState = .absent
        m.time.largestStepNs = 7
        m.time.unsyncNs = 8
        m.time.lastSyncWallNs = -9
        m.time.rtcOffsetNs = -10
        m.time.lastOffsetNs = 11
        var bytes = m.encoded()
        bytes += [UInt8](repeating: 0, count: PackedGeometry.metadataSlotSize - bytes.count)
        #expect(bytes.withUnsafeBytes { PackedMetadata.decode($0, deviceSize: UInt64.max) } == m)
    }
}

/// Stages `frames` up to `PackedLog.stageDepth` ahead, and prepares and writes the oldest each time
/// the queue is full, then the rest; at `unstagedAt`, the frames staged are written and that frame
/// is prepared without staging. Returns how many were placed as the staging thread built them.
private func writeStaged(_ frames: [[PackedRecord]], on log: PackedLog, unstagedAt: Int? = nil) throws -> Int {
    var queue: [PackedLog.StagedFrame] = []
    var built = 0
    func place(_ s: PackedLog.StagedFrame) throws {
        try log.write(log.prepare(s))
        if s.builtAhead { built += 1 }
    }
    for (i, f) in frames.enumerated() {
        if i == unstagedAt {
            for s in queue { try place(s) }
            queue = []
            try log.write(log.prepare(f))
            continue
        }
        queue.append(log.stage(f))
        if queue.count == PackedLog.stageDepth { try place(queue.removeFirst()) }
    }
    for s in queue { try place(s) }
    return built
}

/// The key file's signer, except that the first call made on a thread other than the one that made
/// it (the staging thread's) stops inside the signature until `release` (at most 10 s: a test that
/// deadlocks fails instead of hanging). Counts how many calls were inside at once.
private final class ThreadStallingSigner: SegmentSigner, @unchecked Sendable {
    private let inner: FileSigner
    private let concurrent: Bool
    private let owner = pthread_self()
    private let monitor = Monitor()
    private var inside = 0, stopped = false, stoppedOnce = false
    private var releasedNow = false, timedOutNow = false, mostInsideNow = 0
    var released: Bool { locked { releasedNow } }
    var timedOut: Bool { locked { timedOutNow } }
    var mostInside: Int { locked { mostInsideNow } }
    private func locked<T>(_ read: () -> T) -> T {
        monitor.lock()
        defer { monitor.unlock() }
        return read()
    }
    init(_ inner: FileSigner, concurrent: Bool) {
        self.inner = inner
        self.concurrent = concurrent
    }
    var algorithm: SignatureAlgorithm { inner.algorithm }
    var keySource: KeySource { inner.keySource }
    var keyID: [UInt8] { inner.keyID }
    var keyEpoch: UInt32 { inner.keyEpoch }
    var signsConcurrently: Bool { concurrent }
    func verifies(_ signature: [UInt8], of message: [UInt8]) -> Bool { inner.verifies(signature, of: message) }

    func sign(_ message: UnsafeRawBufferPointer) throws(SigningError) -> [UInt8] {
        monitor.lock()
        inside += 1
        mostInsideNow = max(mostInsideNow, inside)
        if pthread_equal(pthread_self(), owner) == 0 && !stoppedOnce {
            stoppedOnce = true
            stopped = true
            monitor.broadcast()
            let deadline = Monitor.monotonicNs() + 10_000_000_000
            while !releasedNow {
                let left = deadline - Monitor.monotonicNs()
                if left <= 0 {
                    timedOutNow = true
                    break
                }
                monitor.wait(ns: left)
            }
        }
        monitor.unlock()
        defer {
            monitor.lock()
            inside -= 1
            monitor.unlock()
        }
        return try inner.sign(message)
    }

    /// Waits (at most 10 s) until the staging thread is stopped inside a signature.
    func waitUntilStopped() -> Bool {
        monitor.lock()
        defer { monitor.unlock() }
        let deadline = Monitor.monotonicNs() + 10_000_000_000
        while !stopped && Monitor.monotonicNs() < deadline { monitor.wait(ns: 10_000_000) }
        return stopped
    }

    /// Lets the stopped signature go, `afterMs` from now (on another thread when later than now).
    func release(afterMs: Int) {
        let go: @Sendable () -> Void = { [self] in
            monitor.lock()
            releasedNow = true
            monitor.broadcast()
            monitor.unlock()
        }
        if afterMs == 0 { go() } else { DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(afterMs), execute: go) }
    }
}

/// Stops the staging thread for `ms` before the first frame it builds at or after each of `at`
/// (a record's mono_ctr), once each.
private final class StallPlan: @unchecked Sendable {
    private let lock = NSLock()
    private var left: [UInt64]
    private let ms: UInt32
    private(set) var taken = 0
    init(at: [UInt64], ms: UInt32) { left = at.sorted(); self.ms = ms }
    func reached(_ records: [PackedRecord]) {
        guard let mono = records.first?.mono else { return }
        lock.lock()
        let stall = left.first.map { mono >= $0 } ?? false
        if stall {
            left.removeFirst()
            taken += 1
        }
        lock.unlock()
        if stall { usleep(ms * 1000) }
    }
    /// Returns once the thread has begun `n` stalls.
    func waitUntilTaken(_ n: Int) {
        while true {
            lock.lock()
            let now = taken
            lock.unlock()
            if now >= n { return }
            usleep(100)
        }
    }
}
