// Signing keys and trusted (verifying) keys, in the encodings other tools read: PKCS#8 and
// SubjectPublicKeyInfo PEM, so openssl and Python's cryptography verify our signatures without us
// (docs/FORMAT.md section 3.5). HMAC secrets are 64 hex digits.

import Crypto
import EdgelogCore
import EdgelogStore
import FoundationEssentials

public enum KeyError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The text is not a key of a kind edgelog uses.
    case malformed(what: String, why: String)
    /// A private key file that others can read.
    case exposed(path: String, mode: UInt32)
    /// A key directory or file could not be read or written.
    case io(path: String, why: String)
    /// key.json and the key file disagree, or a value is out of range.
    case inconsistent(String)

    public var description: String {
        switch self {
        case .malformed(let what, let why): "\(what) is not a usable key: \(why)"
        case .exposed(let path, let mode):
            "\(path) has mode \(String(mode & 0o777, radix: 8)): a private key must not be readable or writable by group or others (chmod 600 \(path))"
        case .io(let path, let why): "\(path): \(why)"
        case .inconsistent(let why): "key directory is inconsistent: \(why)"
        }
    }
}

/// A key that can check signatures: a public key, or for HMAC the shared secret itself.
public enum TrustedKey: Sendable {
    case ed25519(Curve25519.Signing.PublicKey)
    case ecdsaP256(P256.Signing.PublicKey)
    case hmacSHA256([UInt8])

    public var algorithm: SignatureAlgorithm {
        switch self {
        case .ed25519: .ed25519
        case .ecdsaP256: .ecdsaP256
        case .hmacSHA256: .hmacSHA256
        }
    }

    /// DER SubjectPublicKeyInfo (empty for HMAC).
    public var spkiDER: [UInt8] {
        switch self {
        case .ed25519(let key): DER.ed25519SPKIPrefix + Array(key.rawRepresentation)
        case .ecdsaP256(let key): Array(key.derRepresentation)
        case .hmacSHA256: []
        }
    }

    /// FORMAT.md 3.5: the first 16 bytes of SHA-256 of the SPKI, or of the tagged secret.
    public var keyID: [UInt8] {
        switch self {
        case .hmacSHA256(let secret): Array(SHA256.hash(data: Array("EDGELOG-HMAC-KEY-ID".utf8) + secret).prefix(16))
        default: Array(SHA256.hash(data: spkiDER).prefix(16))
        }
    }

    /// The text of the trust file: PEM, or hex for an HMAC secret.
    public var fileText: String {
        switch self {
        case .hmacSHA256(let secret): Hex.encode(secret) + "\n"
        default: PEM.encode(type: "PUBLIC KEY", der: spkiDER)
        }
    }

    /// True when `signature` is this key's signature of `message` under the seal's rules.
    public func verifies(_ signature: [UInt8], of message: [UInt8]) -> Bool {
        switch self {
        case .ed25519(let key):
            return signature.count == 64 && key.isValidSignature(signature, for: message)
        case .ecdsaP256(let key):
            guard signature.count == 64, let sig = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(sig, for: message)
        case .hmacSHA256(let secret):
            return signature.count == 32
                && HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: message, using: SymmetricKey(data: secret))
        }
    }

    /// Reads a trust file: a `PUBLIC KEY` PEM (Ed25519 or P-256) or an HMAC secret in hex.
    public static func parse(_ text: String, what: String) throws(KeyError) -> TrustedKey {
        let trimmed = Text.trimmed(text)
        if let secret = Hex.decode(trimmed) {
            guard secret.count == 32 else { throw .malformed(what: what, why: "an HMAC secret must be 64 hex digits") }
            return .hmacSHA256(secret)
        }
        let der = try PEM.decode(trimmed, type: "PUBLIC KEY", what: what)
        if der.count == DER.ed25519SPKIPrefix.count + 32, Array(der.prefix(DER.ed25519SPKIPrefix.count)) == DER.ed25519SPKIPrefix {
            do { return .ed25519(try Curve25519.Signing.PublicKey(rawRepresentation: der.suffix(32))) } catch {
                throw .malformed(what: what, why: "bad Ed25519 public key")
            }
        }
        do { return .ecdsaP256(try P256.Signing.PublicKey(derRepresentation: der)) } catch {
            throw .malformed(what: what, why: "neither an Ed25519 nor a P-256 public key")
        }
    }
}

