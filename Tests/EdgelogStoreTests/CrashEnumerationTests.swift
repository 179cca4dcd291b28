// Crash-point enumeration (docs/DESIGN.md, proof): each workload runs once on a recording fault
// device; then power is cut at every operation, in six ways (pending writes kept, dropped or
// reordered; the cut write torn at 512 B or 4 KiB; sectors filled with garbage), and the oracle
// checks the recovered store. Pairs of cuts go through recovery itself. A failure prints the
// point; EDGELOG_CRASH_REPLAY="workload cut variant seed" replays only that one.

import EdgelogCore
import EdgelogSeal
import EdgelogStore
import EdgelogTestKit
import Testing

struct CrashWorkload: Sendable, CustomStringConvertible {
    var name: String
    var sectorSize: Int
    var segmentSize: Int
    var slots: Int
    var policy: RingFullPolicy
    var records: Int
    var payloadSizes: ClosedRange<Int>
    var commitEvery: ClosedRange<Int>
    var ackUpstream = false
    /// Signed with Ed25519: recovery re-signs what it writes, and every state goes through the
    /// verifier with the public key trusted.
    var signed = false
    /// The power path's writes: the commit-cost measurement at start (metadata rewrites, zeros
    /// in the next free slot) and every so often a safe-commit window's clean commit.
    var powerWindows = false
    var description: String { name }

    var storeSize: Int { 8192 + slots * segmentSize }

    func payload(_ n: Int, _ rng: inout SplitMix64) -> [UInt8] {
        let size = Int.random(in: payloadSizes, using: &rng)
        var text = "{\"n\":\(n),\"v\":\""
        let filler = max(0, size - text.utf8.count - 2)
        text += String(repeating: "x", count: filler) + "\"}"
        return Array(text.utf8)
    }
}

/// One recorded run: the device log plus, at each durable commit, how many operations had been
/// issued, which keys were acknowledged, and the metadata generation.
struct RecordedRun {
    var device: FaultBlockDevice
    var submitted: [RecordKey: [UInt8]]
    var marks: [(ops: Int, generation: UInt64, acked: [(RecordKey, UInt64)])]
    var ringFullSeen: Bool
    var brownouts = 0
    var brownoutsCarried = 0

    func expectation(at cut: Int) -> CrashExpectation {
        var acked: [RecordKey: UInt64] = [:]
        var generation: UInt64 = 1
        for mark in marks where mark.ops <= cut {
            for (key, segment) in mark.acked { acked[key] = segment }
            generation = max(generation, mark.generation)
        }
        return CrashExpectation(submitted: submitted, acked: acked, minGeneration: generation)
    }
}

enum CrashHarness {
    /// The signed workloads' key, made once per test process.
    static let signer: FileSigner? = (try? PrivateSigningKey.generate(.ed25519)).map { FileSigner(key: $0, epoch: 1) }

    static func identity(_ w: CrashWorkload) -> SealIdentity {
        guard w.signed, let signer else { return .unsigned() }
        return SealIdentity(deviceID: [UInt8](repeating: 0, count: 16), fwVerHash: [UInt8](repeating: 0xF3, count: 32), signer: signer)
    }

    /// After recovery the hash chain and hash_head must verify; signed workloads' signatures too.
    static func chainIntact(_ device: any BlockDevice, signed: Bool = false) -> String? {
        let trusted = signed ? signer.map { [$0.key.trusted] } ?? [] : []
        let report = Verifier.verify(device: device, options: VerifyOptions(trusted: trusted, allowUnsigned: !signed))
        guard report.passed else {
            return "\(report.reasons): \(report.segments.filter { !$0.passed }.prefix(2).map { "segment \($0.segmentID) \($0.detail)" }) \(report.findings.prefix(2).map(\.detail))"
        }
        return nil
    }

    /// EDGELOG_CRASH_SCALE multiplies the records of every workload (1 in `make test`).
    static let scale = Int(Environment.get("EDGELOG_CRASH_SCALE") ?? "") ?? 1

    static let workloads: [CrashWorkload] = [
        CrashWorkload(name: "small-records", sectorSize: 512, segmentSize: 4096, slots: 48, policy: .pause,
                      records: 900 * scale, payloadSizes: 20...90, commitEvery: 1...12),
        CrashWorkload(name: "large-records", sectorSize: 512, segmentSize: 8192, slots: 40, policy: .pause,
                      records: 90 * scale, payloadSizes: 600...3000, commitEvery: 1...2),
        CrashWorkload(name: "ring-wrap", sectorSize: 512, segmentSize: 4096, slots: 5, policy: .overwriteOldest,
                      records: 600 * scale, payloadSizes: 40...200, commitEvery: 2...9),
        CrashWorkload(name: "ring-full-pause", sectorSize: 512, segmentSize: 4096, slots: 6, policy: .pause,
                      records: 400 * scale, payloadSizes: 100...300, commitEvery: 3...10),
        CrashWorkload(name: "ring-full-acked", sectorSize: 512, segmentSize: 4096, slots: 5, policy: .overwriteAcked,
                      records: 500 * scale, payloadSizes: 60...200, commitEvery: 2...8, ackUpstream: true),
        CrashWorkload(name: "sector-4096", sectorSize: 4096, segmentSize: 8192, slots: 24, policy: .pause,
                      records: 400 * scale, payloadSizes: 20...400, commitEvery: 1...10),
        CrashWorkload(name: "signed", sectorSize: 512, segmentSize: 4096, slots: 8, policy: .overwriteOldest,
                      records: 300 * scale, payloadSizes: 20...200, commitEvery: 1...6, signed: true),
        CrashWorkload(name: "power-windows", sectorSize: 512, segmentSize: 4096, slots: 12, policy: .overwriteOldest,
                      records: 300 * scale, payloadSizes: 100...700, commitEvery: 2...8, signed: true, powerWindows: true),
    ]
    static let seeds: [UInt64] = [1, 2, 3]

