// Section 6: the safe-commit window (docs/DESIGN.md section 12). A producer keeps both buffers
// full (a commit in flight and a full active buffer behind it: the worst case); the "edge" is a
// pipe written with its CLOCK_MONOTONIC time and read by a thread waiting in poll(2), as a GPIO or
// input event wakes the power thread; that thread runs the window. Each window is measured from
// the edge to the freeze and to the clean mark, then power "returns" (resume) for the next one.
// The window is compared with one fdatasync of the same device, measured in the same run.

import EdgelogCore
import EdgelogLinux
import EdgelogSeal
import EdgelogStore
import Glibc
import Synchronization

enum PowerBench {
    struct Result {
        var windowNs = Latencies(capacity: 64)
        var edgeToFreezeNs = Latencies(capacity: 64)
        var flushNs = Latencies(capacity: 64)
        /// Every commit of the run, windows included (the pipeline's own timing).
        var commitNs: [UInt64] = []
        var inFlight = 0
        var windows = 0
        var committedRecords = 0
    }

    static func run(path: String, windows: Int, identity: SealIdentity) -> Result {
        var result = Result()
        // A ring that fills and overwrites its oldest segment: the steady state of a logger that
        // has run for a while (each commit also reads the tail it reclaims, for the gap record).
        let (device, store) = freshStore(path: path, size: 64 << 20, segmentSize: Shape.segmentSize, identity: identity)
        store.policy = .overwriteOldest
        // One flush of this device: a 4 KiB write then fdatasync, the flush timed alone.
        let block = AlignedBuffer(count: 4096)
        for _ in 0..<40 {
            do {
                try device.write(at: device.byteCount - 4096, from: UnsafeRawBufferPointer(block.bytes))
                let t0 = monoNs()
                try device.flush()
                result.flushNs.add(monoNs() - t0)
            } catch {
                die("power: flush: \(error)")
            }
        }
        let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 60_000_000_000, blockNs: 60_000_000_000)) { _ in }
        let commits = Mutex<[UInt64]>([])
        pipeline.observeCommits { ns, _ in commits.withLock { $0.append(UInt64(max(ns, 0))) } }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { die("power: pipe: \(String(cString: strerror(errno)))") }
        let readEnd = fds[0], writeEnd = fds[1]
        let payload = Array(("{\"v\":\"" + String(repeating: "x", count: Shape.recordLength - 70) + "\"}").utf8)
        let source = "bench.power"
        for _ in 0..<windows {
            // Producer: appends until frozen (it blocks while both buffers are full).
            let producing = Atomic<Bool>(true)
            let producerDone = Atomic<Bool>(false)
            let producer = Thread {
                while producing.load(ordering: .relaxed) {
                    let r = payload.withUnsafeBytes { pipeline.append(source: source, payload: $0, time: SystemClock.now()) }
                    if case .frozen = r { break }
                    if case .refused(let e) = r { die("power: refused: \(e)") }
                }
                producerDone.store(true, ordering: .relaxed)
            }
            producer.start()
            usleep(20_000 + UInt32.random(in: 0...10_000))
            // The power thread waits in poll on the pipe, as on a gpiochip or event device.
            let report = Atomic<Int64>(0)
            let freeze = Atomic<Int64>(0)
            let inFlight = Atomic<Int>(0)
            let records = Atomic<Int>(0)
            let ready = Atomic<Bool>(false)
            let powerThread = Thread {
                var pfd = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
                ready.store(true, ordering: .relaxed)
                _ = poll(&pfd, 1, 10_000)
                var stamp: Int64 = 0
                _ = withUnsafeMutableBytes(of: &stamp) { read(readEnd, $0.baseAddress, 8) }
                do {
                    if let w = try pipeline.powerFail(record: { _ in
                        var j = EvidenceJSON()
                        j.add("trigger", .word("bench"))
                        return j
                    }) {
                        freeze.store(w.frozenNs - stamp, ordering: .relaxed)
                        report.store(w.cleanNs - stamp, ordering: .relaxed)
                        inFlight.store(w.inFlightDoneNs == nil ? 0 : 1, ordering: .relaxed)
                        records.store(w.committedRecords, ordering: .relaxed)
                    }
                } catch {
                    die("power: window: \(error)")
                }
            }
            powerThread.start()
            while !ready.load(ordering: .relaxed) { usleep(100) }
            usleep(2000)
            var edge = Int64(monoNs())
            _ = withUnsafeBytes(of: &edge) { write(writeEnd, $0.baseAddress, 8) }
            powerThread.join()
            producing.store(false, ordering: .relaxed)
            producer.join()
            guard report.load(ordering: .relaxed) > 0 else { die("power: no window") }
            result.windowNs.add(UInt64(report.load(ordering: .relaxed)))
            result.edgeToFreezeNs.add(UInt64(max(freeze.load(ordering: .relaxed), 0)))
            result.inFlight += inFlight.load(ordering: .relaxed)
            result.committedRecords += records.load(ordering: .relaxed)
            result.windows += 1
            var restored = EvidenceJSON()
            restored.add("held_ms", UInt64(0))
            do { _ = try pipeline.resume(record: restored) } catch { die("power: resume: \(error)") }
        }
        close(readEnd)
        close(writeEnd)
        do { try pipeline.close() } catch { die("power: close: \(error)") }
        result.commitNs = commits.withLock { $0 }
        return result
    }
}

/// A pthread with a closure, joinable (the bench has no Foundation).
final class Thread: @unchecked Sendable {
    private let body: @Sendable () -> Void
    private var handle: pthread_t = 0
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    func start() {
        let box = Unmanaged.passRetained(self)
        pthread_create(&handle, nil, { raw in
            guard let raw else { return nil }
            let me = Unmanaged<Thread>.fromOpaque(raw).takeRetainedValue()
            me.body()
            return nil
        }, box.toOpaque())
    }
    func join() { pthread_join(handle, nil) }
}
