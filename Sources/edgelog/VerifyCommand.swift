import ArgumentParser
import EdgelogCore
import EdgelogLinux
import EdgelogRuntime
import EdgelogSeal
import EdgelogStore
import Glibc

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every committed segment: CRCs, hashes, chain, signatures, key epochs, anchor, firmware.",
        discussion: """
            Gives each segment sig_verify PASS or FAIL with a reason and its byte offset, then a \
            summary. Reasons (docs/FORMAT.md section 9): crc_mismatch, hash_mismatch, chain_break, \
            bad_signature, unknown_key, rollback, fork, fw_not_allowed, truncated_tail, gap, \
            reordered, foreign_segment, seal_mismatch, unsigned, anchor_malformed, \
            anchor_bad_signature, not_a_store. A power cut is not tampering: a torn tail and the \
            recovery's incomplete records are listed as notes and do not fail the store.

            Exit status: 0 everything verifies, 1 something failed, 2 usage error or unreadable file. \
            Reads only.

            Example: edgelog verify --device store.img --trust signing-key.pub.pem --anchor head.json
            """
    )

    @Option(help: "Store device, file or copied image.")
    var device: String

    @Option(help: "Trusted key: a PUBLIC KEY PEM or HMAC secret file (epoch 1), or a key directory (its key.json gives the epoch). Repeat for several.")
    var trust: [String] = []

    @Option(help: "A signed head kept earlier (edgelog head --json, or the anchor file).")
    var anchor: String?

    @Option(name: .customLong("allow-fw"), help: "SHA-256 (hex) of an allowed edgelog executable (repeat for several).")
    var allowFw: [String] = []

    @Flag(help: "Accept unsigned segments when their hash chain holds.")
    var allowUnsigned = false

    @Flag(help: "Print JSON lines: one per segment, finding and note, then a summary.")
    var json = false

    static let usageExit: Int32 = 2

    func run() throws {
        var trusted: [TrustedKey] = []
        var epochs: [[UInt8]: UInt32] = [:]
        for path in trust {
            do {
                // A key directory: its key.json names the epoch (a store whose rotation records the
                // ring has overwritten can then still be verified from its current key).
                if LocalFile.exists(path + "/key.json") {
                    let dir = KeyDirectory(path: path)
                    let info = try dir.readInfo()
                    let keyPath = info.algorithm == .hmacSHA256 ? dir.hmacPath : dir.publicPath
                    let key = try TrustedKey.parse(String(decoding: try LocalFile.read(keyPath, limit: 64 << 10).bytes, as: UTF8.self), what: keyPath)
                    guard key.keyID == info.keyID else {
                        throw KeyError.inconsistent("\(keyPath) has key id \(Hex.encode(key.keyID)) but key.json says \(Hex.encode(info.keyID))")
                    }
                    trusted.append(key)
                    epochs[key.keyID] = info.epoch
                } else {
                    let text = String(decoding: try LocalFile.read(path, limit: 64 << 10).bytes, as: UTF8.self)
                    trusted.append(try TrustedKey.parse(text, what: path))
                }
            } catch {
                Exit.say("error: --trust \(path): \(error)")
                throw ExitCode(Self.usageExit)
            }
        }
        if trusted.isEmpty && !allowUnsigned {
            Exit.say("note: no --trust key given: signed segments will fail as unknown_key")
        }
        var firmware: [[UInt8]]?
        if !allowFw.isEmpty {
            firmware = []
            for text in allowFw {
                guard let hash = Hex.decode(text), hash.count == 32 else {
                    Exit.say("error: --allow-fw \(text) is not a SHA-256 in hex (64 digits)")
                    throw ExitCode(Self.usageExit)
                }
                firmware?.append(hash)
            }
        }
        var anchorBytes: [UInt8]?
        if let anchor {
            // The whole file: it must be exactly one signed head (FORMAT.md 8), judged by the verifier.
            do { anchorBytes = Array(try LocalFile.read(anchor, limit: 64 << 10).bytes) } catch {
                Exit.say("error: \(error)")
                throw ExitCode(Self.usageExit)
            }
        }
        let target: FileBlockDevice
        do { target = try FileBlockDevice(path: device, readOnly: true, direct: false) } catch {
            Exit.say("error: \(error)")
            throw ExitCode(Self.usageExit)
        }
        let showProgress = isatty(2) != 0 && !json
        var options = VerifyOptions(trusted: trusted, anchor: anchorBytes, allowedFirmware: firmware, allowUnsigned: allowUnsigned)
        options.epochs = epochs
        if PackedStoreProbe.isPacked(target) {
            // Format 6 (docs/FORMAT.md A.11).
            let report = PackedVerifier.verify(device: target, options: options) { done, total in
                if showProgress && total >= 100 && (done % 50 == 0 || done == total) {
                    FDOutput.write(2, "\rverifying: \(done) of \(total) segments")
                    if done == total { FDOutput.write(2, "\n") }
                }
            }
            print(json ? PackedVerifyText.jsonLines(report) : PackedVerifyText.table(report), terminator: "")
            if !report.passed { throw ExitCode(1) }
            return
        }
        let report = Verifier.verify(
            device: target,
            options: {
                var options = VerifyOptions(trusted: trusted, anchor: anchorBytes, allowedFirmware: firmware, allowUnsigned: allowUnsigned)
                options.epochs = epochs
                return options
            }(),
            progress: { done, total in
                if showProgress && total >= 1000 && (done % 500 == 0 || done == total) {
                    FDOutput.write(2, "\rverifying: \(done) of \(total) segments")
                    if done == total { FDOutput.write(2, "\n") }
                }
            })
        print(json ? VerifyText.jsonLines(report) : VerifyText.table(report), terminator: "")
        if !report.passed { throw ExitCode(1) }
    }
}