    static func formatted(_ w: CrashWorkload) throws -> [UInt8] {
        let memory = MemoryBlockDevice(size: w.storeSize, sectorSize: w.sectorSize)
        try EvidenceStore.format(device: memory, sectorSize: w.sectorSize, segmentSize: w.segmentSize,
                                 storeUUID: Array(1...16), wallNs: 1_700_000_000_000_000_000, force: false)
        return memory.bytes
    }

    static func record(_ w: CrashWorkload, seed: UInt64) throws -> RecordedRun {
        let device = FaultBlockDevice(image: try formatted(w), sectorSize: w.sectorSize)
        let (store, _) = try EvidenceStore.open(device: device, policy: w.policy, identity: identity(w), clock: CrashOracle.fixedClock)
        if w.powerWindows { try CrashHarness.measureCost(store) }
        let driver = StoreDriver(store: store, clock: ManualClock())
        // Brownout records that often do not fit beside a full buffer: the window's extra commit.
        driver.brownoutPadding = 900
        var run = RecordedRun(device: device, submitted: [:], marks: [], ringFullSeen: false)
        var pending: [RecordKey] = []
        driver.afterCommit = { receipt in
            run.marks.append((device.log.count, store.metadata.generation, pending.map { ($0, receipt.segmentID) }))
            pending.removeAll()
        }
        var rng = SplitMix64(seed: seed)
        var sinceCommit = 0
        var target = Int.random(in: w.commitEvery, using: &rng)
        do {
            for n in 0..<w.records {
                let source = n % 3 == 0 ? "s2" : "s1"
                // Keys enter `pending` before append: an append that commits a full segment first
                // acknowledges only the earlier keys, so this one is added after that commit.
                let key = try driver.append(source: source, payload: w.payload(n, &rng))
                pending.append(key)
                sinceCommit += 1
                if sinceCommit >= target {
                    // Not `&&`: its autoclosure here crashes the Swift 6.3 compiler (SILGenCleanup).
                    let window = w.powerWindows ? n % 5 == 0 : false
                    try driver.commit(brownout: window)
                    // Power comes back: the store is marked open before the next commit (resume).
                    if window { try store.markOpen() }
                    if w.ackUpstream, store.metadata.headSegmentID > 1 {
                        store.acknowledgeUpstream(through: store.metadata.headSegmentID - 1)
                    }
                    sinceCommit = 0
                    target = Int.random(in: w.commitEvery, using: &rng)
                }
            }
            try driver.commit()
            try store.close()
        } catch StoreError.ringFull {
            run.ringFullSeen = true
        }
        run.submitted = driver.submitted
        run.brownouts = driver.brownouts
        run.brownoutsCarried = driver.brownoutsCarried
        return run
    }

    /// The power path's start-up measurement: its writes are cut like any other.
    static func measureCost(_ store: EvidenceStore) throws {
        let clock: () -> Int64 = { 0 }
        _ = try store.measureCommitCost(samples: 2, clock: clock)
    }

    static func seed(_ workload: Int, _ cut: Int, _ variant: Int) -> UInt64 {
        UInt64(workload) &* 1_000_003 &+ UInt64(cut) &* 7919 &+ UInt64(variant) &+ 0xE1D6_E106
    }
}

