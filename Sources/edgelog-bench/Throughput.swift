// The throughput driver. Every contender gets the same batches (as many 128-byte records as fit
// in one 32 KiB segment) on its own fresh file, and the contenders run interleaved batch by batch,
// in an order that rotates every batch. This machine's disk is shared (another build may be
// writing) and stalls of tens to hundreds of milliseconds come and go: run one after the other,
// each contender would catch a different set of them and the ratios would swing by 2x from run to
// run. Interleaved, they see the same weather. Each batch ends with a completed flush, so no
// contender leaves dirty data behind for the next one to pay for.
// A contender's elapsed time is the sum of its own batch times (building records included).

protocol Contender: AnyObject {
    var name: String { get }
    /// Builds and durably commits records `range` (batch number `index`); returns the time spent
    /// in the commit call alone, in nanoseconds.
    func batch(_ range: Range<Int>, index: Int) -> UInt64
    /// Checks what was committed and releases the file; not timed.
    func finish(records: Int)
    var note: String { get }
}

struct ThroughputResult {
    var name: String
    var records: Int
    var commits: Int
    var elapsedNs: UInt64 = 0
    /// Commit-call time per batch.
    var latencies: Latencies
    /// Whole batch time (records built + commit) per batch.
    var batchTimes: Latencies
    var note = ""

    var recordsPerSecond: Double { Double(records) / (Double(elapsedNs) / 1e9) }
    var commitNs: UInt64 { latencies.samples.reduce(0, +) }

    /// Records per second at the median batch time: what a batch costs without the stalls.
    var medianRecordsPerSecond: Double {
        let s = batchTimes.samples.sorted()
        guard !s.isEmpty else { return .nan }
        return Double(records) / Double(s.count) / (Double(s[s.count / 2]) / 1e9)
    }
}

enum Throughput {
    static func run(_ contenders: [Contender], records: Int, batch: Int) -> [ThroughputResult] {
        let batches = (records + batch - 1) / batch
        var results = contenders.map {
            ThroughputResult(name: $0.name, records: records, commits: 0,
                             latencies: Latencies(capacity: batches), batchTimes: Latencies(capacity: batches))
        }
        let progressEvery = max(batches / 5, 1)
        for index in 0..<batches {
            let range = (index * batch)..<min((index + 1) * batch, records)
            for k in 0..<contenders.count {
                let c = (index + k) % contenders.count
                let t0 = monoNs()
                let commitNs = contenders[c].batch(range, index: index)
                let t = monoNs() &- t0
                results[c].elapsedNs &+= t
                results[c].batchTimes.add(t)
                results[c].latencies.add(commitNs)
                results[c].commits += 1
            }
            if (index + 1) % progressEvery == 0 || index + 1 == batches {
                progress("throughput: batch \(index + 1)/\(batches) done by every contender")
            }
        }
        for (c, contender) in contenders.enumerated() {
            contender.finish(records: records)
            results[c].note = contender.note
        }
        return results
    }
}
