// Section 8: the issue 12 figures measured on format 6's ring engine (PackedLog, FORMAT.md A.5 to
// A.9): partition bytes per retained record, write amplification counted at the block device, and
// records/s against SQLite (WAL, synchronous=FULL, a table with every field, one transaction per
// commit) and raw pwrite+fdatasync of the bytes the engine occupies, under (a) 20 readings a commit
// and (b) commits of about 32 KiB of records; then open (recovery) time on a 64 MiB and a 1 GiB
// store with the most commits the metadata interval allows since the last metadata write. The
// speed figures are the engine's, staged (frames built on a second thread while the writer writes
// the ones before), the same with writes in the background, and one commit at a time, after a
// warm-up batch and with the threads bound to CPUs (Placement.swift); two lines give the product's
// path (the commit pipeline over the evidence store): each commit waited for under (a), and a
// burst with no wait per commit under (b).

import CSQLite
import EdgelogLinux
import EdgelogSeal
import EdgelogStore
import EdgelogTestKit
import Glibc

enum PackedStoreBench {
    /// The block device with a count of what is written to it.
    final class CountingDevice: OverlappingDevice {
        let inner: FileBlockDevice
        var bytesWritten: UInt64 = 0
        var name: String { inner.name }
        var sectorSize: Int { inner.sectorSize }
        var byteCount: UInt64 { inner.byteCount }
        init(_ inner: FileBlockDevice) { self.inner = inner }
        func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(DeviceError) { try inner.read(at: offset, into: buffer) }
        func write(at offset: UInt64, from buffer: UnsafeRawBufferPointer) throws(DeviceError) {
            bytesWritten += UInt64(buffer.count)
            try inner.write(at: offset, from: buffer)
        }
        func flush() throws(DeviceError) { try inner.flush() }
        func submitDurable(at offset: UInt64, from buffer: UnsafeRawBufferPointer) throws(DeviceError) -> Bool {
            guard try inner.submitDurable(at: offset, from: buffer) else { return false }
            bytesWritten += UInt64(buffer.count)
            return true
        }
        func awaitDurable() throws(DeviceError) { try inner.awaitDurable() }
    }

    static let segmentSize = 1 << 20

    /// The commits of a workload: (a) one second of 20 sources each, (b) about 32 KiB of format 5 records each.
    static func commits(_ workload: Character, count: Int) -> [[PackedRecord]] {
        var g = Commits(workload)
        return g.next(count)
    }

    /// The commits of a workload made as they are needed: a writer commits records it has just
    /// gathered, so each batch is made right before the contenders commit it (records made long
    /// before would be measured coming out of memory instead of the cache).
    struct Commits {
        let workload: Character
        private var w = SensorWorkload(sources: 20, seed: 7)
        private var pending: [PackedRecord] = []
        private var bytes = 0
        init(_ workload: Character) { self.workload = workload }

        mutating func next(_ count: Int) -> [[PackedRecord]] {
            if workload == "a" { return (0..<count).map { _ in w.nextSecond() } }
            var out: [[PackedRecord]] = []
            while out.count < count {
                for r in w.nextSecond() {
                    let n = PackingBench.format5Length(r)
                    if bytes + n > 32 * 1024 - 128 - 432 {
                        out.append(pending)
                        pending = []
                        bytes = 0
                    }
                    pending.append(r)
                    bytes += n
                }
            }
            // A second's records never fill a commit, so the loop ends at `count` commits exactly;
            // the records after the last one start the next batch.
            return out
        }
    }

    struct StoreRun {
        var records = 0
        var commits = 0
        var elapsedNs: UInt64 = 0
        var latency = Latencies(capacity: 4096)
        var consumed: UInt64 = 0
        var committed: UInt64 = 0
        var deviceBytes: UInt64 = 0
        /// Time spent appending (the producer's side), with no flush per commit.
        var appendsNs: UInt64 = 0
    }

    static func identity(_ signer: FileSigner) -> PackedLog.PackedIdentity {
        PackedLog.PackedIdentity(deviceID: Array(repeating: 1, count: 16), fwVerHash: Array(repeating: 2, count: 32), signer: signer)
    }

