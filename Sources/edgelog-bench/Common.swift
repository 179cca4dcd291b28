// Shared pieces of the benchmark: options, the scratch directory, clocks, the record shape,
// latency statistics and number formatting. No Foundation anywhere in this target.

import EdgelogStore
import Glibc

// MARK: options

struct Options {
    /// A million records (~4000 commits, about half the 256 MiB store): with 200,000 the signed and
    /// timed ratios swung by ±4 points from run to run on this machine's disk; here by about ±2.
    var records = 1_000_000
    var quick = false
    /// Only section 5 (edgelog run --board against ingest), for looking at the ingress path alone.
    var ingressOnly = false
    /// Only section 6 (the safe-commit window).
    var powerOnly = false
    /// Only section 7 (format 6's record block and deflate, the codec alone).
    var packingOnly = false

    static func parse(_ args: [String]) -> Options {
        var o = Options()
        var explicitRecords = false
        var i = 1
        while i < args.count {
            switch args[i] {
            case "--records":
                guard i + 1 < args.count, let n = Int(args[i + 1]), n > 0 else { usage("--records needs a positive integer") }
                o.records = n
                explicitRecords = true
                i += 1
            case "--quick":
                o.quick = true
            case "--ingress-only":
                o.ingressOnly = true
            case "--power-only":
                o.powerOnly = true
            case "--packing-only":
                o.packingOnly = true
            case "-h", "--help":
                usage(nil)
            default:
                usage("unknown argument \(args[i])")
            }
            i += 1
        }
        if o.quick && !explicitRecords { o.records = 20_000 }
        return o
    }

    static func usage(_ problem: String?) -> Never {
        if let problem { eprint("edgelog-bench: \(problem)") }
        eprint("usage: edgelog-bench [--records N] [--quick] [--ingress-only] [--power-only] [--packing-only]")
        eprint("  --records N  records per throughput contender (default 1000000)")
        eprint("  --quick      20000 records, skip the 1 GiB recovery store")
        eprint("  --ingress-only  only the ingress section (run --board with 20 simulated sources vs ingest)")
        eprint("  --power-only    only the safe-commit window section (edge to freeze and to clean, vs fdatasync)")
        eprint("  --packing-only  only format 6's record codec (bytes per record against format 5, encode and decode cost)")
        exit(problem == nil ? 0 : 2)
    }
}

// MARK: the shape measured

enum Shape {
    static let segmentSize = 32768
    static let throughputStoreSize: UInt64 = 256 << 20
    static let recordLength = 128
    static let source = "bench"
    static let payloadLength = recordLength - Layout.recordFixedSize - 5 // 55
    /// 55 bytes of JSON-like text; the ten zeros after "seq": are replaced by the record number.
    static let payloadTemplate = #"{"seq":0000000000,"t_c":21.5,"rh":48.20,"p_hpa":1013.2}"#
    static let seqDigitsOffset = 7
}

/// The source name and the payload in stable memory, patched in place per record.
final class RecordBytes {
    let source: UnsafeMutableRawBufferPointer
    let payload: UnsafeMutableRawBufferPointer

    init() {
        let s = Array(Shape.source.utf8)
        let p = Array(Shape.payloadTemplate.utf8)
        precondition(p.count == Shape.payloadLength, "payload template is \(p.count) bytes, not \(Shape.payloadLength)")
        precondition(Layout.recordFixedSize + s.count + p.count == Shape.recordLength)
        source = .allocate(byteCount: s.count, alignment: 8)
        payload = .allocate(byteCount: p.count, alignment: 8)
        source.copyBytes(from: s)
        payload.copyBytes(from: p)
    }

    deinit {
        source.deallocate()
        payload.deallocate()
    }

    /// Writes `n` as ten decimal digits into the payload.
    @inline(__always)
    func setNumber(_ n: Int) {
        var v = n
        var i = Shape.seqDigitsOffset + 9
        while i >= Shape.seqDigitsOffset {
            payload[i] = UInt8(48 + v % 10)
            v /= 10
            i -= 1
        }
    }
}

// MARK: scratch directory

/// The data directory (under the package root, never /tmp) and every file the run created in it.
final class DataDir {
    let path: String
    let packageRoot: String
    private var files: [String] = []
    private var created = false

    init() {
        packageRoot = DataDir.findPackageRoot()
        path = packageRoot + "/.build-bench-data"
    }

    func create() {
        if mkdir(path, 0o755) == 0 {
            created = true
        } else if errno != EEXIST {
            die("cannot create \(path): \(errnoText())")
        }
    }

    func file(_ name: String) -> String {
        let p = path + "/" + name
        unlink(p) // a leftover from an interrupted run
        files.append(p)
        return p
    }

    func remove(_ p: String) {
        unlink(p)
        files.removeAll { $0 == p }
    }

    func cleanUp() {
        for p in files { unlink(p) }
        files.removeAll()
        if created { rmdir(path) } // only if we made it and it is empty
    }

