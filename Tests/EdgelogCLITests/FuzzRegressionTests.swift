// Every input a fuzzer once crashed on is kept in fuzz/regressions/TARGET-NAME and replayed here
// through the same targets (built without sanitizers), with the seed corpus the fuzzers start from.

import Foundation
import Testing

@Suite("Fuzz regressions", .serialized)
struct FuzzRegressionTests {
    static let replay = Binary.root.appendingPathComponent(".build/debug/edgelog-fuzz").path

    @Test("kept crash inputs and the seed corpus replay without a crash")
    func replayAll() throws {
        let s = try Scratch()
        let corpus = s.path("corpus")
        let seeded = try runProcess(Self.replay, ["seed-corpus", corpus])
        #expect(seeded.code == 0, "\(seeded.err)")
        let regressions = Binary.root.appendingPathComponent("fuzz/regressions")
        let kept = (try? FileManager.default.contentsOfDirectory(atPath: regressions.path)) ?? []
        var replayed = 0
        for target in ["json", "metadata", "segment", "image"] {
            var files = kept.filter { $0.hasPrefix(target + "-") }.map { regressions.appendingPathComponent($0).path }
            let seeds = (try? FileManager.default.contentsOfDirectory(atPath: corpus + "/" + target)) ?? []
            files += seeds.map { corpus + "/" + target + "/" + $0 }
            #expect(!seeds.isEmpty, "no seeds for \(target)")
            let r = try runProcess(Self.replay, [target] + files)
            #expect(r.code == 0, "\(target): \(r.err)")
            replayed += files.count
        }
        print("fuzz regressions: \(kept.count) kept crash inputs, \(replayed) inputs replayed")
        #expect(kept.count >= 1)
    }
}