    static func openStore(path: String, size: UInt64) -> CountingDevice {
        do {
            try FileBlockDevice.createFile(path: path, size: size)
            let device = CountingDevice(try FileBlockDevice(path: path))
            try PackedLog.format(device: device, segmentSize: segmentSize, storeUUID: Array(repeating: 3, count: 16),
                                 deviceID: Array(repeating: 1, count: 16), wallNs: 0)
            return device
        } catch { die("packed store \(path): \(error)") }
    }

    /// The engine committing one frame at a time: prepare (encode, deflate, hash, sign), then write
    /// and flush, then the next.
    final class SequentialEngine {
        let device: CountingDevice
        let log: PackedLog
        var run = StoreRun()
        private var last: UInt64
        private let startBytes: UInt64

        init(path: String, signer: FileSigner) {
            device = openStore(path: path, size: 256 << 20)
            do { log = try PackedLog(device: device, identity: identity(signer), clock: monoNs) } catch { die("packed store: \(error)") }
            last = log.committedBytes
            startBytes = device.bytesWritten
        }

        /// Commits `commits`; returns the bytes each took on the partition (what raw writes).
        func batch(_ commits: ArraySlice<[PackedRecord]>) -> [Int] {
            var sizes: [Int] = []
            for c in commits {
                let t0 = monoNs()
                do { try log.append(c) } catch { die("packed store: \(error)") }
                let dt = monoNs() &- t0
                run.elapsedNs += dt
                run.latency.add(dt)
                sizes.append(Int(log.committedBytes - last))
                last = log.committedBytes
                run.records += c.count
                run.commits += 1
            }
            return sizes
        }

        /// Forgets the times so far (the warm-up batch); what the partition holds still counts.
        func resetTiming() {
            run.elapsedNs = 0
            run.latency = Latencies(capacity: 4096)
            timedFrom = run.records
        }
        /// Records committed before the timing began (the warm-up batch).
        private(set) var timedFrom = 0

        func finish() {
            run.consumed = UInt64(max(0, log.segmentsOpened - 1)) * UInt64(segmentSize) + UInt64(log.openSegmentBytes)
            run.committed = log.committedBytes
            run.deviceBytes = device.bytesWritten - startBytes
        }
    }

    /// The engine with frames staged ahead (`PackedLog.stage`): a second thread encodes, deflates,
    /// hashes and signs each frame while the writer writes the frames before it, up to
    /// `PackedLog.stageDepth` frames ahead. Each frame is written and flushed (`write`), as raw
    /// writes, or, `overlappedWrites`, started in the background and awaited once the next frame
    /// is placed (`begin`, `finish`: kernel AIO with RWF_DSYNC). A commit's latency runs from its
    /// staging to its durable end.
    final class StagedEngine {
        let device: CountingDevice
        let log: PackedLog
        let overlappedWrites: Bool
        var latency = Latencies(capacity: 4096)
        var records = 0
        var elapsedNs: UInt64 = 0
        var inBackground = 0, builtAhead = 0, commits = 0
        /// The log's counts when timing started: the staged frames it built itself since, taken
        /// back from the staging thread or given up on when the thread was overdue.
        private var counted = (takenBack: 0, overdue: 0)
        var takenBack: Int { log.framesTakenBack - counted.takenBack }
        var overdue: Int { log.framesOverdue - counted.overdue }
        /// Time in prepare of a staged frame (waiting for the staging thread, then placing the frame),
        /// and in starting a background write (the system call).
        var waitNs = Latencies(capacity: 4096), submitNs = Latencies(capacity: 4096)
        /// Time in `write` of a prepared frame: its write and flush (and the metadata's when due);
        /// in `stage` (handing the records to the staging thread).
        var writeNs = Latencies(capacity: 4096), stageNs = Latencies(capacity: 4096)
        /// The time in prepare by what the frame was (nanoseconds, summed): the first of a batch
        /// (its build overlaps no write), one that opened a segment (built on the writer's thread),
        /// one the writer took back or built because the thread was overdue, and the rest (built
        /// ahead, placed).
        var waitBy = (batchStart: UInt64(0), opensSegment: UInt64(0), takenBack: UInt64(0), overdue: UInt64(0), placed: UInt64(0))