/// A private key held in memory (from a key file).
public enum PrivateSigningKey: Sendable {
    case ed25519(Curve25519.Signing.PrivateKey)
    case ecdsaP256(P256.Signing.PrivateKey)
    case hmacSHA256([UInt8])

    public static func generate(_ algorithm: SignatureAlgorithm) throws(KeyError) -> PrivateSigningKey {
        switch algorithm {
        case .ed25519: return .ed25519(Curve25519.Signing.PrivateKey())
        case .ecdsaP256: return .ecdsaP256(P256.Signing.PrivateKey())
        case .hmacSHA256:
            var rng = SystemRandomNumberGenerator()
            return .hmacSHA256((0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) })
        case .unsigned: throw .inconsistent("cannot generate a key for 'unsigned'")
        }
    }

    public var algorithm: SignatureAlgorithm {
        switch self {
        case .ed25519: .ed25519
        case .ecdsaP256: .ecdsaP256
        case .hmacSHA256: .hmacSHA256
        }
    }

    public var trusted: TrustedKey {
        switch self {
        case .ed25519(let key): .ed25519(key.publicKey)
        case .ecdsaP256(let key): .ecdsaP256(key.publicKey)
        case .hmacSHA256(let secret): .hmacSHA256(secret)
        }
    }

    /// The private key file's text.
    public var fileText: String {
        switch self {
        case .ed25519(let key): PEM.encode(type: "PRIVATE KEY", der: DER.ed25519PKCS8Prefix + Array(key.rawRepresentation))
        case .ecdsaP256(let key): key.pemRepresentation + (key.pemRepresentation.hasSuffix("\n") ? "" : "\n")
        case .hmacSHA256(let secret): Hex.encode(secret) + "\n"
        }
    }

    public static func parse(_ text: String, algorithm: SignatureAlgorithm, what: String) throws(KeyError) -> PrivateSigningKey {
        let trimmed = Text.trimmed(text)
        switch algorithm {
        case .hmacSHA256:
            guard let secret = Hex.decode(trimmed), secret.count == 32 else {
                throw .malformed(what: what, why: "an HMAC secret must be 64 hex digits")
            }
            return .hmacSHA256(secret)
        case .ed25519:
            let der = try PEM.decode(trimmed, type: "PRIVATE KEY", what: what)
            guard der.count == DER.ed25519PKCS8Prefix.count + 32, Array(der.prefix(DER.ed25519PKCS8Prefix.count)) == DER.ed25519PKCS8Prefix else {
                throw .malformed(what: what, why: "not an Ed25519 PKCS#8 private key")
            }
            do { return .ed25519(try Curve25519.Signing.PrivateKey(rawRepresentation: der.suffix(32))) } catch {
                throw .malformed(what: what, why: "bad Ed25519 private key")
            }
        case .ecdsaP256:
            do { return .ecdsaP256(try P256.Signing.PrivateKey(pemRepresentation: trimmed)) } catch {
                throw .malformed(what: what, why: "not a P-256 private key PEM")
            }
        case .unsigned:
            throw .inconsistent("key.json names no algorithm")
        }
    }

    public func sign(_ message: UnsafeRawBufferPointer) throws(SigningError) -> [UInt8] {
        switch self {
        case .ed25519(let key):
            do { return Array(try key.signature(for: message)) } catch { throw SigningError("Ed25519: \(error)") }
        case .ecdsaP256(let key):
            do { return Array(try key.signature(for: message).rawRepresentation) } catch { throw SigningError("ECDSA P-256: \(error)") }
        case .hmacSHA256(let secret):
            return Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: secret)))
        }
    }
}

/// The writer's signer over a key loaded from a key file.
public final class FileSigner: SegmentSigner {
    public let key: PrivateSigningKey
    public let keyEpoch: UInt32
    public let keyID: [UInt8]
    public var algorithm: SignatureAlgorithm { key.algorithm }
    public var keySource: KeySource { .file }

    public init(key: PrivateSigningKey, epoch: UInt32) {
        self.key = key
        self.keyEpoch = epoch
        self.keyID = key.trusted.keyID
    }