@Suite("Crash-point enumeration", .serialized)
struct CrashEnumerationTests {
    @Test("every cut of every workload recovers to a correct store",
          arguments: Array(CrashHarness.workloads.indices), CrashHarness.seeds)
    func enumerate(workloadIndex: Int, seed: UInt64) throws {
        let w = CrashHarness.workloads[workloadIndex]
        try #require(!w.signed || CrashHarness.signer != nil, "no Ed25519 key for the signed workload")
        let run = try CrashHarness.record(w, seed: seed * 100 + UInt64(workloadIndex))
        let images = CrashImageBuilder(device: run.device)
        let filled = run.ringFullSeen
        if w.policy == .pause && w.name.hasPrefix("ring-full") { #expect(filled, "workload \(w.name) should have filled the ring") }
        let replay = CrashReplay.fromEnvironment()
        var states = 0
        var verified = 0
        var failures: [String] = []
        for cut in images.cuts {
            for (v, variant) in CrashVariant.allCases.enumerated() {
                let point = CrashPoint(cut: cut, variant: variant, seed: CrashHarness.seed(workloadIndex, cut, v) &+ seed << 40)
                if let replay, !(replay.workload == w.name && replay.cut == cut && replay.variant == variant && replay.runSeed == seed) { continue }
                let image = images.image(at: point, sectorSize: w.sectorSize)
                states += 1
                // Every seventh state also goes through the verifier (the whole check costs ~2 ms a
                // state); every state of a signed workload does.
                let verify: ((any BlockDevice) -> String?)? = w.signed || states % 7 == 0 ? { CrashHarness.chainIntact($0, signed: w.signed) } : nil
                if verify != nil { verified += 1 }
                if let problem = CrashOracle.check(image: image, sectorSize: w.sectorSize, policy: w.policy,
                                                   expect: run.expectation(at: cut), identity: CrashHarness.identity(w), verify: verify) {
                    failures.append("workload=\(w.name) run-seed=\(seed) \(point): \(problem)")
                }
            }
        }
        print("crash states checked: \(states) (workload \(w.name), run seed \(seed), \(run.device.log.count) operations, \(run.marks.count) commits; \(verified) also through the verifier)")
        if w.powerWindows {
            // The path under test: brownout records that needed a commit of their own.
            print("power-windows: \(run.brownouts) brownout commits, \(run.brownoutsCarried) with the record carried to a commit of its own")
            #expect(run.brownoutsCarried > 0, "no brownout record was carried: the workload does not reach that path")
        }
        let failureCount = failures.count
        #expect(failureCount == 0, "\(failures.count) failing crash states; first: \(failures.prefix(5).joined(separator: " | ")); replay with EDGELOG_CRASH_REPLAY=\"workload cut variant run-seed\"")
    }

    @Test("pairs of cuts: power cut again while recovery repairs the first cut", arguments: [0, 2, 5, 6, 7])
    func recoveryOfRecovery(workloadIndex: Int) throws {
        let w = CrashHarness.workloads[workloadIndex]
        let run = try CrashHarness.record(w, seed: 99)
        let images = CrashImageBuilder(device: run.device)
        var states = 0
        var verified = 0
        var repairing = 0
        var failures: [String] = []
        // Cuts on the commit path of the last twenty commits: segment write, metadata write, flush.
        let firstCut = run.marks.count > 20 ? run.marks[run.marks.count - 21].ops : 0
        for cut in firstCut..<(run.device.log.count + 1) {
            for (v, variant) in [CrashVariant.torn512, .garbage, .pendingReordered, .pendingKept].enumerated() {
                let point = CrashPoint(cut: cut, variant: variant, seed: CrashHarness.seed(100 + workloadIndex, cut, v))
                let first = images.image(at: point, sectorSize: w.sectorSize)
                let recovering = FaultBlockDevice(image: first, sectorSize: w.sectorSize)
                _ = try EvidenceStore.recover(device: recovering, policy: w.policy, identity: CrashHarness.identity(w), clock: CrashOracle.fixedClock)
                guard !recovering.log.isEmpty else { continue }
                repairing += 1
                let second = CrashImageBuilder(device: recovering)
                for cut2 in second.cuts {
                    for (v2, variant2) in CrashVariant.allCases.enumerated() {
                        let point2 = CrashPoint(cut: cut2, variant: variant2, seed: CrashHarness.seed(200 + v, cut * 1000 + cut2, v2))
                        let image = second.image(at: point2, sectorSize: w.sectorSize)
                        states += 1
                        let verify: ((any BlockDevice) -> String?)? = states % 7 == 0 ? { CrashHarness.chainIntact($0, signed: w.signed) } : nil
                        if verify != nil { verified += 1 }
                        if let problem = CrashOracle.check(image: image, sectorSize: w.sectorSize, policy: w.policy,
                                                           expect: run.expectation(at: cut), identity: CrashHarness.identity(w),
                                                           continueWriting: false, verify: verify) {
                            failures.append("\(w.name) first \(point), second \(point2): \(problem)")
                        }
                    }
                }
            }
        }
        print("crash states checked: \(states) (pairs through recovery, workload \(w.name), \(repairing) repairing first cuts; \(verified) also through the verifier)")
        #expect(repairing > 10)
        let failureCount = failures.count
        #expect(failureCount == 0, "\(failures.count) failing pairs; first: \(failures.prefix(5).joined(separator: " | "))")
    }
}

struct CrashReplay {
    var workload: String
    var cut: Int
    var variant: CrashVariant
    var runSeed: UInt64

    static func fromEnvironment() -> CrashReplay? {
        guard let text = Environment.get("EDGELOG_CRASH_REPLAY") else { return nil }
        let parts = text.split(separator: " ").map(String.init)
        guard parts.count >= 4, let cut = Int(parts[1]), let variant = CrashVariant(rawValue: parts[2]), let seed = UInt64(parts[3]) else { return nil }
        return CrashReplay(workload: parts[0], cut: cut, variant: variant, runSeed: seed)
    }
}
