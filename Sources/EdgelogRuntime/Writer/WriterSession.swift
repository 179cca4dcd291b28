// What a writing command (ingest, keys rotate) sets up around the store: the signer from the key
// directory, the firmware hash, the anchor comparison before anything is written, and the anchor
// file updates after commits (docs/FORMAT.md section 8).

import EdgelogCore
import EdgelogLinux
import EdgelogSeal
import EdgelogStore
import EdgelogTimebase

/// Used by the main thread before the pipeline starts and after it closes, and by the committer
/// thread (onCommit) in between: never by two threads at once.
public final class WriterSession: @unchecked Sendable {
    public let signer: FileSigner?
    public let identity: SealIdentity
    public let anchor: AnchorFile?
    public let anchorIntervalNs: Int64
    /// Where warnings go (the CLI: stderr; the daemon: its log).
    private let warn: @Sendable (String) -> Void
    private var lastFrameHead: FrameHead?
    private var lastAnchorWrite: Int64 = 0
    /// Anchor write failures are reported once, then counted.
    public private(set) var anchorFailures = 0

    private init(signer: FileSigner?, identity: SealIdentity, anchor: AnchorFile?, anchorIntervalNs: Int64, warn: @escaping @Sendable (String) -> Void) {
        self.warn = warn
        self.signer = signer
        self.identity = identity
        self.anchor = anchor
        self.anchorIntervalNs = anchorIntervalNs
    }

    public static func start(keyDir: String?, anchorPath: String?, anchorIntervalSeconds: Int = 10, signer given: FileSigner? = nil,
                             warn: @escaping @Sendable (String) -> Void) throws(TrustError) -> WriterSession {
        var signer = given
        if signer == nil, let keyDir { signer = try KeyDirectory(path: keyDir).loadSigner() }
        let fw = try Firmware.ownHash()
        // The device id comes from the store's metadata (fixed at format): the store fills it in.
        var identity = SealIdentity(deviceID: [UInt8](repeating: 0, count: 16), fwVerHash: fw, signer: signer)
        if let keyDir, let epoch = signer?.keyEpoch {
            // After a rotation the head is the old key's last frame: the writer continues from it.
            // Only the key this one directly succeeds (epoch - 1): an older retired key has no
            // frame the chain could need, and trusting it would only widen what a leaked one signs.
            let retired = KeyDirectory(path: keyDir).retiredKeys(below: epoch).filter { $0.epoch &+ 1 == epoch }
            if !retired.isEmpty {
                identity.predecessorVerifies = { keyID, keyEpoch, alg, signature, message in
                    retired.contains { $0.key.keyID == keyID && $0.epoch == keyEpoch && $0.key.algorithm.rawValue == alg && $0.key.verifies(signature, of: message) }
                }
            }
        }
        return WriterSession(signer: signer, identity: identity, anchor: anchorPath.map(AnchorFile.init(path:)),
                             anchorIntervalNs: Int64(anchorIntervalSeconds) * 1_000_000_000, warn: warn)
    }

    /// Opens a format 6 store for writing after comparing it with the anchor (FORMAT.md A.11.1) and
    /// the key directory; nothing is written when either refuses it.
    public func openPacked(_ device: FileBlockDevice, policy: RingFullPolicy, bootID: [UInt8]? = nil,
                           time: TimebaseConfig) throws(StoreError) -> PackedEvidenceStore {
        let anchorHead: FrameHead?
        do { anchorHead = try anchor?.readFrameHead() } catch { throw .anchorRefused(reason: "anchor_malformed", detail: error.description) }
        let signer = self.signer
        let clockSource = LinuxTimeSource()
        return try PackedEvidenceStore.open(device: device, policy: policy, identity: identity, bootID: bootID, check: { history throws(StoreError) in
            if let anchorHead, let refusal = FrameAnchorCheck.refusal(anchor: anchorHead, history: history, device: device) {
                throw .anchorRefused(reason: refusal.reason, detail: refusal.detail)
            }
            if let signer, let head = history.headFrame?.header, head.sigAlg != .unsigned, head.keyID != signer.keyID, head.keyEpoch >= signer.keyEpoch {
                throw .signing("the store was last signed by key \(Hex.encode(head.keyID)) (epoch \(head.keyEpoch)) but the key directory holds key \(Hex.encode(signer.keyID)) (epoch \(signer.keyEpoch)): a verifier would reject it as unknown_key. Use this store's key directory, or change keys with `edgelog keys rotate`")
            }
            // A head the key before this one signed is continued only when it is the rotation
            // that endorsed this key (its last frame): a head rewound to an older frame of that
            // key, or a key directory that was never rotated on this store, is not.
            if let signer, let head = history.headFrame?.header, head.sigAlg != .unsigned, head.keyID != signer.keyID,
               !FrameHead.headEndorses(keyID: signer.keyID, history: history, device: device) {
                throw .signing("the store's newest frame \(history.headFrameID) was signed by key \(Hex.encode(head.keyID)) (epoch \(head.keyEpoch)), which is not this key directory's, and it is not the key rotation that endorsed key \(Hex.encode(signer.keyID)) (epoch \(signer.keyEpoch)): the store is left as it is (run edgelog verify; this key directory does not continue this store)")
            }
        }, clock: { Timebase.oneShot(source: clockSource, config: time) })
    }

    /// The format 6 head the writer stands on at open (PackedEvidenceStore.headSeal).
    public func noteHead(_ seal: FrameSeal?) {
        if let seal, let head = FrameHead(statement: seal.statement, signature: seal.signature) { lastFrameHead = head }
    }

    /// Mirrors the signed head to the anchor file: always when `force`, else at most once per interval.
    /// The head is the one the writer stands on (noteHead at open, then its receipts), never one
    /// read from the card by chain alone.
    public func writeAnchor(after receipt: CommitReceipt?, force: Bool) {
        // A safe-commit window writes nothing but its commits, and its acknowledgement may run
        // beside the committer's: nothing here is touched (the anchor catches up later, from an
        // older head, which the anchor check accepts).
        if receipt?.inPowerWindow == true { return }
        if let frame = receipt?.frameSeal { lastFrameHead = FrameHead(statement: frame.statement, signature: frame.signature) }
        guard let anchor, let head = lastFrameHead else { return }
        let now = SystemClock.now().bootNs
        guard force || now - lastAnchorWrite >= anchorIntervalNs else { return }
        lastAnchorWrite = now
        do { try anchor.write(head) } catch {
            anchorFailures += 1
            if anchorFailures == 1 { warn("warning: cannot update the anchor file: \(error) (further failures are counted)") }
        }
    }
}
