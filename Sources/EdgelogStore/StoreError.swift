// Every way the store can refuse or fail, each with the context a technician needs.

public enum StoreError: Error, Equatable, CustomStringConvertible, Sendable {
    /// A person asked for something the store cannot do (bad size, bad name, ...).
    case invalidArgument(String)
    /// The device reported a fault.
    case device(DeviceError)
    /// Neither metadata slot is valid: this is not a store, or its metadata is destroyed.
    case notAStore(device: String, reasons: [String])
    /// The metadata describes a store larger than the device or file now is.
    case truncated(device: String, storeSize: UInt64, deviceSize: UInt64)
    /// The store assumes smaller sectors than the device now has: it cannot be written safely.
    case sectorMismatch(device: String, storeSectorSize: Int, deviceSectorSize: Int)
    /// The store was written by a newer edgelog.
    case newerFormat(device: String, found: UInt16, supported: UInt16)
    /// `format` found a store and was not told to overwrite it.
    case alreadyFormatted(device: String)
    /// The ring has no free segment and the policy does not allow reusing one.
    case ringFull(policy: RingFullPolicy, detail: String)
    /// Writes keep failing after remapping: nothing more can be acknowledged.
    case deviceFailing(String)
    /// The metadata's source table has no room for another source name.
    case sourceTableFull(source: String, limit: Int)
    /// A record does not fit in one segment.
    case recordTooLarge(bytes: Int, capacity: Int)
    /// The writer was closed, or stopped after an earlier failure.
    case closed(String)
    /// The signer could not sign a commit (nothing of it was written or acknowledged).
    case signing(String)
    /// The store is older than its anchor, or forks from it (FORMAT.md section 8).
    case anchorRefused(reason: String, detail: String)
    /// The unsigned metadata contradicts the signed state of its own head segment (FORMAT.md 9
    /// item 4): edited, so it must not steer the writer. Nothing was written.
    case metadataContradictsSeal(device: String, fields: [String])
    /// The metadata holds values no writer reaches (a counter within sight of where its `+ 1`
    /// would overflow): edited. Refused rather than wrapped or saturated. Nothing was written.
    case implausibleMetadata(device: String, fields: [String])
    /// Neither metadata slot's head segment checks, so no signed state vouches for the metadata a
    /// signing writer would continue from. Nothing was written.
    case headUnverified(device: String, segmentID: UInt64)
    /// Format 6: the head frame the metadata names is missing, or names this writer's key without
    /// its signature. Nothing was written.
    case headFrameUnverified(device: String, frameID: UInt64, detail: String)
    /// The store is of an older format this edgelog no longer writes. Nothing was written.
    case olderFormat(device: String, found: UInt16, supported: UInt16)

    public var description: String {
        switch self {
        case .invalidArgument(let text): return text
        case .device(let error): return error.description
        case .notAStore(let device, let reasons):
            return "\(device) is not an edgelog store (no valid metadata slot): " + reasons.joined(separator: "; ")
        case .truncated(let device, let storeSize, let deviceSize):
            return "\(device) is truncated: its store is \(storeSize) bytes but only \(deviceSize) are there; the file was not changed"
        case .sectorMismatch(let device, let store, let deviceSector):
            return "\(device) has \(deviceSector)-byte sectors but its store was formatted for \(store)-byte sectors; it can be read (export, inspect) but not written"
        case .newerFormat(let device, let found, let supported):
            return "\(device) holds format version \(found); this edgelog reads up to version \(supported). Use a newer edgelog; the store was not changed."
        case .alreadyFormatted(let device):
            return "\(device) already holds an edgelog store; pass --force to erase it"
        case .ringFull(let policy, let detail):
            return "ring full (policy \(policy.rawValue)): \(detail)"
        case .deviceFailing(let detail): return "device keeps failing: \(detail)"
        case .sourceTableFull(let source, let limit):
            return "cannot add source '\(source)': the store already tracks \(limit) sources"
        case .recordTooLarge(let bytes, let capacity):
            return "record of \(bytes) bytes does not fit in a segment (at most \(capacity) bytes); format with a larger --segment-size"
        case .closed(let why): return "store is closed: \(why)"
        case .signing(let why): return "cannot sign the commit: \(why); nothing more is acknowledged"
        case .anchorRefused(let reason, let detail): return "refused by the anchor (\(reason)): \(detail); the store was not changed"
        case .headUnverified(let device, let id):
            return "\(device): the head segment \(id) the metadata names is missing, damaged or does not match the metadata, so no signed "
                + "state vouches for it and the writer will not continue from it; the store was not changed (run edgelog verify; keep "
                + "the card as evidence and log to a freshly formatted one)"
        case .headFrameUnverified(let device, _, let detail):
            return "\(device): \(detail) (run edgelog verify; keep the card as evidence and log to a freshly formatted one)"
        case .olderFormat(let device, let found, let supported):
            return "\(device) holds format version \(found), which this edgelog still reads (export, inspect, verify, head) but no longer "
                + "writes: it writes version \(supported) only. Export and verify what the card holds, then format it (edgelog format --force) "
                + "or log to another; the store was not changed."
        case .implausibleMetadata(let device, let fields):
            return "\(device): the metadata holds values no writer reaches (\(fields.joined(separator: ", "))): it was edited, so the writer "
                + "will not continue from it; the store was not changed (run edgelog verify for the whole report)"
        case .metadataContradictsSeal(let device, let fields):
            return "\(device): the metadata contradicts the signed head segment (\(fields.joined(separator: "; "))): it was edited "
                + "after that commit, so the writer will not trust it; the store was not changed (run edgelog verify for the whole report)"
        }
    }
}

/// What the writer does when every ring slot holds a segment.
public enum RingFullPolicy: String, CaseIterable, Sendable {
    /// Stop accepting records and say so (default: nothing is ever lost silently).
    case pause
    /// Reuse the oldest segment only if the uplink has acknowledged it.
    case overwriteAcked = "overwrite-acked"
    /// Reuse the oldest segment anyway, writing a gap record naming what was lost.
    case overwriteOldest = "overwrite-oldest"
}
