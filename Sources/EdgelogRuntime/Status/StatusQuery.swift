// `edgelog status` (docs/CLI.md): ask the job on the state directory's socket; when none answers,
// read the store the board file names, read-only, as `inspect` does, and say which of its numbers
// the head segment's seal vouches for. The outcome decides the exit code.

import EdgelogCore
import EdgelogLinux
import EdgelogStore

public enum StatusQuery {
    /// How long `ask` waits for a job's answer.
    public static let answerTimeoutMs = 3000

    public enum Answer: Sendable {
        /// The job answered with a snapshot that checks.
        case running(StatusSnapshot)
        /// Nothing listens on the state directory (why, in words).
        case notRunning(String)
        /// Something holds the socket but gave no usable answer (hung, or not an edgelog).
        case noAnswer(String)
        /// The socket cannot be used by this user, or the path is not usable.
        case unusable(SocketError)
    }

    public static func ask(stateDir: String, timeoutMs: Int = answerTimeoutMs) -> Answer {
        let answer = ask(path: StatusSocketService.socketPath(stateDir: stateDir), timeoutMs: timeoutMs)
        // A job whose state directory cannot hold a socket listens under /run/edgelog.
        if case .notRunning = answer {
            let fallback = ask(path: StatusSocketService.fallbackSocketPath(stateDir: stateDir), timeoutMs: timeoutMs)
            if case .notRunning = fallback { return answer }
            return fallback
        }
        return answer
    }

    static func ask(path: String, timeoutMs: Int) -> Answer {
        switch UnixStreamClient.request(path, timeoutMs: timeoutMs) {
        case .success(let bytes):
            do throws(StatusAnswerError) {
                var snapshot = try StatusJSON.decode(Array(bytes.prefix { $0 != 10 }))
                guard snapshot.origin == .process else { return .noAnswer("the answer does not come from a running job (origin \(snapshot.origin.rawValue))") }
                snapshot.note = nil
                return .running(snapshot)
            } catch {
                return .noAnswer("\(error)")
            }
        case .failure(let e):
            switch e.kind {
            case .notRunning: return .notRunning(e.detail)
            case .pathTooLong: return .notRunning(e.detail + ": no job can listen there")
            case .timeout, .tooLarge: return .noAnswer(e.detail)
            default: return .unusable(e)
            }
        }
    }

    /// The store's own account of the last run, read-only. Throws what opening or reading it
    /// throws (device, not a store, newer format).
    public static func fromStore(board: Board, stateDir: String) throws(JobError) -> StatusSnapshot {
        let path = BoardJob.settings(for: board, stateDir: stateDir).device
        let device: FileBlockDevice
        do { device = try FileBlockDevice(path: path, readOnly: true) } catch { throw .device(error) }
        if PackedStoreProbe.isPacked(device) { return try fromPackedStore(device, board: board, path: path) }
        let a: StoreAnalysis
        do { a = try EvidenceStore.analyze(device: device) } catch { throw .store(error) }
        let m = a.state
        var s = StatusSnapshot(origin: .store, state: .notRunning)
        s.board = board.name
        var store = StoreReport(path: path)
        store.headSegmentID = m.ringIsEmpty ? 0 : m.headSegmentID
        store.recordsTotal = m.recordsTotal
        store.clean = !a.uncleanShutdown
        var power = PowerReport(boEvent: m.boEvent, unexpRst: m.unexpRst)
        power.state = nil
        s.power = power

        // FORMAT.md 2 and 9 item 4: the slot is not signed; its numbers count where they agree
        // with the head segment's seal. clean_flag is in no seal.
        var unverified = ["clean_flag"]
        if m.ringIsEmpty {
            store.metadataCheck = "nothing committed yet: no seal to check the metadata against"
            unverified += ["unexp_rst", "bo_event", "records_total"]
        } else if let seal = a.headSeal {
            let sealed = seal.statement.sealed
            let mismatches = m.mismatches(against: seal.statement, tailGivenUp: a.tailLost.count)
            let fields = Set(mismatches.map(\.field))
            store.metadataCheck = mismatches.isEmpty
                ? "agrees with the seal of head segment \(m.headSegmentID) (the seal's signature is checked by edgelog verify)"
                : "CONTRADICTS the seal of head segment \(m.headSegmentID): " + mismatches.map(\.description).joined(separator: "; ")
            for field in ["bo_event", "records_total"] where fields.contains(field) { unverified.append(field) }
            // unexp_rst may legitimately be above the sealed count (resets after the last commit).
            if fields.contains("unexp_rst") || m.unexpRst > sealed.unexpRst {
                unverified.append("unexp_rst (the seal vouches for \(sealed.unexpRst))")
            }
        } else {
            store.metadataCheck = "NOT CHECKED: the head segment is not readable, so no seal vouches for these numbers"
            unverified += ["head_segment_id", "unexp_rst", "bo_event", "records_total"]
        }
        store.unverified = unverified
        s.store = store
        s.note = "no edgelog job answers on this state directory: these numbers are read from the store's metadata, not from a running job"
        return s
    }
}

