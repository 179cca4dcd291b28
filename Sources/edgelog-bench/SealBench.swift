// The trust path's own costs: signing one statement per algorithm, hashing a segment, and
// `verify` over a 256 MiB store against `sha256sum` of the same file in the same run.

import EdgelogLinux
import EdgelogSeal
import EdgelogStore
import EdgelogTimebase
import Glibc

enum SealBench {
    /// p50/p99 of one signature per algorithm and of one 32 KiB segment hash.
    /// Median Ed25519 signing time of the last signAndHash run, in ns.
    nonisolated(unsafe) static var ed25519P50Ns: UInt64 = 0

    static func signAndHash() -> [String] {
        var lines: [String] = []
        let statement = [UInt8](repeating: 0xA5, count: Statement.size)
        for key in [PrivateSigningKey.ed25519(.init()), .ecdsaP256(.init()), .hmacSHA256(Array(repeating: 3, count: 32))] {
            var latencies = Latencies(capacity: 2000)
            for _ in 0..<2000 {
                let t0 = monoNs()
                _ = statement.withUnsafeBytes { try? key.sign($0) }
                latencies.samples.append(monoNs() &- t0)
            }
            lines.append("sign_\(key.algorithm.name): \(latencies.summary())")
            if key.algorithm == .ed25519 { ed25519P50Ns = latencies.percentile(50, sorted: latencies.samples.sorted()) }
        }
        let segment = [UInt8](repeating: 0x5A, count: Shape.segmentSize)
        var hashing = Latencies(capacity: 2000)
        for _ in 0..<2000 {
            let t0 = monoNs()
            _ = segment.withUnsafeBytes { SegmentHash.of($0) }
            hashing.samples.append(monoNs() &- t0)
        }
        lines.append("sha256_32KiB: \(hashing.summary())")
        return lines
    }
}

enum VerifyBench {
    static let storeSize: UInt64 = 256 << 20

    /// Fills a signed store to the end of its ring, then times verify and sha256sum alternately.
    static func run(path: String) -> (segments: Int, verifyS: [Double], shaS: [Double]) {
        let key = PrivateSigningKey.ed25519(.init())
        let identity = SealIdentity(deviceID: Array(repeating: 1, count: 16), fwVerHash: Array(repeating: 2, count: 32),
                                    signer: FileSigner(key: key, epoch: 1))
        let (device, store) = freshStore(path: path, size: storeSize, segmentSize: Shape.segmentSize, identity: identity)
        var sequencer = Sequencer(from: store.metadata)
        let builder = SegmentBuilder(geometry: store.metadata.geometry)
        let bytes = RecordBytes()
        let source = UnsafeRawBufferPointer(bytes.source), payload = UnsafeRawBufferPointer(bytes.payload)
        var n = 0
        do {
            while !store.metadata.ringIsFull {
                while builder.fits(sourceLength: source.count, payloadLength: payload.count) {
                    let (seq, mono) = try sequencer.next(for: Shape.source)
                    bytes.setNumber(n)
                    n += 1
                    builder.append(type: .data, source: source, seq: seq, mono: mono, time: SystemClock.now(), payload: payload)
                }
                sequencer.reserveEvidence(for: builder, count: 4)
                _ = try store.commit(builder)
                builder.reset()
            }
            try store.close()
        } catch {
            die("verify bench fill: \(error)")
        }
        let segments = Int(store.metadata.segmentCount)
        _ = device
        var verifyS: [Double] = [], shaS: [Double] = []
        let command = "sha256sum '\(path)' > /dev/null"
        for _ in 0..<3 {
            var t0 = monoNs()
            guard system(command) == 0 else { die("sha256sum failed") }
            shaS.append(Double(monoNs() &- t0) / 1e9)
            t0 = monoNs()
            let reader: FileBlockDevice
            do { reader = try FileBlockDevice(path: path, readOnly: true, direct: false) } catch { die("open \(path): \(error)") }
            let report = Verifier.verify(device: reader, options: VerifyOptions(trusted: [key.trusted]))
            verifyS.append(Double(monoNs() &- t0) / 1e9)
            guard report.passed, report.segments.count == segments else {
                die("verify bench: \(report.failedSegments) failed, \(report.reasons)")
            }
        }
        return (segments, verifyS, shaS)
    }
}

enum TimeBench {
    /// ns per capture: the timebase against two bare clock reads, 2,000,000 each, no I/O.
    static func captureNs() -> (timebase: Double, bare: Double) {
        let timebase = Timebase(source: LinuxTimeSource())
        var before: [TimeRecord] = []
        let n = 2_000_000
        var sink: Int64 = 0
        var t0 = monoNs()
        for _ in 0..<n {
            sink &+= timebase.capture(before: &before).wallNs
            if !before.isEmpty { before.removeAll(keepingCapacity: true) }
        }
        let timed = Double(monoNs() &- t0) / Double(n)
        t0 = monoNs()
        for _ in 0..<n { sink &+= SystemClock.now().wallNs }
        let bare = Double(monoNs() &- t0) / Double(n)
        if sink == 42 { print("") }
        return (timed, bare)
    }
}

/// The writer's signer, timed where it runs: inside each commit, between the segment hash and the
/// write, with whatever the I/O left in the caches. The loop above measures it hot.
final class TimedSigner: SegmentSigner, @unchecked Sendable {
    let inner: FileSigner
    private(set) var latencies = Latencies(capacity: 8192)
    init(_ inner: FileSigner) { self.inner = inner }
    var algorithm: SignatureAlgorithm { inner.algorithm }
    var keySource: KeySource { inner.keySource }
    var keyID: [UInt8] { inner.keyID }
    var keyEpoch: UInt32 { inner.keyEpoch }
    func sign(_ message: UnsafeRawBufferPointer) throws(SigningError) -> [UInt8] {
        let t0 = monoNs()
        let signature = try inner.sign(message)
        latencies.add(monoNs() &- t0)
        return signature
    }
    func verifies(_ signature: [UInt8], of message: [UInt8]) -> Bool { inner.verifies(signature, of: message) }
}
