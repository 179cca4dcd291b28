// Hands out per-source seq and the store-wide mono_ctr. Not thread-safe: the commit pipeline holds
// it under its lock. It starts above everything committed, so numbers never repeat or go back.

import EdgelogCore

public struct Sequencer: Sendable {
    public private(set) var mono: UInt64
    private var lastSeq: [String: UInt64]
    private var sourceCount: Int
    /// Entries the store's source table holds, the engine's included.
    private let maxSources: Int
    /// The source of the previous call and its last seq: most records come from the same source
    /// as the one before, and this skips the dictionary's hashing for them.
    private var recentSource = ""
    private var recentSeq: UInt64 = 0

    public init(from metadata: Metadata) {
        self.init(mono: metadata.monoHWM, lastSeq: metadata.sources.map { ($0.name, $0.lastSeq) }, maxSources: Layout.maxSources)
    }

    public init(mono: UInt64, lastSeq: [(String, UInt64)], maxSources: Int) {
        self.mono = mono
        self.lastSeq = Dictionary(lastSeq, uniquingKeysWith: max)
        sourceCount = self.lastSeq.count
        self.maxSources = maxSources
    }

    /// The next (seq, mono) for `source`, or why the source cannot be added.
    public mutating func next(for source: String) throws(StoreError) -> (seq: UInt64, mono: UInt64) {
        if source == recentSource && !recentSource.isEmpty {
            recentSeq += 1
            mono += 1
            return (recentSeq, mono)
        }
        if !recentSource.isEmpty { lastSeq[recentSource] = recentSeq }
        let seq: UInt64
        if let last = lastSeq[source] {
            seq = last + 1
        } else {
            // One entry stays free for the engine's own source.
            guard sourceCount < maxSources - (lastSeq[SourceName.engine] == nil ? 1 : 0) else {
                throw .sourceTableFull(source: source, limit: maxSources - 1)
            }
            sourceCount += 1
            seq = 1
        }
        lastSeq[source] = seq
        recentSource = source
        recentSeq = seq
        mono += 1
        return (seq, mono)
    }

    /// Reserves mono values after a buffer handed to the committer, for the evidence records the
    /// commit may add (gap, drop). Records appended later get higher values, so order holds.
    public mutating func reserveEvidence(for builder: some CommitBuffer, count: Int) {
        builder.evidenceMono = mono + 1
        builder.evidenceMonoLimit = mono + UInt64(count)
        mono += UInt64(count)
    }
}
