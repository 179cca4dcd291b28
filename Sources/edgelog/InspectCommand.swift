import ArgumentParser
import EdgelogCore
import EdgelogLinux
import EdgelogRuntime
import EdgelogSeal
import EdgelogStore

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a store's evidence state and what recovery would do. Never writes.",
        discussion: """
            Reads both metadata slots and the uncommitted tail, as recovery does, without changing a \
            byte. --verify also reads every committed segment and exits 3 if any fails validation.

            Example: edgelog inspect --device var/store.img --json
            """
    )

    @Option(help: "Store device or file.")
    var device: String

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    @Flag(help: "Also read and check every committed segment.")
    var verify = false

    func run() throws {
        if let (target, _) = try openPackedReadOnly(device) {
            try inspectPacked(target)
            return
        }
        let (target, a) = try openReadOnly(device)
        var damage: [SegmentDamage] = []
        var checkedRecords = 0
        if verify {
            damage = StoreReader.forEachRecord(device: target, analysis: a) { _, _ in checkedRecords += 1 }
        }
        let m = a.state
        let g = m.geometry
        let slotStatus: [String] = (0..<2).map { slot in
            if slot == a.chosenSlot { return "chosen" }
            if let p = a.slotProblems.first(where: { $0.slot == slot }) { return "invalid: \(p.problem)" }
            if a.passedOver.contains(slot) { return "passed over: its newest segment does not check" }
            return "valid, older"
        }
        // The metadata is not signed: each number is shown with whether it agrees with the head
        // segment's seal (FORMAT.md 9 item 4). inspect has no keys, so the seal's own signature is
        // edgelog verify's to check; fields no seal carries are labelled as such.
        let mismatches = a.headSeal.map { m.mismatches(against: $0.statement, tailGivenUp: a.tailLost.count) } ?? []
        let sealCheck = m.ringIsEmpty ? "nothing committed yet"
            : a.headSeal == nil ? "NOT CHECKED: the head segment is not readable, so no seal vouches for these numbers"
            : mismatches.isEmpty ? "agrees with the head segment's seal (its signature is checked by edgelog verify)"
            : "CONTRADICTS the head segment's seal: " + mismatches.map(\.description).joined(separator: "; ")
        let unsealed = "generation, clean_flag, verify_stat, fw_ver_hash, boot_id, the time fields but clock_steps"
        let algorithm = SignatureAlgorithm(rawValue: m.sigAlg)
        let signing = m.ringIsEmpty ? "nothing committed yet"
            : m.sigAlg == 0 ? "UNSIGNED (hash chain only; ingest ran with --unsigned)"
            : "signed \(algorithm?.name ?? "algorithm \(m.sigAlg)") by key \(hex(m.keyID)) epoch \(m.keyEpoch), key in \(KeySource(rawValue: m.keySrc)?.name ?? "?")"
                + (algorithm == .hmacSHA256 ? " (HMAC: integrity for holders of the secret, not origin)" : "")
        if json {
            var o = JSONObject()
            o.add("device", .string(device))
            o.add("format_version", .uint(UInt64(Layout.formatVersion)))
            o.add("store_uuid", .string(hex(m.storeUUID)))
            o.add("store_size", .uint(g.storeSize))
            o.add("sector_size", .uint(UInt64(clamping: g.sectorSize)))
            o.add("segment_size", .uint(UInt64(clamping: g.segmentSize)))
            o.add("ring_slots", .uint(UInt64(clamping: g.ringSlots)))
            o.add("chosen_slot", .string(Layout.slotName(a.chosenSlot)))
            o.add("generation", .uint(a.chosenGeneration))
            o.add("slot_a", .string(slotStatus[0]))
            o.add("slot_b", .string(slotStatus[1]))
            o.add("commit_id", .uint(m.commitID))
            o.add("head_segment_id", .uint(m.headSegmentID))
            o.add("head_slot", .uint(UInt64(clamping: m.headSlot)))
            o.add("tail_segment_id", .uint(m.tailSegmentID))
            o.add("tail_slot", .uint(UInt64(clamping: m.tailSlot)))
            o.add("segments", .uint(m.segmentCount))
            o.add("wrap_count", .uint(UInt64(m.wrapCount)))
            o.add("clean_flag", .bool(m.clean))
            o.add("unexp_rst", .uint(UInt64(m.unexpRst)))
            o.add("bo_event", .uint(UInt64(m.boEvent)))
            o.add("ecc_err_cnt", .uint(UInt64(m.eccErrCnt)))
            o.add("verify_stat", .uint(UInt64(m.verifyStat)))
            o.add("mono_hwm", .uint(m.monoHWM))
            o.add("uplink_cursor", .uint(m.uplinkCursor))
            o.add("records_total", .uint(m.recordsTotal))
            o.add("dropped_total", .uint(m.droppedTotal))
            o.add("lost_total", .uint(m.lostTotal))
            o.add("bad_blocks", .raw("[" + m.badBlocks.map { "{\"slot\":\($0.slot),\"reason\":\($0.reason.rawValue),\"segment_id\":\($0.segmentID)}" }.joined(separator: ",") + "]"))
            o.add("device_id", .string(hex(m.deviceID)))
            o.add("signed", .bool(m.sigAlg != 0))
            o.add("sig_alg", .string(algorithm?.name ?? String(m.sigAlg)))
            o.add("key_id", .string(hex(m.keyID)))
            o.add("key_epoch", .uint(UInt64(m.keyEpoch)))
            o.add("key_src", .string(KeySource(rawValue: m.keySrc)?.name ?? String(m.keySrc)))
            o.add("hash_head", .string(hex(m.hashHead)))
            o.add("rollback_ctr", .uint(m.rollbackCtr))
            o.add("fw_ver_hash", .string(hex(m.fwVerHash)))
            o.add("boot_seq", .uint(UInt64(m.bootSeq)))
            o.add("boot_id", .string(hex(m.bootID)))
            o.add("clock_steps", .uint(UInt64(m.time.clockSteps)))
            o.add("largest_step_ns", .uint(m.time.largestStepNs))
            o.add("unsync_ns", .uint(m.time.unsyncNs))
            o.add("last_sync_wall_ns", m.time.lastSyncWallNs == 0 ? .null : .int(m.time.lastSyncWallNs))
            o.add("rtc_offset_ns", m.time.rtcState == .read ? .int(m.time.rtcOffsetNs) : .null)
            o.add("rtc", .string(TimeText.rtc(m.time.rtcState)))
            o.add("metadata_check", .string(sealCheck))
            o.add("contradicted_fields", .raw("[" + mismatches.map { "\"\(jsonEscaped($0.field))\"" }.joined(separator: ",") + "]"))
            o.add("unsealed_fields", .raw("[\"generation\",\"clean_flag\",\"verify_stat\",\"fw_ver_hash\",\"boot_id\",\"largest_step_ns\",\"unsync_ns\",\"last_sync_wall_ns\",\"rtc_offset_ns\"]"))
            o.add("sources", .raw("[" + m.sources.map { "{\"name\":\"\($0.name)\",\"last_seq\":\($0.lastSeq)}" }.joined(separator: ",") + "]"))
            var r = JSONObject()
            r.add("needed", .bool(a.needsRepair))
            r.add("unclean_shutdown", .bool(a.uncleanShutdown))
            r.add("segments_adopted", .uint(UInt64(clamping: a.adopted.count)))
            r.add("torn_segment_id", a.torn.map { .uint($0.segmentID) } ?? .null)
            r.add("records_readable", .uint(UInt64(clamping: a.torn?.readableCount ?? 0)))
            r.add("bytes_quarantined", .uint(UInt64(clamping: a.torn?.quarantinedBytes ?? 0)))
            r.add("tail_lost", .uint(UInt64(clamping: a.tailLost.count)))
            r.add("read_errors", .uint(UInt64(clamping: a.readErrors)))
            r.add("verify_stat", .uint(UInt64(a.verifyStat)))
            r.add("summary", .string(a.recoverySummary))
            o.add("recovery", .raw(r.text))
            if verify {
                o.add("verified_records", .uint(UInt64(clamping: checkedRecords)))
                o.add("damaged_segments", .raw("[" + damage.map { "{\"segment_id\":\($0.segmentID),\"slot\":\($0.slot),\"byte_offset\":\($0.byteOffset),\"reason\":\"\(jsonEscaped($0.reason))\"}" }.joined(separator: ",") + "]"))
            }
            print(o.text)
        } else {
            print("store        \(device): format \(Layout.formatVersion), \(g.storeSize) bytes, \(g.ringSlots) segments of \(g.segmentSize) bytes, \(g.sectorSize)-byte sectors")
            print("identity     store \(hex(m.storeUUID)); device \(hex(m.deviceID))")
            print("trust        \(signing)")
            print("             hash_head \(hex(m.hashHead)); rollback_ctr \(m.rollbackCtr); last writer's firmware \(hex(m.fwVerHash))")
            print("checked      metadata \(sealCheck); not in any seal: \(unsealed)")
            print("metadata     slot A \(slotStatus[0]); slot B \(slotStatus[1]); generation \(a.chosenGeneration)")
            if m.ringIsEmpty {
                print("commits      none yet")
            } else {
                print("commits      last commit \(m.commitID); segments \(m.tailSegmentID)...\(m.headSegmentID) in slots \(m.tailSlot)...\(m.headSlot); ring wrapped \(m.wrapCount) time(s)")
            }
            print("records      \(m.recordsTotal) committed; \(m.droppedTotal) dropped before commit; \(m.lostTotal) lost to ring overwrite")
            print("shutdown     \(m.clean ? "clean" : "NOT clean (a writer has it open, or it lost power)") (clean_flag: not sealed); unexpected resets so far: \(m.unexpRst)")
            print("health       read/CRC errors \(m.eccErrCnt); bad slots \(m.badBlocks.count); brownouts \(m.boEvent); verify_stat 0x\(String(m.verifyStat, radix: 16)) (not sealed)")
            print("time         \(TimeText.health(m)) (only clock_steps is sealed)")
            print("uplink       oldest segment not acknowledged upstream: \(m.uplinkCursor)")
            print("sources      " + (m.sources.isEmpty ? "none" : m.sources.map { "\($0.name) (last seq \($0.lastSeq))" }.joined(separator: ", ")))
            print("recovery     " + (a.needsRepair ? "on next open: " : "") + a.recoverySummary)
            if verify {
                print("verify       \(checkedRecords) records read; " + (damage.isEmpty ? "every committed segment checks" : "\(damage.count) damaged segment(s):"))
                for d in damage { print("             \(d)") }
            }
        }
        if !damage.isEmpty { throw ExitCode(Exit.damaged) }
    }
}

