import ArgumentParser
import Dispatch
import EdgelogCore
import EdgelogLinux
import EdgelogRuntime
import EdgelogStore

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the logger: read a board's sensors (--board), or JSON lines from stdin, and commit them signed until stopped.",
        discussion: """
            With --board FILE (docs/BOARDS.md): reads the I2C, SPI and serial devices the board file \
            names at their periods, stamps and sequences every reading at ingress, and commits it \
            signed, with records for every fault, recovery, drop, decimation and backpressure, until \
            SIGINT or SIGTERM; then commits what is buffered and exits 0. Relative store, key and \
            anchor paths of the board resolve against --state-dir (default /var/lib/edgelog). A file \
            store is created on first run; a block device is never formatted. On a terminal a status \
            line shows records/s, the last commit, the backlog and failing sources; logs go to stderr.

            Example: edgelog run --board board/sim.yaml --state-dir var

            Without --board: reads the configuration file (--config, else /etc/edgelog/edgelog.yaml if present, else \
            the embedded default: a file store var/store.img, keys in var/keys, the anchor \
            var/anchor.json) and runs what `ingest` runs with those settings: every commit signed \
            with the configured key directory (refused without one unless `unsigned: true`), the \
            anchor kept, JSON lines from stdin committed and acknowledged until end of input, \
            SIGINT or SIGTERM. A file store that does not exist yet is created at store_size and \
            formatted; a block device is never formatted by `run`. Flags override the file. \
            Settings: device, key_dir, unsigned, anchor (or none), anchor_interval, source, \
            ring_full, max_age_ms, block_ms, store_size, segment_size (docs/CLI.md).

            Example: sensor-reader | edgelog run --config /etc/edgelog/edgelog.yaml
            """
    )

    @Option(help: "Board file: the sensors, buses and store to run (board/*.yaml; see `edgelog board list`).")
    var board: String?

    @Option(help: "With --board: directory for the board's relative store, key and anchor paths.")
    var stateDir = "/var/lib/edgelog"

    @Option(help: "With --board: stop after this many seconds (default: run until SIGINT or SIGTERM).")
    var duration: Double?

    @Flag(help: "With --board: print a JSON summary on stdout when stopped.")
    var json = false

    @Flag(help: "With --board: after each durable commit print {\"ack\":{\"commit_id\":C,\"segment_id\":S,\"records\":N,\"last_mono\":M}} on stdout (C: the commit, as export's commit_id; S: its segment) (what a power cut cannot take back).")
    var acks = false

    @Option(help: "Configuration file without --board (default: /etc/edgelog/edgelog.yaml if it exists, else the embedded default).")
    var config: String?

    @Option(help: "Store device or file (overrides `device`).")
    var device: String?

    @Option(help: "Key directory (overrides `key_dir`).")
    var keyDir: String?

    @Option(help: "Anchor file (overrides `anchor`).")
    var anchor: String?

    @Option(help: "Source name (overrides `source`).")
    var source: String?

    @Flag(help: "Print the settings in effect as JSON and exit.")
    var showConfig = false

    func validate() throws {
        if let duration, !(duration.isFinite && duration >= 0 && duration <= 1e9) {
            throw ValidationError("--duration must be a number of seconds from 0 to 1000000000")
        }
    }

    func run() throws {
        if let board {
            try BoardRun(path: board, stateDir: stateDir, duration: duration, json: json, acks: acks).run()
            return
        }
        var settings = RunConfig()
        let path = config ?? (LocalFile.exists(RunConfig.systemPath) ? RunConfig.systemPath : nil)
        if let path {
            do { settings = try RunConfig.load(path) } catch {
                Exit.say("error: \(error)")
                throw ExitCode(Exit.usage)
            }
        }
        if let device { settings.device = device }
        if let keyDir {
            settings.keyDir = keyDir
            settings.unsigned = false
        }
        if let anchor { settings.anchor = anchor }
        if let source { settings.source = source }
        do { try SourceName.validate(settings.source) } catch {
            Exit.say("error: source: \(error)")
            throw ExitCode(Exit.usage)
        }
        if settings.unsigned { settings.keyDir = nil }
        if showConfig {
            print("{\"config\":\(path.map { "\"\(jsonEscaped($0))\"" } ?? "null"),\"device\":\"\(jsonEscaped(settings.device))\","
                + "\"key_dir\":\(settings.keyDir.map { "\"\(jsonEscaped($0))\"" } ?? "null"),\"unsigned\":\(settings.unsigned),"
                + "\"anchor\":\(settings.anchor.map { "\"\(jsonEscaped($0))\"" } ?? "null"),\"anchor_interval\":\(settings.anchorInterval),"
                + "\"source\":\"\(settings.source)\",\"ring_full\":\"\(settings.ringFull.rawValue)\",\"max_age_ms\":\(settings.maxAgeMs),"
                + "\"block_ms\":\(settings.blockMs),\"store_size\":\(settings.storeSize),\"segment_size\":\(settings.segmentSize)}")
            return
        }
        guard settings.keyDir != nil || settings.unsigned else {
            Exit.say("error: no key directory configured: set key_dir (make one with `edgelog keys generate --out DIR`) or unsigned: true")
            throw ExitCode(Exit.keyProblem)
        }
        // The embedded default is a file-backed partition: create and format it on first run.
        // stdout carries acknowledgements only: the news goes to stderr.
        do { try StoreFile.createIfMissing(path: settings.device, size: settings.storeSize, segmentSize: settings.segmentSize) { Exit.say($0) } } catch {
            throw Exit.fail(error)
        }
        try IngestJob(settings: settings.writerSettings, source: settings.source, power: PowerFailSpec(holdUpMs: 0)).run()
    }
}

/// `run --board`: the board job under swift-service-lifecycle, logging through swift-log to stderr.
struct BoardRun {
    var path: String
    var stateDir: String
    var duration: Double?
    var json: Bool
    var acks: Bool

    func run() throws {
        let board: Board
        do { board = try Board.load(path) } catch {
            Exit.say("error: \(error)")
            throw ExitCode(Exit.usage)
        }
        Logs.bootstrap()
        let logger = Logs.logger()
        var options = BoardRunOptions(stateDir: stateDir, statusLine: Process.isTerminal(2) && !json && !acks, durationS: duration)
        if acks {
            options.onCommit = { r in
                FDOutput.writeLine(1, "{\"ack\":{\"commit_id\":\(r.commitID),\"segment_id\":\(r.segmentID),\"records\":\(r.recordCount),\"last_mono\":\(r.lastMono)}}")
            }
        }
        let box = ResultBox()
        let done = DispatchSemaphore(value: 0)
        Task {
            do throws(JobError) { box.set(.success(try await BoardJob.run(board: board, options: options, logger: logger))) } catch { box.set(.failure(error)) }
            done.signal()
        }
        done.wait()
        switch box.get() {
        case .success(let summary)?:
            if json { print(BoardSummaryJSON.text(summary)) }
        case .failure(let error)?: throw Exit.fail(error)
        case nil: throw ExitCode(Exit.internalError)
        }
    }
}

final class ResultBox: @unchecked Sendable {
    private var value: Result<BoardRunSummary, JobError>?
    private let lock = DispatchSemaphore(value: 1)
    func set(_ v: Result<BoardRunSummary, JobError>) { lock.wait(); value = v; lock.signal() }
    func get() -> Result<BoardRunSummary, JobError>? { lock.wait(); defer { lock.signal() }; return value }
}