        init(path: String, signer: FileSigner, overlappedWrites: Bool) {
            device = openStore(path: path, size: 256 << 20)
            self.overlappedWrites = overlappedWrites
            do { log = try PackedLog(device: device, identity: identity(signer), clock: monoNs) } catch { die("staged: \(error)") }
        }

        /// Forgets what the warm-up batch counted.
        func resetTiming() {
            latency = Latencies(capacity: 4096)
            waitNs = Latencies(capacity: 4096)
            submitNs = Latencies(capacity: 4096)
            writeNs = Latencies(capacity: 4096)
            stageNs = Latencies(capacity: 4096)
            records = 0
            elapsedNs = 0
            inBackground = 0
            builtAhead = 0
            counted = (log.framesTakenBack, log.framesOverdue)
            commits = 0
            waitBy = (0, 0, 0, 0, 0)
        }

        /// Commits `commits`, returning when the last is durable.
        func batch(_ commits: ArraySlice<[PackedRecord]>) {
            let t0 = monoNs()
            var queue: [(frame: PackedLog.StagedFrame, start: UInt64)] = []
            var pending: (write: PackedLog.WriteInFlight, start: UInt64)?
            do {
                var first = true
                func commit(_ s: (frame: PackedLog.StagedFrame, start: UInt64)) throws {
                    let counts = (log.framesTakenBack, log.framesOverdue, log.segmentsOpened)
                    let prepareStart = monoNs()
                    let frame = try log.prepare(s.frame)
                    let waited = monoNs() &- prepareStart
                    waitNs.add(waited)
                    if first {
                        waitBy.batchStart &+= waited
                    } else if log.segmentsOpened != counts.2 {
                        waitBy.opensSegment &+= waited
                    } else if log.framesTakenBack != counts.0 {
                        waitBy.takenBack &+= waited
                    } else if log.framesOverdue != counts.1 {
                        waitBy.overdue &+= waited
                    } else {
                        waitBy.placed &+= waited
                    }
                    first = false
                    if s.frame.builtAhead { builtAhead += 1 }
                    records += s.frame.records.count
                    self.commits += 1
                    guard overlappedWrites else {
                        let writeStart = monoNs()
                        try log.write(frame)
                        let end = monoNs()
                        writeNs.add(end &- writeStart)
                        latency.add(end &- s.start)
                        return
                    }
                    if let p = pending {
                        try log.finish(p.write)
                        latency.add(monoNs() &- p.start)
                    }
                    let submitted = monoNs()
                    let write = try log.begin(frame)
                    submitNs.add(monoNs() &- submitted)
                    if write.overlapped { inBackground += 1 }
                    pending = (write, s.start)
                }
                for c in commits {
                    let start = monoNs()
                    let frame = log.stage(c)
                    stageNs.add(monoNs() &- start)
                    queue.append((frame, start))
                    if queue.count >= PackedLog.stageDepth { try commit(queue.removeFirst()) }
                }
                while !queue.isEmpty { try commit(queue.removeFirst()) }
                if let p = pending {
                    try log.finish(p.write)
                    latency.add(monoNs() &- p.start)
                }
            } catch { die("staged: \(error)") }
            elapsedNs += monoNs() &- t0
        }
    }

