// Where the trust path meets the files of the gateway: the key directory, the firmware hash of
// this executable, the device id, and the anchor file (docs/FORMAT.md sections 3.5 and 8).

import EdgelogCore
import EdgelogLinux
import EdgelogSeal
import EdgelogStore

/// Why the trust setup refused to go on; each maps to exit code 8 (anchor) or 9 (keys).
public enum TrustError: Error, CustomStringConvertible {
    case key(KeyError)
    case file(FileError)
    case anchor(String)
    case pendingRotation(String)

    public var description: String {
        switch self {
        case .key(let e): e.description
        case .file(let e): e.description
        case .anchor(let why): why
        case .pendingRotation(let dir): "\(dir) holds an unfinished key rotation (pending/): run `edgelog keys rotate` again to finish it"
        }
    }
}

/// The key directory of `edgelog keys generate` (FORMAT.md 3.5, "Key files").
public struct KeyDirectory {
    public let path: String
    public init(path: String) { self.path = path }

    public var privatePath: String { path + "/signing-key.pem" }
    public var hmacPath: String { path + "/hmac-key.hex" }
    public var publicPath: String { path + "/signing-key.pub.pem" }
    public var infoPath: String { path + "/key.json" }
    public var pendingPath: String { path + "/pending" }

    public struct Info {
        public var algorithm: SignatureAlgorithm
        public var epoch: UInt32
        public var keyID: [UInt8]
        public init(algorithm: SignatureAlgorithm, epoch: UInt32, keyID: [UInt8]) {
            self.algorithm = algorithm
            self.epoch = epoch
            self.keyID = keyID
        }

        public var json: String {
            "{\"alg\":\"\(algorithm.name)\",\"key_epoch\":\(epoch),\"key_id\":\"\(Hex.encode(keyID))\",\"key_src\":\"file\"}\n"
        }
    }

    public func secretPath(for algorithm: SignatureAlgorithm) -> String { algorithm == .hmacSHA256 ? hmacPath : privatePath }

    public func readInfo() throws(TrustError) -> Info {
        let bytes: [UInt8]
        do { bytes = try LocalFile.read(infoPath).bytes } catch { throw .file(error) }
        let members: [(key: String, value: FlatJSON.Value)]
        do { members = try FlatJSON.parse(bytes) } catch { throw .key(.malformed(what: infoPath, why: "\(error)")) }
        guard let name = members.first(where: { $0.key == "alg" }).flatMap({ if case .string(let s) = $0.value { s } else { nil } }),
              let algorithm = SignatureAlgorithm(name: name), algorithm != .unsigned,
              case .integer(let epoch)? = members.first(where: { $0.key == "key_epoch" })?.value, epoch >= 1, epoch <= UInt64(UInt32.max),
              let idText = members.first(where: { $0.key == "key_id" }).flatMap({ if case .string(let s) = $0.value { s } else { nil } }),
              let keyID = Hex.decode(idText), keyID.count == 16
        else { throw .key(.malformed(what: infoPath, why: "needs alg, key_epoch (1 or more) and a 32-digit key_id")) }
        return Info(algorithm: algorithm, epoch: UInt32(epoch), keyID: keyID)
    }

    /// Loads the signing key, refusing a private key file others can read.
    public func loadSigner() throws(TrustError) -> FileSigner {
        if LocalFile.exists(pendingPath) { throw .pendingRotation(path) }
        let info = try readInfo()
        let secret = secretPath(for: info.algorithm)
        let file: (bytes: [UInt8], mode: UInt32)
        do { file = try LocalFile.read(secret) } catch { throw .file(error) }
        guard file.mode & 0o077 == 0 else { throw .key(.exposed(path: secret, mode: file.mode)) }
        let key: PrivateSigningKey
        do { key = try PrivateSigningKey.parse(String(decoding: file.bytes, as: UTF8.self), algorithm: info.algorithm, what: secret) } catch {
            throw .key(error)
        }
        guard key.trusted.keyID == info.keyID else {
            throw .key(.inconsistent("\(secret) has key id \(Hex.encode(key.trusted.keyID)) but key.json says \(Hex.encode(info.keyID))"))
        }
        return FileSigner(key: key, epoch: info.epoch)
    }

    /// The keys rotations retired (retired/epoch-N-…), each with its epoch: what a writer may
    /// continue from after a rotation. Files that do not parse are left out.
    public func retiredKeys(below epoch: UInt32) -> [(key: TrustedKey, epoch: UInt32)] {
        var out: [(key: TrustedKey, epoch: UInt32)] = []
        let lowest = epoch > 8 ? epoch - 8 : 1
        for e in lowest..<max(epoch, lowest) {
            for name in ["signing-key.pub.pem", "hmac-key.hex"] {
                let file = "\(path)/retired/epoch-\(e)-\(name)"
                guard LocalFile.exists(file), let bytes = try? LocalFile.read(file, limit: 64 << 10).bytes,
                      let key = try? TrustedKey.parse(String(decoding: bytes, as: UTF8.self), what: file) else { continue }
                out.append((key, e))
            }
        }
        return out
    }

