// What a technician sees while the logger runs: on a terminal, one line rewritten each second
// (records per second, last commit, backlog, sources in trouble); otherwise a structured log line
// every minute. Source faults are logged as they happen by the job itself.

import EdgelogCore
import EdgelogIngress
import EdgelogLinux
import EdgelogStore
import Logging
import ServiceLifecycle

struct StatusService: Service, @unchecked Sendable {
    let engine: IngressEngine
    let status: JobStatus
    let live: Bool
    let logger: Logger
    /// Given: each second it gets the sources' health (sensor_fault follows it), the last commit,
    /// and a sign of life for the LEDs' stall display (docs/LEDS.md); every 10 s the kernel's
    /// clock sync status (time_not_synchronized follows it).
    var board: StatusBoard? = nil

    func run() async throws {
        var lastRecords: UInt64 = 0
        var lastNs = Monitor.monotonicNs()
        var lastLogNs = lastNs
        var lastSyncNs: Int64 = 0
        let clock = LinuxTimeSource()
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await Task.sleep(nanoseconds: 1_000_000_000)
            let now = Monitor.monotonicNs()
            let records = engine.recordsAppended
            let rate = Double(records &- lastRecords) / max(Double(now - lastNs) / 1e9, 0.001)
            lastRecords = records
            lastNs = now
            let commit = status.lastCommit
            let sources = engine.scheduler.status()
            let failing = sources.filter { $0.failing > 0 }
            if let board {
                board.alive()
                board.updateSources(sources)
                // The kernel's clock discipline, every 10 s (one adjtimex).
                if now - lastSyncNs >= 10_000_000_000 {
                    lastSyncNs = now
                    let sync = clock.sync()
                    board.updateTime(synchronized: sync.synchronized,
                                     detail: sync.synchronized ? "" : "the kernel's maximum error is \(sync.maxErrorUs / 1000) ms")
                }
                if commit.atNs != 0 {
                    board.update {
                        $0.store?.lastCommitID = commit.commitID
                        $0.store?.lastCommitMonoNs = commit.atNs
                    }
                }
            }
            let depth = engine.queue.depth
            if live {
                let age = commit.atNs == 0 ? "none yet" : "#\(commit.commitID) \(String(format1: Double(now - commit.atNs) / 1e9)) s ago"
                var line = "\(String(format1: rate)) rec/s | last commit \(age) | backlog \(depth)"
                line += failing.isEmpty ? " | all \(sources.count) sources ok" : " | failing: " + failing.map { "\($0.name) (\($0.failing))" }.joined(separator: ", ")
                FDOutput.write(2, "\r\u{1B}[K" + terminalSafe(line))
            } else if now - lastLogNs >= 60_000_000_000 {
                lastLogNs = now
                logger.info("status", metadata: ["records_per_s": "\(String(format1: rate))", "last_commit": "\(commit.commitID)",
                                                 "backlog": "\(depth)", "failing_sources": "\(failing.map(\.name).joined(separator: ","))"])
            }
        }
        if live { FDOutput.write(2, "\n") }
    }
}

extension String {
    /// One decimal place, without Foundation.
    init(format1 value: Double) {
        guard value.isFinite else {
            self = "-"
            return
        }
        let tenths = Int64((value * 10).rounded())
        self = "\(tenths / 10).\(abs(tenths % 10))"
    }
}
