import ArgumentParser
import EdgelogCore
import EdgelogLinux
import EdgelogRuntime
import EdgelogStore

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the logger with its configuration: sign and commit records until stopped.",
        discussion: """
            Reads the configuration file (--config, else /etc/edgelog/edgelog.conf if present, else \
            the embedded default: a file store var/store.img, keys in var/keys, the anchor \
            var/anchor.json) and runs what `ingest` runs with those settings: every commit signed \
            with the configured key directory (refused without one unless `unsigned = true`), the \
            anchor kept, JSON lines from stdin committed and acknowledged until end of input, \
            SIGINT or SIGTERM. A file store that does not exist yet is created at store_size and \
            formatted; a block device is never formatted by `run`. Flags override the file. \
            Settings: device, key_dir, unsigned, anchor (or none), anchor_interval, source, \
            ring_full, max_age_ms, block_ms, store_size, segment_size (docs/CLI.md).

            Example: sensor-reader | edgelog run --config /etc/edgelog/edgelog.conf
            """
    )

    @Option(help: "Configuration file (default: /etc/edgelog/edgelog.conf if it exists, else the embedded default).")
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

    func run() throws {
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
            Exit.say("error: no key directory configured: set key_dir (make one with `edgelog keys generate --out DIR`) or unsigned = true")
            throw ExitCode(Exit.keyProblem)
        }
        // The embedded default is a file-backed partition: create and format it on first run.
        if !LocalFile.exists(settings.device) {
            do {
                try LocalFile.makeDirectory(LocalFile.parent(of: settings.device))
                try FileBlockDevice.createFile(path: settings.device, size: settings.storeSize)
                let target = try FileBlockDevice(path: settings.device)
                let meta = try EvidenceStore.format(device: target, segmentSize: Int(settings.segmentSize),
                                                    storeUUID: SystemClock.randomBytes(16), deviceID: DeviceIdentity.machineID(),
                                                    wallNs: SystemClock.now().wallNs, force: false)
                // stdout carries acknowledgements only: the news goes to stderr.
                Exit.say("created store \(settings.device): \(meta.geometry.ringSlots) segments of \(meta.geometry.segmentSize) bytes")
            } catch let error as FileError {
                Exit.say("error: \(error)")
                throw ExitCode(Exit.deviceError)
            } catch let error as DeviceError {
                throw Exit.fail(error)
            } catch let error as StoreError {
                throw Exit.fail(error)
            }
        }
        var writer = WriterSettings(device: settings.device)
        writer.ringFull = settings.ringFull
        writer.maxAgeMs = settings.maxAgeMs
        writer.blockMs = settings.blockMs
        writer.keyDir = settings.keyDir
        writer.anchor = settings.anchor
        writer.anchorInterval = settings.anchorInterval
        writer.time = WriterJob.timeConfig(stepThresholdMs: settings.stepThresholdMs, untrustedErrorMs: settings.untrustedErrorMs,
                                           stateIntervalS: settings.timeStateInterval)
        try IngestJob(settings: writer, source: settings.source).run()
    }
}
