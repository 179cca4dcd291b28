// The benchmark is a program, not a timed test (GUIDE.md), but it must keep running: this runs the
// format 6 sections of the debug build once, quickly, and checks that every figure line is printed.
// The figures themselves are not judged here.

import Foundation
import Testing

@Suite("Benchmark smoke")
struct BenchSmokeTests {
    @Test("edgelog-bench --packing-only --quick prints every figure of sections 7 and 8")
    func packingSections() throws {
        let bench = Binary.root.appendingPathComponent(".build/debug/edgelog-bench").path
        let r = try runProcess(bench, ["--packing-only", "--quick"])
        #expect(r.code == 0, "\(r.err.suffix(400))")
        for prefix in ["packing_a:", "packing_b:", "packing_a_segments:", "packed_a:", "packed_a_writes:", "packed_a_speed:", "packed_a_one_at_a_time:", "packed_a_wait:", "packed_a_staged_overlapped:", "packed_a_submit:",
                       "packed_b:", "packed_b_writes:", "packed_b_speed:", "packed_retention_ratio=", "packed_open_64MiB_ms=",
                       "packed_placement:", "packed_a_speed_batches:", "packed_b_speed_batches:", "packed_a_evidence_store:", "packed_b_evidence_store_burst:",
                       "packed_a_write:", "packed_a_frame_us:", "packed_b_frame_us:"] {
            #expect(r.out.split(separator: "\n").contains { $0.hasPrefix(prefix) }, "no \(prefix) line")
        }
    }
}
