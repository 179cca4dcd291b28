// The running job's status, kept in one place: which conditions are active (with a detail and since
// when) and the facts `edgelog status` shows. Any thread may update it; the LED driver is woken when
// the active conditions change, and the status socket takes a snapshot per connection.
//
//     let status = StatusBoard(board: board.name)
//     status.set(.storageFault, active: true, detail: "\(error)")
//     status.update { $0.power = .frozen; $0.boEvent = meta.boEvent }
//     status.updateSources(engine.scheduler.status())   // sets sensor_fault too

import EdgelogCore
import EdgelogIngress
import EdgelogLinux
import EdgelogStore
import Synchronization

public final class StatusBoard: Sendable {
    /// What a condition carries while it is active.
    public struct Active: Equatable, Sendable {
        public var condition: StatusCondition
        public var detail: String
        /// Monotonic ns when it became active.
        public var sinceNs: Int64
    }

    struct State {
        var active: [StatusCondition: Active] = [:]
        var facts = StatusFacts()
        var version: UInt64 = 0
        var lastAliveNs: Int64 = 0
        var observers: [@Sendable () -> Void] = []
        var ledReporter: (@Sendable () -> [LEDReport])?
    }

    /// Details are cut to this many characters (a snapshot stays small whatever an error says).
    public static let maxDetail = 400

    public let pid: Int32
    public let startedWallNs: Int64
    private let startedNs: Int64
    private let clock: @Sendable () -> Int64
    private let state = Mutex(State())

    public init(board: String? = nil, pid: Int32 = Process.id, startedWallNs: Int64 = SystemClock.now().wallNs,
                clock: @escaping @Sendable () -> Int64 = { Monitor.monotonicNs() }) {
        self.pid = pid
        self.startedWallNs = startedWallNs
        self.clock = clock
        startedNs = clock()
        state.withLock {
            $0.facts.board = board
            $0.facts.phase = .starting
        }
    }

    /// Turns `condition` on or off. `detail` says what exactly (which sensor, which error); it is
    /// kept while active and replaced by each call. Cheap when nothing changes.
    public func set(_ condition: StatusCondition, active: Bool, detail: String = "") {
        let now = clock()
        let text = String(detail.prefix(Self.maxDetail))
        let observers: [@Sendable () -> Void] = state.withLock { s in
            let was = s.active[condition]
            if active {
                s.active[condition] = Active(condition: condition, detail: text, sinceNs: was?.sinceNs ?? now)
                guard was == nil else { return [] }
            } else {
                guard was != nil else { return [] }
                s.active[condition] = nil
            }
            s.version &+= 1
            return s.observers
        }
        for observer in observers { observer() }
    }

    /// Changes the facts in place.
    public func update(_ body: (inout StatusFacts) -> Void) {
        state.withLock { body(&$0.facts) }
    }

    /// The sources' health from the scheduler; sensor_fault is active while any source's last
    /// attempt failed, with those sources named in its detail.
    public func updateSources(_ sources: [Scheduler.SourceStatus]) {
        let facts = sources.map {
            SourceFacts(name: $0.name, failing: $0.failing, failures: $0.failures, lastError: $0.lastError.map { String($0.prefix(Self.maxDetail)) })
        }
        update { $0.sources = facts }
        let failing = sources.filter { $0.failing > 0 }
        set(.sensorFault, active: !failing.isEmpty,
            detail: failing.map { "\($0.name) (\($0.failing) in a row)" }.joined(separator: ", "))
    }

    /// The kernel's clock discipline: time_not_synchronized follows it.
    public func updateTime(synchronized: Bool, detail: String = "") {
        update { $0.timeSynced = synchronized }
        set(.timeNotSynchronized, active: !synchronized, detail: detail)
    }

    /// The job is making progress (called from its main loop). The LED driver shows a stall when
    /// the job has called this once and then not for a while (docs/LEDS.md).
    public func alive() {
        let now = clock()
        state.withLock { $0.lastAliveNs = now }
    }

    /// Monotonic ns of the last `alive()` (0: never called).
    public var lastAliveNs: Int64 { state.withLock { $0.lastAliveNs } }

    /// Active conditions, most urgent first.
    public var active: [Active] { state.withLock { $0.active.values.sorted { $0.condition < $1.condition } } }
    public var activeConditions: [StatusCondition] { active.map(\.condition) }
    public var facts: StatusFacts { state.withLock { $0.facts } }

    /// Changes every time the set of active conditions changes.
    public var version: UInt64 { state.withLock { $0.version } }

    /// `body` runs (on the changing thread, outside the board's lock) whenever the set of active
    /// conditions changes.
    public func onChange(_ body: @escaping @Sendable () -> Void) {
        state.withLock { $0.observers.append(body) }
    }

    /// Where the snapshot's `leds` come from (the LED driver sets it).
    public func setLEDReporter(_ reporter: (@Sendable () -> [LEDReport])?) {
        state.withLock { $0.ledReporter = reporter }
    }

    /// Everything `edgelog status` shows, now.
    public func snapshot() -> StatusSnapshot {
        let now = clock()
        let (active, facts, reporter) = state.withLock { s in
            (s.active.values.sorted { $0.condition < $1.condition }, s.facts, s.ledReporter)
        }
        let conditions = active.map { ConditionReport(condition: $0.condition, detail: $0.detail, activeForMs: max(0, now - $0.sinceNs) / 1_000_000) }
        var s = StatusSnapshot(origin: .process, state: conditions.isEmpty ? .ok : .condition, conditions: conditions)
        s.pid = pid
        s.startedWallNs = startedWallNs
        s.uptimeMs = max(0, now - startedNs) / 1_000_000
        s.board = facts.board
        s.phase = facts.phase
        var window = facts.lastSafeCommit
        if window != nil, let at = facts.lastSafeCommitMonoNs { window?.agoMs = max(0, now - at) / 1_000_000 }
        let power = PowerReport(state: facts.power, boEvent: facts.boEvent, unexpRst: facts.unexpRst,
                                holdUp: facts.holdUp, lastSafeCommit: window)
        s.power = power.isEmpty ? nil : power
        if let store = facts.store {
            var r = StoreReport(path: store.path)
            r.headSegmentID = store.headSegmentID
            r.recordsTotal = store.recordsTotal
            r.clean = store.clean
            r.lastCommitID = store.lastCommitID
            r.lastCommitAgeMs = store.lastCommitMonoNs.map { max(0, now - $0) / 1_000_000 }
            s.store = r
        }
        s.sources = facts.sources
        s.timeSynced = facts.timeSynced
        s.uplinkBacklogSegments = facts.uplinkBacklogSegments
        s.leds = reporter?()
        return s
    }
}