    /// The checking key of `epoch`: the current one when key.json names that epoch and its file is
    /// still in place, else the retired one; nil when neither is there. What an interrupted
    /// `keys rotate` checks the store with, wherever its cut left the old key's files.
    public func trustedKey(epoch: UInt32) -> TrustedKey? {
        if let info = try? readInfo(), info.epoch == epoch {
            let file = info.algorithm == .hmacSHA256 ? hmacPath : publicPath
            if let bytes = try? LocalFile.read(file, limit: 64 << 10).bytes,
               let key = try? TrustedKey.parse(String(decoding: bytes, as: UTF8.self), what: file), key.keyID == info.keyID {
                return key
            }
        }
        return retiredKeys(below: epoch &+ 1).first { $0.epoch == epoch }?.key
    }

    /// Writes a key's files into `directory` (the key directory itself or its pending/ folder).
    public static func write(_ key: PrivateSigningKey, epoch: UInt32, into directory: String) throws(TrustError) {
        let dir = KeyDirectory(path: directory)
        do {
            try LocalFile.makeDirectory(directory, mode: 0o700)
            try LocalFile.writeAtomically(dir.secretPath(for: key.algorithm), Array(key.fileText.utf8), mode: 0o600)
            if key.algorithm != .hmacSHA256 {
                try LocalFile.writeAtomically(dir.publicPath, Array(key.trusted.fileText.utf8), mode: 0o644)
            }
            let info = Info(algorithm: key.algorithm, epoch: epoch, keyID: key.trusted.keyID)
            try LocalFile.writeAtomically(dir.infoPath, Array(info.json.utf8), mode: 0o644)
        } catch {
            throw .file(error)
        }
    }
}

public enum Firmware {
    /// SHA-256 of the running executable (fw_ver_hash), read once at start.
    public static func ownHash() throws(TrustError) -> [UInt8] {
        var hasher = Hasher256()
        do { try LocalFile.forEachChunk("/proc/self/exe") { hasher.update($0) } } catch { throw .file(error) }
        return hasher.finalize()
    }
}

public enum DeviceIdentity {
    /// The gateway's id: the 128-bit /etc/machine-id, or nil when the system has none.
    public static func machineID() -> [UInt8]? {
        guard let text = try? LocalFile.read("/etc/machine-id").bytes else { return nil }
        let digits = String(decoding: text.prefix(32), as: UTF8.self)
        guard let id = Hex.decode(digits), id.count == 16 else { return nil }
        return id
    }
}

/// The anchor file (FORMAT.md section 8).
public struct AnchorFile {
    public let path: String
    public init(path: String) { self.path = path }

    /// The signed head in the file, or nil when there is no file yet.
    public func read() throws(TrustError) -> SignedHead? {
        let bytes: [UInt8]
        do { bytes = try LocalFile.read(path, limit: 64 << 10).bytes } catch {
            if error.isMissing { return nil }
            throw .file(error)
        }
        // The whole file: exactly one signed head (FORMAT.md 8), read as the verifiers read it.
        do { return try SignedHead.parse(bytes) } catch {
            throw .anchor("anchor file \(path) is not a valid signed head (\(error)); it is left as it is: compare it with the collector's copy")
        }
    }

    /// The version 3 signed head in the file (a format 6 store's anchor), or nil when there is no file yet.
    public func readFrameHead() throws(TrustError) -> FrameHead? {
        let bytes: [UInt8]
        do { bytes = try LocalFile.read(path, limit: 64 << 10).bytes } catch {
            if error.isMissing { return nil }
            throw .file(error)
        }
        do { return try FrameHead.parse(bytes) } catch {
            throw .anchor("anchor file \(path) is not a valid format 6 signed head (\(error)); it is left as it is: compare it with the collector's copy")
        }
    }

    public func write(_ head: FrameHead) throws(TrustError) {
        do {
            try LocalFile.makeDirectory(LocalFile.parent(of: path))
            try LocalFile.writeAtomically(path, head.fileBytes)
        } catch {
            throw .file(error)
        }
    }

    public func write(_ seal: SealView) throws(TrustError) {
        do {
            try LocalFile.makeDirectory(LocalFile.parent(of: path))
            try LocalFile.writeAtomically(path, SignedHead(seal: seal).fileBytes)
        } catch {
            throw .file(error)
        }
    }
}
