// Exponential backoff with jitter for a failing device: retries come at base·2^(n-1), capped, each
// scaled by a random factor in [0.5, 1.5) so that devices failing together (a bus that went away)
// do not retry in lockstep. A failing device never stops being retried.

public struct Backoff: Sendable, Equatable {
    public var baseNs: Int64
    public var maxNs: Int64
    public init(baseNs: Int64 = 100_000_000, maxNs: Int64 = 30_000_000_000) {
        self.baseNs = max(baseNs, 1_000_000)
        self.maxNs = max(maxNs, self.baseNs)
    }

    /// The wait before retry number `failures` (1: after the first failure), without jitter.
    public func nominalNs(failures: Int) -> Int64 {
        let shift = min(max(failures - 1, 0), 40)
        let (scaled, overflow) = baseNs.multipliedReportingOverflow(by: Int64(1) << shift)
        return overflow ? maxNs : min(scaled, maxNs)
    }

    public func delayNs<R: RandomNumberGenerator>(failures: Int, using random: inout R) -> Int64 {
        let nominal = nominalNs(failures: failures)
        let factor = Double.random(in: 0.5..<1.5, using: &random)
        // Clamped: a nominal near Int64.max times 1.5 does not fit.
        return Int64(min(Double(nominal) * factor, Double(Int64.max / 2)))
    }
}