    /// The directory holding `.build` above this executable (…/.build/<triple>/release/edgelog-bench),
    /// else the working directory.
    static func findPackageRoot() -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        if n > 0 {
            let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let parts = exe.split(separator: "/", omittingEmptySubsequences: false)
            if let i = parts.lastIndex(of: ".build"), i > 0 {
                return parts[0..<i].joined(separator: "/")
            }
        }
        var cwd = [CChar](repeating: 0, count: 4096)
        if getcwd(&cwd, cwd.count) != nil {
            return String(decoding: cwd.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return "."
    }
}

// MARK: errors and output

/// Set once by main so that a fatal error still removes the data files.
nonisolated(unsafe) var dataDirForCleanup: DataDir?

func die(_ message: String) -> Never {
    eprint("edgelog-bench: error: \(message)")
    dataDirForCleanup?.cleanUp()
    exit(1)
}

func eprint(_ s: String) {
    var line = s + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// Progress on stderr, so stdout holds only results. Stdout is flushed first: with both sent to
/// one file, a progress line otherwise lands in the middle of a buffered result line.
func progress(_ s: String) {
    fflush(nil)
    eprint("[bench] " + s)
}

func errnoText(_ code: Int32 = errno) -> String {
    if let s = strerror(code) { return String(cString: s) + " (errno \(code))" }
    return "errno \(code)"
}

// MARK: time

@inline(__always)
func monoNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

// MARK: statistics and formatting

struct Latencies {
    var samples: [UInt64] = []

    init(capacity: Int) { samples.reserveCapacity(capacity) }

    mutating func add(_ ns: UInt64) { samples.append(ns) }

    /// The mean, in microseconds (0 with no samples): what a rate is made of, where the percentiles
    /// hide the rare long ones.
    var meanUs: Double {
        guard !samples.isEmpty else { return 0 }
        return Double(samples.reduce(0, &+)) / Double(samples.count) / 1000
    }

    /// Nearest-rank percentile, in nanoseconds.
    func percentile(_ p: Double, sorted: [UInt64]) -> UInt64 {
        guard !sorted.isEmpty else { return 0 }
        var rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
        rank = min(max(rank, 1), sorted.count)
        return sorted[rank - 1]
    }

    /// "p50_us=… p99_us=… max_us=… (n=…)"
    /// The same in nanoseconds, for per-record costs far below a microsecond.
    func summaryNs() -> String {
        let s = samples.sorted()
        return "p50_ns=\(percentile(50, sorted: s)) p99_ns=\(percentile(99, sorted: s)) n=\(s.count)"
    }

    func summary() -> String {
        let s = samples.sorted()
        let p50 = percentile(50, sorted: s), p99 = percentile(99, sorted: s)
        return "p50_us=\(fixed(Double(p50) / 1000, 1)) p99_us=\(fixed(Double(p99) / 1000, 1)) "
            + "max_us=\(fixed(Double(s.last ?? 0) / 1000, 1)) n=\(s.count)"
    }
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    guard !s.isEmpty else { return .nan }
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// `x` with `digits` decimals, without Foundation.
func fixed(_ x: Double, _ digits: Int) -> String {
    guard x.isFinite else { return x.isNaN ? "nan" : (x > 0 ? "inf" : "-inf") }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = (abs(x) * scale).rounded()
    guard scaled < 9.0e18 else { return "\(x)" }
    let v = UInt64(scaled)
    let s = UInt64(scale)
    var out = (x < 0 && v != 0 ? "-" : "") + String(v / s)
    if digits > 0 {
        var frac = String(v % s)
        while frac.count < digits { frac = "0" + frac }
        out += "." + frac
    }
    return out
}

func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

// MARK: machine facts

enum Machine {
    static func uname() -> (release: String, machine: String) {
        var u = utsname()
        Glibc.uname(&u)
        func str<T>(_ field: T) -> String {
            withUnsafeBytes(of: field) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
        }
        return (str(u.release), str(u.machine))
    }

    static func cpus() -> Int { Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

    /// First field of /proc/loadavg (another engineer may be building on this machine).
    static func load1() -> String {
        let fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "?" }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 128)
        let n = read(fd, &buf, buf.count)
        guard n > 0 else { return "?" }
        return String(decoding: buf[0..<n].prefix { $0 != 32 }, as: UTF8.self)
    }

    /// statfs(2) f_type. Swift's Glibc module does not include <sys/vfs.h>, so the libc function
    /// is looked up by name; f_type (a long) is the first field of struct statfs on Linux.
    static func fsType(_ path: String) -> UInt64? {
        typealias StatFS = @convention(c) (UnsafePointer<CChar>, UnsafeMutableRawPointer) -> Int32
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "statfs") else { return nil }
        let statfsFn = unsafeBitCast(sym, to: StatFS.self)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 512, alignment: 16) // sizeof(struct statfs) is 120
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: 512)
        guard statfsFn(path, buffer) == 0 else { return nil }
        return UInt64(bitPattern: Int64(buffer.load(as: Int.self)))
    }

    static func fsName(_ type: UInt64) -> String {
        switch type {
        case 0xEF53: "ext2/3/4"
        case 0x58465342: "xfs"
        case 0x9123683E: "btrfs"
        case 0x01021994: "tmpfs"
        case 0x794C7630: "overlayfs"
        case 0x2FC12FC1: "zfs"
        case 0xF2F52010: "f2fs"
        case 0x6969: "nfs"
        default: "unknown"
        }
    }

    static func peakRSSKiB() -> Int {
        var ru = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &ru)
        return Int(ru.ru_maxrss)
    }

    static func fileSize(_ path: String) -> Int64? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Int64(st.st_size)
    }
}