/// The time health line of `inspect` (from the metadata the writer keeps).
enum TimeText {
    static func rtc(_ state: TimeStats.RTCState) -> String {
        switch state {
        case .neverRead: "not read yet"
        case .read: "read"
        case .absent: "none on this system"
        }
    }

    static func duration(_ ns: UInt64) -> String {
        if ns < 1_000_000 { return "\(ns / 1000) us" }
        if ns < 10_000_000_000 { return "\(ns / 1_000_000) ms" }
        let s = ns / 1_000_000_000
        return s < 7200 ? "\(s) s" : "\(s / 3600) h"
    }

    static func health(_ m: Metadata) -> String {
        let t = m.time
        var parts = ["boot \(m.bootSeq)", "\(t.clockSteps) clock step(s)"]
        if t.clockSteps > 0 { parts.append("largest \(duration(t.largestStepNs))") }
        parts.append("unsynchronized for \(duration(t.unsyncNs)) so far")
        parts.append(t.lastSyncWallNs == 0 ? "never seen synchronized" : "last synchronized at wall \(t.lastSyncWallNs)")
        switch t.rtcState {
        case .read: parts.append("RTC offset \(t.rtcOffsetNs / 1_000_000) ms")
        case .absent: parts.append("no RTC")
        case .neverRead: break
        }
        return parts.joined(separator: "; ")
    }
}