extension StatusQuery {
    /// A format 6 store's own account of the last run (FORMAT.md A.8, A.9): the sealed numbers are
    /// the head frame's; the slot's are shown where they agree with the frame it names.
    static func fromPackedStore(_ device: FileBlockDevice, board: Board, path: String) throws(JobError) -> StatusSnapshot {
        let i: PackedInspection
        do { i = try PackedInspection.read(device: device) } catch { throw .store(PackedEvidenceStore.storeError(error, device: device)) }
        let h = i.history
        var s = StatusSnapshot(origin: .store, state: .notRunning)
        s.board = board.name
        var store = StoreReport(path: path)
        store.headSegmentID = h.headSegmentID
        store.recordsTotal = h.state.recordsTotal
        store.clean = h.recovery.cleanBefore
        var power = PowerReport(boEvent: h.state.boEvent, unexpRst: h.metadata.unexpRst)
        power.state = nil
        s.power = power
        var unverified = ["clean_flag"]
        if h.headFrameID == 0 {
            store.metadataCheck = "nothing committed yet: no sealed state to check the metadata against"
            unverified += ["unexp_rst", "bo_event", "records_total"]
        } else if let mismatches = i.mismatches {
            store.metadataCheck = mismatches.isEmpty
                ? "agrees with the sealed state of frame \(i.chosen.headFrameID) (its signature is checked by edgelog verify)"
                : "CONTRADICTS the sealed state of frame \(i.chosen.headFrameID): " + mismatches.map(\.description).joined(separator: "; ")
            if let sealed = i.headHeader?.unexpRst, h.metadata.unexpRst > sealed {
                unverified.append("unexp_rst (the head segment vouches for \(sealed))")
            }
        } else {
            store.metadataCheck = "NOT CHECKED: the frame the metadata names is not in the ring, so no sealed state vouches for these numbers"
            unverified += ["head_segment_id", "unexp_rst"]
        }
        store.unverified = unverified
        s.store = store
        s.note = "no edgelog job answers on this state directory: these numbers are read from the store, not from a running job"
        return s
    }
}

/// What `edgelog status` prints and how it ends.
public struct StatusReport: Sendable {
    public enum Outcome: Sendable, Equatable {
        /// A job runs and no condition is active.
        case ok
        /// A job runs with conditions; the most urgent one's category.
        case condition(NE107Category)
        /// No job runs (the store was read if a board file was given).
        case notRunning
        /// A job holds the socket but gave no usable answer.
        case noAnswer
    }

    public var outcome: Outcome
    public var snapshot: StatusSnapshot
    /// Text for a terminal (terminal-safe), or one JSON line.
    public var output: String
    /// Said on stderr as well (an error reading the store after a job gave no answer).
    public var warnings: [String] = []

    /// Asks the job on `stateDir`, else reads the store of the board file at `boardPath`.
    /// Throws: the board file's mistakes (.board), the store's errors (.store, .device), a socket
    /// this user may not use (.hardware: the message names the socket).
    public static func make(stateDir: String, boardPath: String?, json: Bool, timeoutMs: Int = StatusQuery.answerTimeoutMs) throws(JobError) -> StatusReport {
        var snapshot: StatusSnapshot
        var outcome: Outcome
        var warnings: [String] = []
        switch StatusQuery.ask(stateDir: stateDir, timeoutMs: timeoutMs) {
        case .running(let s):
            snapshot = s
            outcome = s.topCategory.map { .condition($0) } ?? .ok
        case .unusable(let e):
            throw .hardware("status socket \(e)")
        case .notRunning(let why):
            outcome = .notRunning
            if let boardPath {
                snapshot = try StatusQuery.fromStore(board: try loadBoard(boardPath), stateDir: stateDir)
            } else {
                snapshot = StatusSnapshot(origin: .none, state: .notRunning)
                snapshot.note = "\(why); give --board FILE to read the state its store keeps"
            }
        case .noAnswer(let why):
            outcome = .noAnswer
            snapshot = StatusSnapshot(origin: .none, state: .noAnswer)
            snapshot.note = "\(why): the job may be hung or busy starting"
            // The store can still be read (read-only, never in the writer's way).
            if let boardPath {
                do throws(JobError) {
                    var stored = try StatusQuery.fromStore(board: try loadBoard(boardPath), stateDir: stateDir)
                    stored.state = .noAnswer
                    stored.note = snapshot.note.map { $0 + "; the numbers below are read from the store's metadata, which the job may be changing" }
                    snapshot = stored
                } catch {
                    warnings.append("the store could not be read either: \(error)")
                }
            }
        }
        let output = json ? StatusJSON.encode(snapshot) : StatusText.render(snapshot, stateDir: stateDir)
        return StatusReport(outcome: outcome, snapshot: snapshot, output: output, warnings: warnings)
    }

    static func loadBoard(_ path: String) throws(JobError) -> Board {
        do { return try Board.load(path) } catch { throw .board(error) }
    }
}
