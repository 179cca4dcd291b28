import ArgumentParser
import EdgelogCore
import EdgelogLinux
import EdgelogSeal
import EdgelogStore

struct HeadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "head",
        abstract: "Print the signed head: the newest commit's identity, hash_head, rollback_ctr and signature.",
        discussion: """
            Needs no key: the statement and signature are copied from the newest commit marker. Keep \
            the output (the collector or the auditor): `edgelog verify --anchor FILE` then proves \
            that a store presented later is not older than it, nor forked from it \
            (docs/FORMAT.md section 8). Reads only; the store is not recovered or changed.

            Example: edgelog head --device /dev/mmcblk0p3 --json > head-2026-11-23.json
            """
    )

    @Option(help: "Store device or file.")
    var device: String

    @Flag(help: "Print the signed head as one line of JSON (the anchor file format).")
    var json = false

    func run() throws {
        let target: FileBlockDevice
        do { target = try FileBlockDevice(path: device, readOnly: true, direct: false) } catch { throw Exit.fail(error) }
        if PackedStoreProbe.isPacked(target) {
            // Format 6: the head frame's rebuilt statement and stored signature (FORMAT.md A.11.1).
            let head: FrameHead?
            do { head = try FrameHead.of(device: target) } catch { throw Exit.fail(PackedEvidenceStore.storeError(error, device: target)) }
            guard let head else {
                Exit.say("error: \(device) has no committed frame to take a head from")
                throw ExitCode(Exit.damaged)
            }
            if json {
                print(head.json)
            } else {
                let s = head.statement
                print("device \(Hex.encode(s.deviceID)) segment \(s.segmentID) frame \(s.frameID) rollback_ctr \(s.rollbackCtr)")
                print("hash_head \(Hex.encode(s.frameHash))")
                print("signed \(s.algorithm?.name ?? "unknown") by key \(Hex.encode(s.keyID)) epoch \(s.keyEpoch)")
            }
            return
        }
        let seal: SealView?
        do { seal = try StoreHead.seal(device: target) } catch { throw Exit.fail(error) }
        guard let seal else {
            Exit.say("error: \(device) has no committed segment to take a head from")
            throw ExitCode(Exit.damaged)
        }
        let head = SignedHead(seal: seal)
        if json {
            print(head.json)
        } else {
            let s = seal.statement
            print("device \(Hex.encode(s.deviceID)) segment \(s.segmentID) commit \(s.commitID) rollback_ctr \(s.rollbackCtr)")
            print("hash_head \(Hex.encode(s.segmentHash))")
            print("signed \(head.algorithm?.name ?? "unknown") by key \(Hex.encode(s.keyID)) epoch \(s.keyEpoch)")
        }
    }
}
