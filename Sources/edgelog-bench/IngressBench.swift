// Section 5: the ingress path as the product runs it. The release `edgelog run --board` with 20
// simulated sources at 50 Hz (5 simulated I2C buses, each with two BME280s, an SHT3x and an
// ADS1115: the real drivers over register images), signed, for a fixed time; measured from outside
// with wait4's rusage (CPU time, peak RSS) and the run's own JSON summary (records, poll lateness
// p50/p99). The alternative in the same run: the same number of records given to `edgelog ingest`
// on stdin (no drivers, no scheduler), so cpu_vs_stdin says what the ingress engine costs.

import FoundationEssentials
import Glibc

enum IngressBench {
    struct Result {
        var records: Int
        var cpuNs: Int64
        /// CPU of the same command started and stopped at once (key load, firmware hash, recovery).
        var startupCpuNs: Int64 = 0
        var maxRSSKiB: Int
        var lateP50Us: Int
        var lateP99Us: Int
        var wallS: Double
    }

    static let sources = 20
    static let periodMs = 20

    static func board(imageDir: String) -> String {
        var text = "board: bench\nstore:\n  path: store.img\n  size: 64M\n  key_dir: keys\n  anchor: none\nbuses:\n"
        for b in 0..<5 { text += "  - name: i2c\(b)\n    kind: sim-i2c\n" }
        text += "sensors:\n"
        for b in 0..<5 {
            for (driver, address, image) in [("bme280", "0x76", "bme280"), ("bme280", "0x77", "bme280"), ("sht3x", "0x44", "sht3x"), ("ads1115", "0x48", "ads1115")] {
                text += "  - name: s\(b).\(driver).\(address)\n    driver: \(driver)\n    bus: i2c\(b)\n    address: \(address)\n"
                    + "    image: \(imageDir)/\(image).yaml\n    period_ms: \(periodMs)\n    queue: 256\n"
            }
        }
        return text
    }

    /// Runs `argv` with the file `input` (if any) on its stdin, returns its stdout, exit status and
    /// rusage. (A file, not a pipe: the child's acknowledgements on stdout are read only at the end.)
    static func spawn(_ argv: [String], input: String? = nil) -> (out: String, status: Int32, usage: rusage) {
        var fromChild: [Int32] = [-1, -1]
        guard pipe(&fromChild) == 0 else { die("pipe: \(errnoText())") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        if let input { posix_spawn_file_actions_addopen(&actions, 0, input, O_RDONLY, 0) }
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var pid: pid_t = 0
        let cargs = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        guard posix_spawn(&pid, argv[0], &actions, nil, cargs, environ) == 0 else { die("cannot start \(argv[0])") }
        close(fromChild[1])
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fromChild[0], &buffer, buffer.count)
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        close(fromChild[0])
        var status: Int32 = 0
        var usage = rusage()
        _ = wait4(pid, &status, 0, &usage)
        posix_spawn_file_actions_destroy(&actions)
        return (String(decoding: out, as: UTF8.self), status, usage)
    }

    static func cpuNs(_ u: rusage) -> Int64 {
        Int64(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1_000_000_000 + Int64(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1000
    }

    /// The part of `run --board --json`'s summary this bench reads.
    struct Summary: Decodable {
        var records: Int
        var poll_late_p50_us: Int
        var poll_late_p99_us: Int
    }

    static func run(binary: String, dir: String, imageDir: String, seconds: Int) -> (board: Result, stdin: Result) {
        let state = dir + "/ingress-state"
        _ = spawn(["/bin/rm", "-rf", state])
        _ = mkdir(state, 0o755)
        _ = spawn([binary, "keys", "generate", "--out", state + "/keys"])
        let boardPath = state + "/bench.yaml"
        let text = board(imageDir: imageDir)
        let f = fopen(boardPath, "w")
        fputs(text, f)
        fclose(f)
        let t0 = monoNs()
        let r = spawn([binary, "run", "--board", boardPath, "--state-dir", state, "--duration", String(seconds), "--json"])
        let wall = Double(monoNs() - t0) / 1e9
        guard r.status == 0, let summary = try? JSONDecoder().decode(Summary.self, from: Data(r.out.utf8)) else {
            die("edgelog run --board failed (status \(r.status)): \(r.out)")
        }
        let records = summary.records
        let idle = spawn([binary, "run", "--board", boardPath, "--state-dir", state, "--duration", "0", "--json"])
        var board = Result(records: records, cpuNs: cpuNs(r.usage), maxRSSKiB: Int(r.usage.ru_maxrss),
                           lateP50Us: summary.poll_late_p50_us, lateP99Us: summary.poll_late_p99_us, wallS: wall)
        board.startupCpuNs = cpuNs(idle.usage)

        // The same count of records through `ingest` from stdin, the same payload size.
        let inputPath = state + "/input.jsonl"
        let file = fopen(inputPath, "w")
        for _ in 0..<records { fputs("{\"temperature_c\":25.08,\"pressure_pa\":100653.25390625,\"humidity_pct\":49.576171875}\n", file) }
        fclose(file)
        let t1 = monoNs()
        let s = spawn([binary, "ingest", "--device", state + "/store.img", "--source", "bench.stdin", "--key-dir", state + "/keys"], input: inputPath)
        let stdin = Result(records: records, cpuNs: cpuNs(s.usage), maxRSSKiB: Int(s.usage.ru_maxrss), lateP50Us: 0, lateP99Us: 0,
                           wallS: Double(monoNs() - t1) / 1e9)
        _ = spawn(["/bin/rm", "-rf", state])
        return (board, stdin)
    }
}