    /// The same records through the product's path: the commit pipeline (double buffering, a flush
    /// per commit) over the format 6 evidence store (evidence records, policy, time fields), signing.
    /// `burst`: no flush per commit, only at the end: the pipeline commits what its buffers gather
    /// while one producer thread appends as fast as it can.
    static func runEvidenceStore(path: String, commits: [[PackedRecord]], signer: FileSigner, burst: Bool = false) -> StoreRun {
        let device = openStore(path: path, size: 256 << 20)
        var run = StoreRun()
        let box = LatencyBox(count: 0)
        do {
            let identity = SealIdentity(deviceID: Array(repeating: 1, count: 16), fwVerHash: Array(repeating: 2, count: 32), signer: signer)
            let store = try PackedEvidenceStore.open(device: device, policy: .overwriteOldest, identity: identity,
                                                     clock: { CaptureTime(wallNs: 1_700_000_000_000_000_000, bootNs: Int64(monoNs())) })
            let pipeline = CommitPipeline(store: store, options: .init(maxAgeNs: 60_000_000_000, blockNs: 60_000_000_000)) { _ in }
            pipeline.observeCommits { ns, _ in box.append(UInt64(ns)) }
            let startBytes = device.bytesWritten, startCommitted = store.log.committedBytes
            let t0 = monoNs()
            for c in commits {
                for r in c {
                    _ = r.payload.withUnsafeBytes { pipeline.append(source: r.source, payload: $0, time: r.time) }
                }
                if !burst { try pipeline.flush() }
                run.records += c.count
            }
            run.appendsNs = monoNs() &- t0
            try pipeline.flush()
            run.elapsedNs = monoNs() &- t0
            run.commits = Int(pipeline.counters.commits)
            try pipeline.close()
            run.consumed = UInt64(max(0, store.log.segmentsOpened - 1)) * UInt64(segmentSize) + UInt64(store.log.openSegmentBytes)
            run.committed = store.log.committedBytes - startCommitted
            run.deviceBytes = device.bytesWritten - startBytes
        } catch { die("evidence store: \(error)") }
        for ns in box.values { run.latency.add(ns) }
        return run
    }

    final class LatencyBox: @unchecked Sendable {
        var values: [UInt64]
        private let lock = Monitor()
        init(count: Int) { values = Array(repeating: 0, count: count) }
        func append(_ v: UInt64) {
            lock.lock()
            values.append(v)
            lock.unlock()
        }
    }

    /// pwrite + fdatasync of given sizes at consecutive offsets (O_DIRECT when the file takes it).
    final class RawWriter {
        let device: FileBlockDevice
        let buffer = AlignedBuffer(count: 64 * 1024)
        var offset: UInt64 = 32768
        var latency = Latencies(capacity: 4096)
        var elapsedNs: UInt64 = 0

        init(path: String) {
            do {
                try FileBlockDevice.createFile(path: path, size: 256 << 20)
                device = try FileBlockDevice(path: path)
            } catch { die("raw: \(error)") }
            for i in 0..<buffer.bytes.count { buffer.bytes[i] = UInt8(truncatingIfNeeded: i &* 31) }
        }

        func resetTiming() {
            elapsedNs = 0
            latency = Latencies(capacity: 4096)
        }

        func batch(_ sizes: [Int]) {
            for n in sizes {
                guard n <= buffer.bytes.count else { die("raw: a commit of \(n) bytes") }
                let t0 = monoNs()
                do {
                    try device.write(at: offset, from: UnsafeRawBufferPointer(rebasing: buffer.bytes[0..<n]))
                    try device.flush()
                } catch { die("raw: \(error)") }
                let dt = monoNs() &- t0
                elapsedNs += dt
                latency.add(dt)
                offset += UInt64(n)
                if offset + UInt64(buffer.bytes.count) > 256 << 20 { offset = 32768 }
            }
        }
    }

    /// The same records in SQLite, one transaction per commit; database bytes per row after a checkpoint.
    final class SQLiteWriter {
        let path: String
        let db: SQLiteBench.DB
        let insert: OpaquePointer, begin: OpaquePointer, commit: OpaquePointer
        var latency = Latencies(capacity: 4096)
        var elapsedNs: UInt64 = 0
        var rows = 0

