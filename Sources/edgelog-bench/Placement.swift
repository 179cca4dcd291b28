// Where section 8's speed comparison runs its threads. Left to the scheduler, the writer's thread
// ran on the CPU that takes the disk's interrupts in some runs and on the other in others: on this
// VM raw's write and flush took about 85 µs on the first and 116 µs on the second, and the staged
// engine against raw moved by a tenth from run to run with it. So the writer's thread (the thread
// raw, SQLite and the one-at-a-time engine run on too) is bound to the CPU where raw's write and
// flush are fastest, raw's best case, and the staging threads to another CPU.

import CLinuxShims
import EdgelogLinux
import EdgelogStore
import Glibc

struct Placement {
    /// The CPU the writer's thread runs on, and the one the other threads run on.
    let writer: Int32
    let helper: Int32
    /// The CPUs the process may use (restored by `release`).
    let allowed: [Int32]
    /// Raw's write and flush of 4 KiB, median per CPU tried (µs).
    let probes: [(cpu: Int32, us: Double)]

    /// Tries raw's write and flush on each CPU the process may use (at most eight) and picks the
    /// fastest for the writer. nil, the threads left to the scheduler: fewer than two CPUs, or
    /// binding refused (a container may forbid it).
    static func choose(probePath: String) -> Placement? {
        var cpus = [Int32](repeating: 0, count: 64)
        let count = Int(edgelog_allowed_cpus(&cpus, Int32(cpus.count)))
        guard count >= 2 else { return nil }
        let allowed = Array(cpus[0..<count])
        let device: FileBlockDevice
        do {
            try FileBlockDevice.createFile(path: probePath, size: 4 << 20)
            device = try FileBlockDevice(path: probePath)
        } catch {
            return nil
        }
        let buffer = AlignedBuffer(count: 4096)
        var probes: [(cpu: Int32, us: Double)] = []
        for cpu in allowed.prefix(8) {
            guard bind(0, to: [cpu]) else {
                _ = bind(0, to: allowed)
                return nil
            }
            var samples: [Double] = []
            for i in 0..<200 {
                let t0 = monoNs()
                do {
                    try device.write(at: UInt64(i % 1024) * 4096, from: UnsafeRawBufferPointer(buffer.bytes))
                    try device.flush()
                } catch {
                    _ = bind(0, to: allowed)
                    return nil
                }
                samples.append(Double(monoNs() &- t0) / 1e3)
            }
            probes.append((cpu, median(samples)))
        }
        _ = bind(0, to: allowed)
        guard let best = probes.min(by: { $0.us < $1.us }), let other = allowed.first(where: { $0 != best.cpu }) else { return nil }
        return Placement(writer: best.cpu, helper: other, allowed: allowed, probes: probes)
    }

    private static func bind(_ tid: Int32, to cpus: [Int32]) -> Bool {
        cpus.withUnsafeBufferPointer { edgelog_bind_thread(tid, $0.baseAddress, Int32($0.count)) } == 0
    }

    /// The ids of the process's threads (the main thread's is the process id).
    private static func threads() -> [Int32] {
        guard let dir = opendir("/proc/self/task") else { return [] }
        defer { closedir(dir) }
        var ids: [Int32] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if let id = Int32(name) { ids.append(id) }
        }
        return ids
    }

    /// Binds the calling thread (the writer's) to `writer`.
    func bindWriter() -> Bool { Self.bind(0, to: [writer]) }

    /// Binds every other thread of the process to `helper`: the staging threads, once started.
    func bindOthers(than caller: Int32) {
        for id in Self.threads() where id != caller { _ = Self.bind(id, to: [helper]) }
    }

    /// Every thread back on every CPU the process may use.
    func release() {
        for id in Self.threads() { _ = Self.bind(id, to: allowed) }
    }

    var line: String {
        "packed_placement: writer_cpu=\(writer) helper_cpu=\(helper) raw_flush_p50_us="
            + probes.map { "\($0.cpu):\(fixed($0.us, 0))" }.joined(separator: ",")
            + "  # the writer's thread (raw's, SQLite's and the one-at-a-time engine's too) on the CPU where raw's 4 KiB write and flush "
            + "was fastest, the staging threads on another: left to the scheduler, store_vs_raw moved by a tenth from run to run with the placement"
    }
}