    public func sign(_ message: UnsafeRawBufferPointer) throws(SigningError) -> [UInt8] {
        try key.sign(message)
    }

    /// The key is only read: swift-crypto signs with Ed25519's key bytes read in place and with
    /// P-256's EC_KEY, which BoringSSL's ECDSA_do_sign takes const (keys may be used by several
    /// threads at once when none changes them), and HMAC is a pure function of the secret and the
    /// message.
    public var signsConcurrently: Bool { true }

    public func verifies(_ signature: [UInt8], of message: [UInt8]) -> Bool {
        key.trusted.verifies(signature, of: message)
    }
}

enum DER {
    /// SEQUENCE { SEQUENCE { OID 1.3.101.112 } BIT STRING (32 bytes) } (RFC 8410).
    static let ed25519SPKIPrefix: [UInt8] = [0x30, 0x2A, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x03, 0x21, 0x00]
    /// PKCS#8 v1: SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } }.
    static let ed25519PKCS8Prefix: [UInt8] = [0x30, 0x2E, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70,
                                              0x04, 0x22, 0x04, 0x20]
}

public enum PEM {
    public static func encode(type: String, der: [UInt8]) -> String {
        let body = Base64.encode(der)
        var lines = ["-----BEGIN \(type)-----"]
        var i = body.startIndex
        while i < body.endIndex {
            let j = body.index(i, offsetBy: 64, limitedBy: body.endIndex) ?? body.endIndex
            lines.append(String(body[i..<j]))
            i = j
        }
        lines.append("-----END \(type)-----")
        return lines.joined(separator: "\n") + "\n"
    }

    public static func decode(_ text: String, type: String, what: String) throws(KeyError) -> [UInt8] {
        let begin = "-----BEGIN \(type)-----", end = "-----END \(type)-----"
        let lines = text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" }).map { Text.trimmed(String($0)) }
        guard let b = lines.firstIndex(of: begin), let e = lines[b...].firstIndex(of: end) else {
            throw .malformed(what: what, why: "no \(type) PEM block")
        }
        let body = lines[(b + 1)..<e].joined()
        guard let der = Base64.decode(String(body)) else { throw .malformed(what: what, why: "bad base64 in the PEM block") }
        return der
    }
}

enum Text {
    static func trimmed(_ text: String) -> String {
        let scalars = text.unicodeScalars
        let isSpace: (Unicode.Scalar) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\r" || $0 == "\t" }
        guard let first = scalars.firstIndex(where: { !isSpace($0) }), let last = scalars.lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(scalars[first...last])
    }
}

enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            let n = min(3, bytes.count - i)
            let b0 = bytes[i], b1 = n > 1 ? bytes[i + 1] : 0, b2 = n > 2 ? bytes[i + 2] : 0
            out.append(alphabet[Int(b0 >> 2)])
            out.append(alphabet[Int((b0 & 3) << 4 | b1 >> 4)])
            out.append(n > 1 ? alphabet[Int((b1 & 15) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            out.append(n > 2 ? alphabet[Int(b2 & 63)] : UInt8(ascii: "="))
            i += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: String) -> [UInt8]? {
        var table = [Int](repeating: -1, count: 256)
        for (i, c) in alphabet.enumerated() { table[Int(c)] = i }
        let chars = Array(text.utf8)
        guard chars.count % 4 == 0 else { return nil }
        var out: [UInt8] = []
        var i = 0
        while i < chars.count {
            var v = [0, 0, 0, 0]
            var pad = 0
            for k in 0..<4 {
                let c = chars[i + k]
                if c == UInt8(ascii: "=") {
                    guard i + 4 == chars.count, k >= 2 else { return nil }
                    pad += 1
                } else {
                    guard pad == 0, table[Int(c)] >= 0 else { return nil }
                    v[k] = table[Int(c)]
                }
            }
            out.append(UInt8(v[0] << 2 | v[1] >> 4))
            if pad < 2 { out.append(UInt8((v[1] & 15) << 4 | v[2] >> 2)) }
            if pad < 1 { out.append(UInt8((v[2] & 3) << 6 | v[3])) }
            i += 4
        }
        return out
    }
}