        init(path: String) {
            self.path = path
            for suffix in ["", "-wal", "-shm", "-journal"] { unlink(path + suffix) }
            db = SQLiteBench.DB(path: path)
            guard db.queryText("PRAGMA journal_mode=WAL") == "wal" else { die("sqlite refused WAL") }
            db.exec("PRAGMA synchronous=FULL")
            db.exec("CREATE TABLE records (type INTEGER, source TEXT, seq INTEGER, mono INTEGER, wall INTEGER, boot INTEGER, boot_seq INTEGER, "
                + "time_flags INTEGER, maxerror INTEGER, esterror INTEGER, last_sync INTEGER, payload BLOB)")
            insert = db.prepare("INSERT INTO records VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)")
            begin = db.prepare("BEGIN")
            commit = db.prepare("COMMIT")
        }

        func resetTiming() {
            elapsedNs = 0
            latency = Latencies(capacity: 4096)
        }

        func batch(_ commits: ArraySlice<[PackedRecord]>) {
            for c in commits {
                let t0 = monoNs()
                db.run(begin, "BEGIN")
                for r in c {
                    sqlite3_bind_int64(insert, 1, Int64(r.rawType))
                    _ = r.source.withCString { sqlite3_bind_text(insert, 2, $0, -1, unsafeBitCast(-1, to: sqlite3_destructor_type.self)) }
                    sqlite3_bind_int64(insert, 3, Int64(bitPattern: r.seq))
                    sqlite3_bind_int64(insert, 4, Int64(bitPattern: r.mono))
                    sqlite3_bind_int64(insert, 5, r.time.wallNs)
                    sqlite3_bind_int64(insert, 6, r.time.bootNs)
                    sqlite3_bind_int64(insert, 7, Int64(r.bootSeq))
                    sqlite3_bind_int64(insert, 8, Int64(r.time.flags.rawValue))
                    sqlite3_bind_int64(insert, 9, Int64(r.time.maxErrorUs))
                    sqlite3_bind_int64(insert, 10, Int64(r.time.estErrorUs))
                    sqlite3_bind_int64(insert, 11, r.time.lastSyncNs)
                    _ = r.payload.withUnsafeBytes { sqlite3_bind_blob(insert, 12, $0.baseAddress, Int32($0.count), unsafeBitCast(-1, to: sqlite3_destructor_type.self)) }
                    db.run(insert, "INSERT")
                    rows += 1
                }
                db.run(commit, "COMMIT")
                let dt = monoNs() &- t0
                elapsedNs += dt
                latency.add(dt)
            }
        }

        /// Database bytes per row after a checkpoint.
        func finish() -> Double {
            sqlite3_finalize(insert)
            sqlite3_finalize(begin)
            sqlite3_finalize(commit)
            db.exec("PRAGMA wal_checkpoint(TRUNCATE)")
            return Double(Machine.fileSize(path) ?? 0) / Double(max(rows, 1))
        }
    }

    /// Open time: analyze (both slots, the head segment's walk, the forward scan) of a store whose last
    /// metadata write is `behind` commits old; median of `runs`, O_DIRECT reads (no page cache).
    static func openMs(path: String, size: UInt64, commits: [[PackedRecord]], behind: Int, signer: FileSigner, runs: Int = 5) -> (ms: Double, adopted: Int) {
        let device = openStore(path: path, size: size)
        do {
            let log = try PackedLog(device: device, identity: identity(signer), clock: monoNs)
            log.metadataSeconds = .infinity
            log.metadataEvery = behind + 1
            for c in commits { try log.append(c) }
        } catch { die("open bench: \(error)") }
        var times: [Double] = []
        var adopted = 0
        for _ in 0..<runs {
            do {
                let d = try FileBlockDevice(path: path, readOnly: true)
                let t0 = monoNs()
                let h = try PackedHistory.analyze(device: d)
                times.append(Double(monoNs() &- t0) / 1e6)
                adopted = h.recovery.framesAdopted
            } catch { die("open bench: \(error)") }
        }
        return (median(times), adopted)
    }

