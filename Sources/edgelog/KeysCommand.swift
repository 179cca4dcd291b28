import ArgumentParser
import EdgelogCore
import EdgelogLinux
import EdgelogRuntime
import EdgelogSeal
import EdgelogStore

extension SignatureAlgorithm: ExpressibleByArgument {
    public init?(argument: String) { self.init(name: argument) }
    // By name in help and completions (the raw numbers are the on-disk sig_alg, not an argument).
    public var defaultValueDescription: String { name }
    public static var allValueStrings: [String] { allCases.filter { $0 != .unsigned }.map(\.name) }
    public static var allValueDescriptions: [String: String] {
        ["ed25519": "the default", "ecdsa-p256": "what ATECC608B and SE050 secure elements sign with",
         "hmac-sha256": "a shared secret, for closed systems: proves integrity, not origin"]
    }
}

struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Make and rotate the key that signs every commit.",
        subcommands: [KeysGenerate.self, KeysRotate.self]
    )
}

struct KeysGenerate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Write a new signing key (epoch 1) into a key directory.",
        discussion: """
            Writes signing-key.pem (mode 0600; ingest refuses it if group or others can read it), \
            signing-key.pub.pem (give this one to the auditor: `edgelog verify --trust`, openssl and \
            Python's cryptography read it) and key.json. For hmac-sha256 the secret is hmac-key.hex, \
            which the verifier needs too: it proves integrity to holders of the secret, not origin.

            Example: edgelog keys generate --out /etc/edgelog/keys
            """
    )

    @Option(help: "Directory to write the key into (created if missing).")
    var out: String

    @Option(name: .customLong("alg"), help: "Signature algorithm (default: ed25519):")
    var algorithm: SignatureAlgorithm?

    var alg: SignatureAlgorithm { algorithm ?? .ed25519 }

    @Flag(help: "Print the key's description as JSON.")
    var json = false

    func validate() throws {
        guard alg != .unsigned else { throw ValidationError("--alg must be ed25519, ecdsa-p256 or hmac-sha256") }
    }

    func run() throws {
        let dir = KeyDirectory(path: out)
        guard !LocalFile.exists(dir.infoPath) else {
            Exit.say("error: \(out) already holds a key (key.json); a second key would not be endorsed by the first: use `edgelog keys rotate`")
            throw ExitCode(Exit.keyProblem)
        }
        do {
            let key = try PrivateSigningKey.generate(alg)
            try KeyDirectory.write(key, epoch: 1, into: out)
            let id = Hex.encode(key.trusted.keyID)
            if json {
                print("{\"key_dir\":\"\(jsonEscaped(out))\",\"alg\":\"\(alg.name)\",\"key_epoch\":1,\"key_id\":\"\(id)\",\"key_src\":\"file\"}")
            } else {
                print("key \(id) (\(alg.name), epoch 1) written to \(out)")
                print(alg == .hmacSHA256 ? "the verifier needs \(dir.hmacPath) itself: keep it secret" : "give \(dir.publicPath) to whoever verifies")
            }
        } catch let error as TrustError {
            throw Exit.fail(error)
        } catch let error as KeyError {
            throw Exit.fail(TrustError.key(error))
        }
    }
}