enum VerifyText {
    static func jsonLines(_ r: VerifyReport) -> String {
        var out = ""
        for s in r.segments {
            out += "{\"kind\":\"segment\",\"segment_id\":\(s.segmentID),\"slot\":\(s.slot),\"offset\":\(s.offset),"
                + "\"sig_verify\":\"\(s.passed ? "PASS" : "FAIL")\",\"reason\":\(s.reason.map { "\"\($0.rawValue)\"" } ?? "null"),"
                + "\"key_epoch\":\(s.keyEpoch)}\n"
        }
        for f in r.findings {
            out += "{\"kind\":\"finding\",\"reason\":\"\(f.reason.rawValue)\",\"offset\":\(f.offset),\"detail\":\"\(jsonEscaped(f.detail))\"}\n"
        }
        for n in r.notes {
            out += "{\"kind\":\"note\",\"note\":\"\(n.note)\",\"segment_id\":\(n.segmentID),\"detail\":\"\(jsonEscaped(n.detail))\"}\n"
        }
        out += "{\"kind\":\"summary\",\"verdict\":\"\(r.passed ? "PASS" : "FAIL")\",\"segments\":\(r.segments.count),"
            + "\"passed\":\(r.segments.count - r.failedSegments),\"failed\":\(r.failedSegments),"
            + "\"signed\":\(r.signed),\"sig_alg\":\"\(r.sigAlg.name)\","
            + "\"reasons\":[\(r.reasons.map { "\"\($0)\"" }.joined(separator: ","))]}\n"
        return out
    }

    static func table(_ r: VerifyReport) -> String {
        var out = ""
        // Passing segments are summarized; every failure is listed with its offset.
        // Details may quote record payloads from the card: printed escaped, they cannot draw a line.
        for s in r.segments where !s.passed {
            out += "segment \(s.segmentID) (slot \(s.slot), offset \(s.offset)): sig_verify=FAIL \(s.reason?.rawValue ?? "") - \(terminalSafe(s.detail))\n"
        }
        for f in r.findings { out += "FAIL \(f.reason.rawValue) at offset \(f.offset): \(terminalSafe(f.detail))\n" }
        for n in r.notes { out += "note \(n.note) (segment \(n.segmentID)): \(terminalSafe(n.detail))\n" }
        let first = r.segments.first?.segmentID, last = r.segments.last?.segmentID
        let range = first.map { "segments \($0)..\(last ?? $0)" } ?? "no segments"
        out += "\(r.passed ? "PASS" : "FAIL"): \(range), \(r.segments.count - r.failedSegments) passed, \(r.failedSegments) failed; "
            + (r.signed ? "signed \(r.sigAlg.name)" : r.sigAlg == .unsigned ? "unsigned (hash chain only)"
                : "NOT all signed (last signature \(r.sigAlg.name))")
            + (r.reasons.isEmpty ? "" : "; reasons: " + r.reasons.joined(separator: ", ")) + "\n"
        return out
    }
}

enum PackedVerifyText {
    static func jsonLines(_ r: PackedVerifyReport) -> String { PackedVerifyJSON.lines(r).map { $0 + "\n" }.joined() }

    static func table(_ r: PackedVerifyReport) -> String {
        var out = ""
        // Passing segments are summarized; every failure is listed with its offset. Details quote
        // bytes from the card: printed escaped, they cannot draw on the terminal.
        for s in r.segments where !s.passed {
            out += "segment \(s.segmentID) (slot \(s.slot), offset \(s.offset)): sig_verify=FAIL \(s.reason?.rawValue ?? "") - \(terminalSafe(s.detail))\n"
        }
        for f in r.frameFailures {
            out += "frame \(f.frameID)\(f.frames > 1 ? " and \(f.frames - 1) after it" : "") of segment \(f.segmentID) (offset \(f.offset)): "
                + "FAIL \(f.reason.rawValue) - \(terminalSafe(f.detail))\n"
        }
        for f in r.findings { out += "FAIL \(f.reason.rawValue) at offset \(f.offset): \(terminalSafe(f.detail))\n" }
        for n in r.notes { out += "note \(n.note) (segment \(n.segmentID), frame \(n.frameID)): \(terminalSafe(n.detail))\n" }
        let first = r.segments.first?.segmentID, last = r.segments.last?.segmentID
        let range = first.map { "segments \($0)..\(last ?? $0)" } ?? "no segments"
        out += "\(r.passed ? "PASS" : "FAIL"): \(range), \(r.frames) frames, \(r.framesPassed) passed, \(r.frames - r.framesPassed) failed; "
            + (r.signed ? "signed \(r.sigAlg.name)" : r.sigAlg == .unsigned ? "unsigned (hash chain only)"
                : "NOT all signed (last signature \(r.sigAlg.name))")
            + (r.reasons.isEmpty ? "" : "; reasons: " + r.reasons.joined(separator: ", ")) + "\n"
        return out
    }
}