extension InspectCommand {
    /// Format 6 (docs/FORMAT.md appendix A).
    func inspectPacked(_ target: FileBlockDevice) throws {
        let i: PackedInspection
        do { i = try PackedInspection.read(device: target) } catch { throw Exit.fail(PackedEvidenceStore.storeError(error, device: target)) }
        var damage: [FrameDamage] = []
        var checkedRecords = 0
        if verify { damage = i.history.forEachFrame(device: target) { _, f in checkedRecords += f.records.count } }
        let h = i.history, m = i.chosen, g = m.geometry
        let slotStatus: [String] = (0..<2).map { slot in
            if slot == h.recovery.metadataSlot { return "chosen" }
            guard let s = i.slots[slot] else { return "invalid" }
            return s.generation > m.generation ? "passed over: its head frame is not in the ring" : "valid, older"
        }
        let sealCheck: String
        switch (m.headFrameID, i.mismatches) {
        case (0, _): sealCheck = "nothing committed yet"
        case (_, nil): sealCheck = "NOT CHECKED: the frame the metadata names is not in the ring, so no sealed state vouches for these numbers"
        case (_, let found?) where found.isEmpty:
            sealCheck = "agrees with the sealed state of frame \(m.headFrameID) (its signature is checked by edgelog verify)"
        case (_, let found?): sealCheck = "CONTRADICTS the sealed state of frame \(m.headFrameID): " + found.map(\.description).joined(separator: "; ")
        }
        let key = i.headHeader
        let signing: String
        if let key {
            signing = key.sigAlg == .unsigned ? "UNSIGNED (chain only; the writer ran with --unsigned)"
                : "signed \(key.sigAlg.name) by key \(hex(key.keyID)) epoch \(key.keyEpoch), key in \(KeySource(rawValue: key.keySrc)?.name ?? "?")"
        } else {
            signing = "nothing committed yet"
        }
        let segments = h.headFrameID == 0 || h.tailSegmentID > h.headSegmentID ? 0 : h.headSegmentID - h.tailSegmentID + 1
        if json {
            var o = JSONObject()
            o.add("device", .string(device))
            o.add("format_version", .uint(UInt64(PackedMetadata.formatVersion)))
            o.add("store_uuid", .string(hex(m.storeUUID)))
            o.add("store_size", .uint(g.storeSize))
            o.add("sector_size", .uint(UInt64(clamping: g.sectorSize)))
            o.add("segment_size", .uint(UInt64(clamping: g.segmentSize)))
            o.add("ring_slots", .uint(UInt64(clamping: g.ringSlots)))
            o.add("chosen_slot", .string(Layout.slotName(h.recovery.metadataSlot)))
            o.add("generation", .uint(m.generation))
            o.add("slot_a", .string(slotStatus[0]))
            o.add("slot_b", .string(slotStatus[1]))
            o.add("head_frame_id", .uint(h.headFrameID))
            o.add("head_segment_id", .uint(h.headSegmentID))
            o.add("head_slot", .uint(UInt64(clamping: h.headSlot)))
            o.add("tail_segment_id", .uint(h.tailSegmentID))
            o.add("tail_slot", .uint(UInt64(clamping: h.tailSlot)))
            o.add("segments", .uint(segments))
            o.add("wrap_count", .uint(UInt64(h.wrapCount)))
            o.add("clean_flag", .bool(m.clean))
            o.add("unexp_rst", .uint(UInt64(m.unexpRst)))
            o.add("bo_event", .uint(UInt64(h.state.boEvent)))
            o.add("ecc_err_cnt", .uint(UInt64(h.state.eccErrCnt)))
            o.add("verify_stat", .uint(UInt64(m.verifyStat)))
            o.add("mono_hwm", .uint(h.state.monoHWM))
            o.add("uplink_cursor", .uint(h.state.uplinkCursor))
            o.add("records_total", .uint(h.state.recordsTotal))
            o.add("dropped_total", .uint(h.state.droppedTotal))
            o.add("lost_total", .uint(h.state.lostTotal))
            o.add("bad_slots", .raw("[" + h.state.tables.badSlots.map { "{\"slot\":\($0.slot),\"reason\":\($0.reason),\"segment_id\":\($0.segmentID)}" }.joined(separator: ",") + "]"))
            o.add("device_id", .string(hex(m.deviceID)))
            o.add("signed", .bool(key.map { $0.sigAlg != .unsigned } ?? false))
            o.add("sig_alg", .string(key?.sigAlg.name ?? "unsigned"))
            o.add("key_id", .string(hex(key?.keyID ?? [UInt8](repeating: 0, count: 16))))
            o.add("key_epoch", .uint(UInt64(key?.keyEpoch ?? 0)))
            o.add("hash_head", .string(hex(h.headHash)))
            o.add("rollback_ctr", .uint(m.rollbackCtr))
            o.add("fw_ver_hash", .string(hex(key?.fwVerHash ?? [UInt8](repeating: 0, count: 32))))
            o.add("boot_seq", .uint(UInt64(m.bootSeq)))
            o.add("boot_id", .string(hex(m.bootID)))
            o.add("clock_steps", .uint(UInt64(h.state.clockSteps)))
            o.add("largest_step_ns", .uint(m.time.largestStepNs))
            o.add("unsync_ns", .uint(m.time.unsyncNs))
            o.add("last_sync_wall_ns", m.time.lastSyncWallNs == 0 ? .null : .int(m.time.lastSyncWallNs))
            o.add("rtc_offset_ns", m.time.rtcState == .read ? .int(m.time.rtcOffsetNs) : .null)
            o.add("rtc", .string(TimeText.rtc(m.time.rtcState)))
            o.add("metadata_check", .string(sealCheck))
            o.add("contradicted_fields", .raw("[" + (i.mismatches ?? []).map { "\"\($0.field)\"" }.joined(separator: ",") + "]"))
            o.add("unsealed_fields", .raw("[\"generation\",\"clean_flag\",\"verify_stat\",\"boot_id\",\"largest_step_ns\",\"unsync_ns\",\"last_sync_wall_ns\",\"rtc_offset_ns\",\"last_offset_ns\",\"format_wall_ns\"]"))
            o.add("sources", .raw("[" + h.state.tables.sources.map { "{\"name\":\"\($0.name)\",\"last_seq\":\($0.lastSeq)}" }.joined(separator: ",") + "]"))
            var r = JSONObject()
            r.add("needed", .bool(i.needsRecovery))
            r.add("unclean_shutdown", .bool(!h.recovery.cleanBefore))
            r.add("frames_adopted", .uint(UInt64(clamping: h.recovery.framesAdopted)))
            r.add("segments_adopted", .uint(UInt64(clamping: h.recovery.segmentsAdopted)))
            r.add("torn", .bool(h.recovery.torn))
            r.add("tail_lost", .uint(UInt64(clamping: h.recovery.tailsGivenUp)))
            r.add("refused_frame_id", h.recovery.refusedFrameID.map { .uint($0) } ?? .null)
            r.add("summary", .string(i.recoverySummary))
            o.add("recovery", .raw(r.text))
            if verify {
                o.add("verified_records", .uint(UInt64(clamping: checkedRecords)))
                o.add("damaged_segments", .raw("[" + damage.map { "{\"segment_id\":\($0.segmentID),\"slot\":\($0.slot),\"byte_offset\":\($0.byteOffset),\"reason\":\"\(jsonEscaped($0.reason))\"}" }.joined(separator: ",") + "]"))
            }
            print(o.text)
        } else {
            print("store        \(device): format 6, \(g.storeSize) bytes, \(g.ringSlots) segments of \(g.segmentSize) bytes, \(g.sectorSize)-byte sectors")
            print("identity     store \(hex(m.storeUUID)); device \(hex(m.deviceID))")
            print("trust        \(signing)")
            print("             hash_head \(hex(h.headHash)); rollback_ctr \(m.rollbackCtr); head segment's firmware \(hex(key?.fwVerHash ?? []))")
            print("checked      metadata \(sealCheck); not in any seal: generation, clean_flag, verify_stat, boot_id, the time fields but clock_steps")
            print("metadata     slot A \(slotStatus[0]); slot B \(slotStatus[1]); generation \(m.generation)")
            print(h.headFrameID == 0 ? "commits      none yet"
                : "commits      last frame \(h.headFrameID); segments \(h.tailSegmentID)...\(h.headSegmentID) in slots \(h.tailSlot)...\(h.headSlot); ring wrapped \(h.wrapCount) time(s)")
            print("records      \(h.state.recordsTotal) committed; \(h.state.droppedTotal) dropped before commit; \(h.state.lostTotal) lost to ring overwrite")
            print("shutdown     \(m.clean ? "clean" : "NOT clean (a writer has it open, or it lost power)") (clean_flag: not sealed); unexpected resets so far: \(m.unexpRst)")
            print("health       read errors \(h.state.eccErrCnt); bad slots \(h.state.tables.badSlots.count); brownouts \(h.state.boEvent); verify_stat 0x\(String(m.verifyStat, radix: 16)) (not sealed)")
            print("uplink       first frame not acknowledged upstream: \(h.state.uplinkCursor)")
            print("sources      " + (h.state.tables.sources.isEmpty ? "none" : h.state.tables.sources.map { "\($0.name) (last seq \($0.lastSeq))" }.joined(separator: ", ")))
            print("recovery     " + (i.needsRecovery ? "on next open: " : "") + i.recoverySummary)
            if verify {
                print("verify       \(checkedRecords) records read; " + (damage.isEmpty ? "the history reads to its head" : "the history stops short:"))
                for d in damage { print("             \(terminalSafe(d.description))") }
            }
        }
        if !damage.isEmpty { throw ExitCode(Exit.damaged) }
    }
}