struct KeysRotate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate",
        abstract: "Replace the signing key; the old key endorses the new one in the store.",
        discussion: """
            Generates the next key, commits a key_rotation record signed by the current key that \
            endorses the new one (so a verifier that trusts only the first public key follows the \
            chain), then moves the old key to retired/ and makes the new one current. Stop the writer \
            first: the store must not be open elsewhere. If this is interrupted after the record is \
            committed, run it again: it finishes the same rotation.

            Example: edgelog keys rotate --key-dir /etc/edgelog/keys --device /dev/mmcblk0p3
            """
    )

    @Option(help: "Key directory holding the current key.")
    var keyDir: String

    @Option(help: "Store device or file.")
    var device: String

    @Option(help: "Algorithm of the new key (default: the current key's).")
    var alg: SignatureAlgorithm?

    @Option(help: "Anchor file, as given to ingest.")
    var anchor: String?

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let dir = KeyDirectory(path: keyDir)
        do {
            let pending = KeyDirectory(path: dir.pendingPath)
            // An interrupted rotation leaves pending/: finish it if the store already endorses it.
            if LocalFile.exists(pending.infoPath) {
                let info = try pending.readInfo()
                let target: FileBlockDevice
                do { target = try FileBlockDevice(path: device, readOnly: true, direct: false) } catch { throw Exit.fail(error) }
                let endorsed: Bool
                if PackedStoreProbe.isPacked(target) {
                    // Only a frame the old key signed can say the rotation landed. A cut inside
                    // finish() may have moved the old key's files to retired/ already: look there too.
                    let oldEpoch = info.epoch &- 1
                    guard info.epoch > 1, let old = dir.trustedKey(epoch: oldEpoch) else {
                        throw TrustError.key(.malformed(what: dir.path, why: "the key of epoch \(oldEpoch), which pending/ succeeds, is neither current nor in retired/: the rotation cannot be checked against the store"))
                    }
                    endorsed = FrameHead.endorses(keyID: info.keyID, device: target, oldKey: old, oldEpoch: oldEpoch)
                } else {
                    endorsed = StoreHead.endorses(keyID: info.keyID, device: target)
                }
                if endorsed {
                    try finish(dir: dir, pendingInfo: info, note: "finished an interrupted rotation")
                    return
                }
                // The record never made it: that key was never endorsed and must not sign.
                do {
                    try LocalFile.rename(dir.pendingPath, to: dir.path + "/abandoned-\(SystemClock.now().wallNs)")
                } catch { throw TrustError.file(error) }
            }
            let current = try dir.loadSigner()
            let newAlg = alg ?? current.algorithm
            guard newAlg != .unsigned else { throw ValidationError("--alg must name an algorithm") }
            let next = try PrivateSigningKey.generate(newAlg)
            let newEpoch = current.keyEpoch + 1
            try KeyDirectory.write(next, epoch: newEpoch, into: dir.pendingPath)

            let target: FileBlockDevice
            do { target = try FileBlockDevice(path: device) } catch { throw Exit.fail(error) }
            // The key directory names the keys this one was rotated from: the head may be signed by one.
            let session = try WriterSession.start(keyDir: keyDir, anchorPath: anchor, signer: current, warn: { Exit.say($0) })
            // The rotation record's time quality uses the default bounds (as ingest without options).
            // A format 5 store is refused by name (this edgelog appends only to format 6).
            let store: PackedEvidenceStore
            do { store = try session.openPacked(target, policy: .pause, time: WriterJob.defaultTimeConfig()) } catch { throw Exit.fail(error) }
            let deviceID = store.metadata.deviceID
            let newDER = newAlg == .hmacSHA256 ? [] : next.trusted.spkiDER
            let message = Endorsement.bytes(deviceID: deviceID, oldKeyID: current.keyID, oldEpoch: current.keyEpoch,
                                            newEpoch: newEpoch, newAlgorithm: newAlg, newKeyID: next.trusted.keyID,
                                            newPublicKeyDER: newDER)
            let signed: Result<[UInt8], SigningError> = message.withUnsafeBytes { buffer in
                do throws(SigningError) { return .success(try current.sign(buffer)) } catch { return .failure(error) }
            }
            let endorsement: [UInt8]
            switch signed {
            case .success(let bytes): endorsement = bytes
            case .failure(let error): throw Exit.fail(StoreError.signing(error.message))
            }
            var payload = EvidenceJSON()
            payload.add("old_key_id", .word(Hex.encode(current.keyID)))
            payload.add("old_epoch", .uint(UInt64(current.keyEpoch)))
            payload.add("new_key_id", .word(Hex.encode(next.trusted.keyID)))
            payload.add("new_epoch", .uint(UInt64(newEpoch)))
            payload.add("new_alg", .word(newAlg.name))
            payload.add("new_public_key", .word(Hex.encode(newDER)))
            payload.add("endorsement", .word(Hex.encode(endorsement)))
            do {
                // The frame is followed by a metadata write and ends its segment (FORMAT.md A.9).
                session.noteHead(store.headSeal)
                let receipt = try store.commitEvidence(.keyRotation, payload)
                session.writeAnchor(after: receipt, force: true)
                try store.close()
            } catch {
                throw Exit.fail(error)
            }
            try finish(dir: dir, pendingInfo: KeyDirectory.Info(algorithm: newAlg, epoch: newEpoch, keyID: next.trusted.keyID),
                       note: "rotated")
        } catch let error as TrustError {
            throw Exit.fail(error)
        } catch let error as KeyError {
            throw Exit.fail(TrustError.key(error))
        }
    }

    /// Retires the current key files and makes pending/ current.
    private func finish(dir: KeyDirectory, pendingInfo: KeyDirectory.Info, note: String) throws(TrustError) {
        let pending = KeyDirectory(path: dir.pendingPath)
        do {
            if let old = try? dir.readInfo() {
                let retired = dir.path + "/retired"
                try LocalFile.makeDirectory(retired, mode: 0o700)
                for (from, name) in [(dir.secretPath(for: old.algorithm), old.algorithm == .hmacSHA256 ? "hmac-key.hex" : "signing-key.pem"),
                                     (dir.publicPath, "signing-key.pub.pem"), (dir.infoPath, "key.json")] where LocalFile.exists(from) {
                    try LocalFile.rename(from, to: "\(retired)/epoch-\(old.epoch)-\(name)")
                }
            }
            KillPoint.reach("rotation.old_key_retired")
            for (from, to) in [(pending.secretPath(for: pendingInfo.algorithm), dir.secretPath(for: pendingInfo.algorithm)),
                               (pending.publicPath, dir.publicPath)] where LocalFile.exists(from) {
                try LocalFile.rename(from, to: to)
            }
            // key.json last: until it moves, the directory still reads as mid-rotation.
            try LocalFile.rename(pending.infoPath, to: dir.infoPath)
            try LocalFile.removeDirectory(dir.pendingPath)
        } catch {
            throw .file(error)
        }
        if json {
            print("{\"key_dir\":\"\(jsonEscaped(dir.path))\",\"alg\":\"\(pendingInfo.algorithm.name)\",\"key_epoch\":\(pendingInfo.epoch),\"key_id\":\"\(Hex.encode(pendingInfo.keyID))\",\"result\":\"\(note)\"}")
        } else {
            print("\(note): key \(Hex.encode(pendingInfo.keyID)) (\(pendingInfo.algorithm.name), epoch \(pendingInfo.epoch)) now signs; the old key is in \(dir.path)/retired")
        }
    }
}