    static func section(dir: DataDir, quick: Bool) {
        let signer = FileSigner(key: .ed25519(.init()), epoch: 1)
        let placement = Placement.choose(probePath: dir.file("packed-placement.img"))
        if let placement, placement.bindWriter() {
            print(placement.line)
        } else {
            print("packed_placement: none  # fewer than two CPUs, or binding refused: the threads where the scheduler puts them")
        }
        defer { placement?.release() }
        var bpr: [Character: Double] = [:]
        for workload: Character in ["a", "b"] {
            // As many commits under (b) as under (a): a contender's share of (b) at 400 commits was
            // about 40 ms, and the ratios moved by a tenth from run to run. At 3000 commits (about
            // 0.3 s a contender) one stall of the VM's disk (17 ms seen in one write) still moved a
            // run's store_vs_raw by 0.05. At 6000 (0.65 s) one write that stalled 98 ms cost a
            // run 0.1 (0.86 with a median batch of 0.97): 18000 commits, about 2 s a contender.
            let n = quick ? (workload == "a" ? 500 : 60) : 18000
            var generator = Commits(workload)
            var cs: [[PackedRecord]] = []
            // Batches interleaved contender by contender, so that the disk's slow spells fall on all
            // of them (Throughput.swift): the one-at-a-time engine first (raw writes the sizes its
            // frames took), the other four in an order that turns every batch; a batch is long
            // enough that filling and draining the stages costs little (the staged engine waits for
            // the first frame of each batch to be built: about 250 µs, 2 to 3 % of a batch of 100
            // large commits, and 12 % of the batch of 20 used before).
            let batch = quick && workload == "b" ? 20 : 100
            progress("packed store: workload \(workload), \(n) commits in batches of \(batch) after one to warm up: engine, staged, staged with overlapped writes, raw, SQLite, interleaved")
            let engine = SequentialEngine(path: dir.file("packed-\(workload).img"), signer: signer)
            let staged = StagedEngine(path: dir.file("packed-staged-\(workload).img"), signer: signer, overlappedWrites: false)
            let overlapped = StagedEngine(path: dir.file("packed-overlapped-\(workload).img"), signer: signer, overlappedWrites: true)
            let raw = RawWriter(path: dir.file("packed-raw-\(workload).img"))
            let sqlite = SQLiteWriter(path: dir.file("packed-\(workload).db"))
            _ = dir.file("packed-\(workload).db-wal")
            _ = dir.file("packed-\(workload).db-shm")
            // A first batch, not timed, warms every contender up: the staged engine's first batch
            // under (b) took about twice raw's time (its staging thread starting, the compressor's
            // state and buffers touched for the first time), in every run.
            var ratios: [Double] = []
            for (index, start) in stride(from: -batch, to: n, by: batch).enumerated() {
                let made = generator.next(min(batch, n - start))
                if start >= 0 { cs += made }
                let slice = made[...]
                let stagedBefore = staged.elapsedNs, rawBefore = raw.elapsedNs
                // The engine goes first: raw writes the sizes its frames took.
                let sizes = engine.batch(slice)
                let others: [() -> Void] = [{ staged.batch(slice) }, { overlapped.batch(slice) }, { raw.batch(sizes) }, { sqlite.batch(slice) }]
                for k in 0..<others.count { others[(index + k) % others.count]() }
                if start < 0 {
                    // The staging threads have started: onto the other CPU.
                    placement?.bindOthers(than: getpid())
                    engine.resetTiming()
                    staged.resetTiming()
                    overlapped.resetTiming()
                    raw.resetTiming()
                    sqlite.resetTiming()
                } else {
                    ratios.append(Double(raw.elapsedNs - rawBefore) / Double(max(staged.elapsedNs - stagedBefore, 1)))
                }
            }
            engine.finish()
            let store = engine.run
            let sqliteBytesPerRow = sqlite.finish()
            let records = Double(store.records)
            let bytesPerRecord = Double(store.consumed) / records
            bpr[workload] = bytesPerRecord
            // The rates count the timed batches only.
            let timed = Double(store.records - engine.timedFrom)
            let storeRate = timed / (Double(store.elapsedNs) / 1e9)
            let rawRate = timed / (Double(raw.elapsedNs) / 1e9)
            let sqliteRate = timed / (Double(sqlite.elapsedNs) / 1e9)
            let stagedRate = Double(staged.records) / (Double(staged.elapsedNs) / 1e9)
            let overlappedRate = Double(overlapped.records) / (Double(overlapped.elapsedNs) / 1e9)
            print("packed_\(workload): records=\(store.records) commits=\(store.commits) records_per_commit=\(fixed(records / Double(store.commits), 1)) "
                + "bytes_per_record=\(fixed(bytesPerRecord, 1)) sqlite_bytes_per_row=\(fixed(sqliteBytesPerRow, 1)) "
                + "bytes_per_record_vs_sqlite=\(fixed(bytesPerRecord / sqliteBytesPerRow, 3))  # goals: <= 53 under (a); vs_sqlite <= 0.5")
            print("packed_\(workload)_writes: device_bytes=\(store.deviceBytes) committed_bytes=\(store.committed) "
                + "write_amplification=\(fixed(Double(store.deviceBytes) / Double(max(store.committed, 1)), 3))  # goals: <= 1.3 (a), <= 1.05 (b); metadata writes counted at the device")
            print("packed_\(workload)_speed: store_records_per_s=\(fixed(stagedRate, 0)) raw_records_per_s=\(fixed(rawRate, 0)) sqlite_records_per_s=\(fixed(sqliteRate, 0)) "
                + "store_vs_raw=\(fixed(stagedRate / rawRate, 2)) store_vs_sqlite=\(fixed(stagedRate / sqliteRate, 2))  "
                + "# goal: store_vs_raw >= 0.9; frames built on a second thread while the writer writes and flushes the ones before "
                + "(\(staged.builtAhead) of \(staged.commits) built ahead; built by the writer: \(staged.takenBack) the thread had not started, "
                + "\(staged.overdue) it was overdue with), raw writes the bytes the store occupies")
            let sorted = ratios.sorted()
            let at = { (p: Double) in fixed(sorted[min(sorted.count - 1, Int(p * Double(sorted.count)))], 2) }
            print("packed_\(workload)_speed_batches: store_vs_raw_p10=\(at(0.1)) p50=\(at(0.5)) p90=\(at(0.9)) batches=\(sorted.count)  "
                + "# the staged engine against raw batch by batch: how far the machine's slow spells move one batch")
            print("packed_\(workload)_wait: \(staged.waitNs.summary())  # prepare of a staged frame: waiting for the staging thread and placing the frame; near zero when building keeps ahead of the device")
            print("packed_\(workload)_commit: \(staged.latency.summary())  # staged: from staging to durable")
            print("packed_\(workload)_write: \(staged.writeNs.summary())  # staged: the writer's write and flush of a built frame (the metadata's too when due), against packed_\(workload)_raw_commit")
            let frames = Double(max(staged.commits, 1))
            let totalUs = Double(staged.elapsedNs) / 1000 / frames
            let parts = staged.stageNs.meanUs + staged.waitNs.meanUs + staged.writeNs.meanUs
            print("packed_\(workload)_frame_us: total=\(fixed(totalUs, 1)) stage=\(fixed(staged.stageNs.meanUs, 1)) wait=\(fixed(staged.waitNs.meanUs, 1)) "
                + "write=\(fixed(staged.writeNs.meanUs, 1)) rest=\(fixed(totalUs - parts, 1)) raw=\(fixed(raw.latency.meanUs, 1))  "
                + "# the staged engine's time per frame, mean: staging, waiting and placing, writing and flushing, the rest; raw's write and flush")
            let perFrame = { (ns: UInt64) in fixed(Double(ns) / 1000 / frames, 2) }
            print("packed_\(workload)_wait_us_per_frame: batch_start=\(perFrame(staged.waitBy.batchStart)) opens_segment=\(perFrame(staged.waitBy.opensSegment)) "
                + "taken_back=\(perFrame(staged.waitBy.takenBack)) overdue=\(perFrame(staged.waitBy.overdue)) placed=\(perFrame(staged.waitBy.placed))  "
                + "# packed_\(workload)_frame_us's wait split by what the frame was: the first of a batch, one that opened a segment, built by the writer "
                + "because the thread had not started it or was overdue with it, the rest (waited for and placed)")
            print("packed_\(workload)_staged_overlapped: store_records_per_s=\(fixed(overlappedRate, 0)) store_vs_raw=\(fixed(overlappedRate / rawRate, 2))  "
                + "# the same, each write started in the background (\(overlapped.inBackground) of \(overlapped.commits): AIO, RWF_DSYNC) and awaited after the next frame is placed")
            print("packed_\(workload)_submit: \(overlapped.submitNs.summary())  # starting a background write (io_submit)")
            print("packed_\(workload)_one_at_a_time: store_records_per_s=\(fixed(storeRate, 0)) store_vs_raw=\(fixed(storeRate / rawRate, 2)) "
                + "store_vs_sqlite=\(fixed(storeRate / sqliteRate, 2))  # each commit built (encode, deflate, hash, sign) on the writer's thread only after the one before is durable")
            print("packed_\(workload)_commit_one_at_a_time: \(store.latency.summary())")
            if workload == "a" {
                // The product's path: pipeline and evidence store (a flush per commit of 20 readings).
                let evidence = runEvidenceStore(path: dir.file("packed-evidence-\(workload).img"), commits: cs, signer: signer)
                let rate = Double(evidence.records) / (Double(evidence.elapsedNs) / 1e9)
                print("packed_\(workload)_evidence_store: bytes_per_record=\(fixed(Double(evidence.consumed) / Double(max(evidence.records, 1)), 1)) "
                    + "write_amplification=\(fixed(Double(evidence.deviceBytes) / Double(max(evidence.committed, 1)), 3)) "
                    + "store_records_per_s=\(fixed(rate, 0)) store_vs_raw=\(fixed(rate / rawRate, 2)) commit_\(evidence.latency.summary())  "
                    + "# CommitPipeline over PackedEvidenceStore, signed, each commit waited for (flush): what edgelog run writes; run after the others")
            } else {
                // The product's path under a burst: does the store keep up with the producer?
                let burst = runEvidenceStore(path: dir.file("packed-evidence-\(workload).img"), commits: cs, signer: signer, burst: true)
                let elapsed = Double(burst.elapsedNs)
                let busy = Double(burst.latency.samples.reduce(0, &+)) / elapsed
                print("packed_\(workload)_evidence_store_burst: store_records_per_s=\(fixed(Double(burst.records) / (elapsed / 1e9), 0)) "
                    + "commits=\(burst.commits) committer_busy=\(fixed(busy, 2)) after_last_append_us=\(fixed(Double(burst.elapsedNs &- burst.appendsNs) / 1e3, 0)) "
                    + "commit_\(burst.latency.summary())  # CommitPipeline over PackedEvidenceStore, one producer thread appending the same records "
                    + "with no wait per commit: the committer (build, write, flush one commit at a time) is busy this share of the time and waits "
                    + "for the producer the rest, so the producer's appends, not the store, set the rate")
            }
            print("packed_\(workload)_raw_commit: \(raw.latency.summary())")
            print("packed_\(workload)_sqlite_commit: \(sqlite.latency.summary())")
        }
        if let a = bpr["a"], let b = bpr["b"] {
            print("packed_retention_ratio=\(fixed(b / a, 3))  # records a full store keeps under (a) / under (b); goal >= 0.75")
            let days = Double(16_000_000_000 - 32768) / a / (20 * 86400)
            print("packed_days_on_16GB_at_20_per_s=\(fixed(days, 0))  # goal >= 180")
        }
        let history = commits("a", count: quick ? 600 : 2000)
        for (label, size) in [("64MiB", UInt64(64) << 20), ("1GiB", UInt64(1) << 30)] where !(quick && label == "1GiB") {
            progress("packed store: open time, \(label)")
            let r = openMs(path: dir.file("packed-open-\(label).img"), size: size, commits: history, behind: 255, signer: signer)
            print("packed_open_\(label)_ms=\(fixed(r.ms, 2)) frames_since_metadata=\(r.adopted)  # \(history.count) commits, the last metadata write 255 commits back")
        }
    }
}
