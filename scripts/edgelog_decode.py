#!/usr/bin/env python3
"""Independent decoder for the edgelog on-disk format (format version 5).

Written from docs/FORMAT.md alone, without looking at the Swift sources, so
that it can catch disagreements between the spec and the engine.

Usage:
    edgelog_decode.py STORE_PATH [--format jsonl|csv] [--since-commit N]
                      [--wall raw|corrected] [--inspect]
    edgelog_decode.py --frames FILE        (test only: format 6 frames)
    edgelog_decode.py --segment FILE --sector-size 512|4096
                                           (test only: one format 6 segment)
    edgelog_decode.py --packed-store IMAGE (test only: a format 6 store)

Default output is what FORMAT.md section 7 says `edgelog export` prints, for
the committed records of section 5.  `--inspect` prints the chosen metadata
slot and the scan result as one JSON object instead; it only reads the
segments the slot choice and the forward scan need (it does not re-verify
every committed segment).  Its "unchecked" key lists the printed metadata
fields that are not backed by the head segment's seal (section 2: "one that
a reader prints unchecked is labelled so"): every field the seal does not
carry, and every sealed one that differs from the head's seal or has no
valid head to compare with.  The decoder checks no signature, so "backed"
means only "agrees with the sealed statement"; scripts/edgelog_verify.py
says who wrote it.

Every line carries, after boot_ns, the record's boot_seq, time_flags,
maxerror_us, esterror_us and last_sync_ns: maxerror_us and esterror_us
print null for 0xFFFFFFFF (no sync sample), last_sync_ns null for 0 (no
sync known); in CSV a null is an empty field.

Payloads (section 7): a payload that is a "printable payload" (one JSON
object per RFC 8259, nothing before or after it, not even a space, every
value inside at most 63 objects or arrays with the outer object counting
as one, valid UTF-8 without C0, DEL or C1 controls, without a raw U+2028
or U+2029 and without a raw bidirectional control: U+061C, U+200E, U+200F,
U+202A..U+202E, U+2066..U+2069; a \\u escape of one is plain text) is
printed as stored; any other is printed as
`"payload":null,"payload_hex":"HEX"` (JSON lines) or the quoted text
`hex:HEX` (CSV).  So 63 nested objects whose innermost holds a scalar
member are printable and 64 are not; the nesting rule is
about values, so an empty object or array inside 63 containers (the 64th
container, holding no value) is printable, read literally.  RFC 8259's
grammar is checked, not the meaning of \\u escapes (a lone surrogate
escape is accepted) and not duplicate names (accepted).  The check is
iterative, so a deeply nested payload costs time linear in its length and
never recursion.

CSV: the source and the payload cells are quoted ("the source is
quoted"), each " doubled, and a quoted cell starting with = + - @ tab or
CR gets a ' before that character inside the quotes.  The type cell is
the bare name or number, as before.

`--wall corrected` (section 7) adds wall_corrected_ns after wall_ns.  Per
boot (the record's boot_seq), the reference offset is wall_ns - boot_ns of
the last record of that boot with `synced` set and `wall_untrusted` clear
in its time_flags, or, when there is none, of the last record of that boot;
wall_corrected_ns = boot_ns + reference offset, wrapped to a signed 64-bit
value as FORMAT.md says ("the arithmetic wraps at 64 bits"; signed because
wall_ns and boot_ns are i64).  Choices where FORMAT.md leaves room:
- the boots and their last records are taken from all the records export
  prints (every committed segment it does not report as damaged, not only
  those that --since-commit keeps), so --since-commit filters lines but
  never changes a corrected value;
- "boot" is the 16-bit boot_seq value as stored, whatever records lie
  between two records with that value;
- time_flags prints the stored 16-bit number, bits FORMAT.md does not
  define included ("the number").

The decoder checks what a power cut can do (segment validity, section 3.4,
which includes commit_id equal to segment_id and a well-formed seal: magic
EDGESIG2, sig_alg 0..3 with its own sig_len, seal_len 320 + sig_len, the
statement repeating the header and its store_uuid), like recovery the
SHA-256 and the prev_hash chain of a segment before it adopts it
(section 5 step 3; applied_metadata() applies the adopted segments to
the chosen slot as step 3 says, for the verifier's metadata check;
--inspect prints the chosen slot as read), and, as section 5 step 4 says,
prints only committed segments whose hash matches their seal and whose
prev_hash is the hash of the segment before them when that one was
printed (segment 1: zero); every other one is reported on stderr as
damaged.  It does not check signatures: that is scripts/edgelog_verify.py
(section 9), which reuses the parsing below so that there is one Python
view of the format.  Evidence payloads are printed as stored and never
interpreted here: a gap record's lost_records, first_mono and last_mono may
be null (section 4: the writer states counts only of segments it can show
are its own), and that is printed like any other printable payload.

Test only: `edgelog_decode.py --frames FILE` decodes a container of
consecutive frames of one format 6 segment (FORMAT.md appendix A, the
record block and its deflate encoding; no store holds it yet).  FILE is
ASCII `EDGEFRM1`, then frames back to back, each u8 encoding, 3 reserved
zero bytes, u32 record_count, u32 block_len, u32 stored_len, then
stored_len stored bytes.  It prints one JSON line per record,
{"frame":I,"type":T,"source":"S","seq":N,"mono_ctr":N,"wall_ns":N,
"boot_ns":N,"time_flags":N,"boot_seq":N,"maxerror_us":N,"esterror_us":N,
"last_sync_ns":N,"payload_hex":"HEX"} (raw numbers, i64 fields signed),
and exits 0; at the first frame that is not valid (or a malformed
container) it prints {"frame":I,"error":"..."} instead of that frame's
records and exits 1.  A FILE that cannot be read exits 2.

Test only: `edgelog_decode.py --segment FILE --sector-size N` decodes one
ring slot's bytes (FILE) as a format 6 segment (FORMAT.md appendix A.5 to
A.7): the header, then the frames from header_len on, each on a sector
boundary, until the first position that does not hold a valid frame (the
end of what is committed in the slot, not an error).  It prints JSON lines:
{"kind":"header",...} (the header's fields and its tables before the first
frame, header_hash), then per frame {"kind":"frame","frame_id":N,
"offset":N,"frame_len":N,"deflate":B,"record_count":N,"block_len":N,
"state":[[id,value],...],"frame_hash":"hex","statement":"hex",
"signature":"hex"} (statement: the 352 EDGESIG3 bytes rebuilt as A.7 says;
signatures are printed, not checked) followed by its records as --frames
prints them with "frame" set to the frame id, and last {"kind":"end",
"offset":N,"frames":N,"reason":"..."}: "blank" (an all-zero sector),
"slot_end" (no sector left) or what failed at that offset ("bad_magic",
"flags", "frame_len", "crc_mismatch", "record_count", "block_len",
"state", "block", "records_total", "tables", "frame_id"); exit 0.  A header
that is not valid, or a FILE that is not a whole number of sectors, prints
{"kind":"error","reason":"..."} (reasons "bad_magic", "format_version",
"header_len", "crc_mismatch", "tables_len", "tables", "sig_alg",
"sig_len", "slot_size"; the detail on stderr) and exits 1.  The slot
alone does not name the store, so store_uuid is printed, not checked
(walk_segment() checks it when given the store's).  A FILE that cannot
be read exits 2.

Test only: `edgelog_decode.py --packed-store IMAGE` reads IMAGE as a whole
format 6 store (FORMAT.md appendix A.8 and A.9): both 16 KiB metadata
slots, the slot choice (the newest valid slot whose head frame checks, or
names none; else the newest valid one, its head "missing"), the forward
scan from the head along the chain, the torn-commit rule and the committed
history from the oldest retained segment.  It prints JSON lines: first
{"kind":"metadata","slot":"A"|"B","generation":N,"clean_flag":N,
"head_missing":B,"frames_adopted":N,"segments_adopted":N,"torn":B,
"head_frame_id":N,"head_segment_id":N,"tail_segment_id":N,"tail_slot":N,
"records_total":N,"lost_total":N} (head_* after the forward scan, tail_*
the oldest retained segment, records_total and lost_total the sealed
numbers after the last frame found: its derived state, or the slot's when
no frame was found), then per committed frame in order
{"kind":"frame","segment_id":N,"frame_id":N,"records":N} followed by its
records as --frames prints them ("frame" is the frame id); exit 0.  No
valid metadata slot: {"kind":"error","reason":"not_a_store"}, exit 2.  The
choices made where A.8 and A.9 are silent are listed at the start of the
format 6 store section below.

Exit codes:
    0  success
    2  not a store / no valid metadata slot (also argparse usage errors);
       this includes a truncated store: a slot whose store_size is more
       than the file or device holds is not valid (section 2, "refused as
       truncated"), so an image cut short has no valid slot and is refused
       like `edgelog export` refuses it, not exported as far as it goes
       (when only one slot is too big, that slot is passed over and the
       other one used, like any invalid slot)
    3  one or more committed segments are damaged (reported on stderr,
       skipped, everything else printed)
    5  newer format: either metadata slot has the right magic and a
       format_version above 5, whatever the other slot holds

A metadata slot whose non-empty ring does not fill consecutive good slots
(section 2: tail_slot or head_slot in bad_block_tbl, or next() applied
head_segment_id - tail_segment_id times to tail_slot not giving head_slot)
is not valid, like any other invalid slot: it is passed over, and with no
other valid slot the store is refused (exit 2).  So the committed range of
section 5 always lines up (adoption and a tail given up each move one end
on by next()), and there is no separate "inconsistent ring range" report.
The rule is for a non-empty ring only: an empty ring's tail_slot is not
checked against bad_block_tbl.

A store of format version 1 to 4 is "not a store this version reads": its
slots are not valid (format_version is not 5), so it exits 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import struct
import sys
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

# ---------------------------------------------------------------------------
# Constants (FORMAT.md sections 1-3)
# ---------------------------------------------------------------------------

FORMAT_VERSION = 5

META_MAGIC = b"EDGELOGM"
META_SLOT_SIZE = 4096
META_SLOT_OFFSETS = {"A": 0, "B": 4096}
RING_OFFSET = 8192
BAD_BLOCK_MAX = 64
BAD_BLOCK_TBL_OFFSET = 256
BAD_BLOCK_ENTRY = 16
MASK64 = (1 << 64) - 1
SOURCE_MAX = 32
SOURCE_TBL_OFFSET = 1280
SOURCE_ENTRY = 48
SOURCE_NAME_FIELD = 39
KNOWN_INCOMPAT_FLAGS = 0  # format version 5 defines no incompat bits
MIN_SEGMENT_SIZE = 4096
MAX_SEGMENT_SIZE = 16 * 1024 * 1024
MIN_RING_SLOTS = 4

SEG_MAGIC = b"EDGELOGS"
SEG_HEADER_SIZE = 128
MARKER_MAGIC = b"EDGELOGC"
MARKER_SIZE = 432
MARKER_CRC_OFFSET = 428   # CRC of marker bytes 0..427

# The seal (section 3.5): 384 bytes at marker offset 40; the first 320 are
# the statement the signature covers, the signature field follows.
SEAL_OFFSET = 40
SEAL_AREA = 384
STATEMENT_SIZE = 320
STATEMENT_MAGIC = b"EDGESIG2"
SIG_MAX = 64
# Metadata bounds (section 2): ids and generation below 2^62.
ID_LIMIT = 2**62
TAIL_OFFSET = 104         # metadata tail_segment_id
BAD_BLOCK_COUNT_OFFSET = 176
SOURCE_COUNT_OFFSET = 180
SIG_ALG_NAMES = {0: "unsigned", 1: "ed25519", 2: "ecdsa-p256", 3: "hmac-sha256"}
# sig_len each algorithm produces (section 3.5, sig_len row).
SIG_LEN_FOR_ALG = {0: 0, 1: 64, 2: 64, 3: 32}
KEY_SRC_NAMES = {0: "none", 1: "file", 2: "secure-element", 3: "pkcs11"}
ZERO_HASH = bytes(32)

REC_FIXED = 60          # bytes before the source name (44 up to format 3)
REC_TRAILER = 8         # crc + "RECE"
REC_MIN_LEN = 69        # 60 + 1-byte source + empty payload + 8
REC_END = b"RECE"
SOURCE_NAME_MAX = 39
SOURCE_CHARS = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
# A valid source name starts with a letter or a digit (section 3.2).
SOURCE_FIRST = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")

# Section 7 names types 1 to 20; any other type is printed as its number.
TYPE_NAMES = {1: "data", 2: "gap", 3: "incomplete", 4: "drop", 5: "recovery",
              6: "boot", 7: "clock_step", 8: "key_rotation", 9: "time_state",
              10: "source_fault", 11: "source_recovered", 12: "backpressure", 13: "decimation",
              14: "ingress_drop", 15: "poll_overrun", 16: "rejected_input",
              17: "brownout", 18: "power_restored", 19: "power_budget", 20: "brownout_loop"}
TYPE_GAP, TYPE_INCOMPLETE, TYPE_RECOVERY, TYPE_KEY_ROTATION = 2, 3, 5, 8
TYPE_BOOT, TYPE_CLOCK_STEP, TYPE_TIME_STATE = 6, 7, 9
# Record time_flags (section 3.2, offset 6).
TIME_SYNCED = 1 << 0
TIME_WALL_UNTRUSTED = 1 << 1
TIME_AFTER_STEP = 1 << 2
# Record maxerror_us / esterror_us (offsets 44, 48): this value means the
# writer took no sync sample (printed null); a real error saturates one
# below it.  last_sync_ns (offset 52) 0 means no sync known (null).
NO_SAMPLE_US = 0xFFFFFFFF
NO_SYNC_NS = 0
SECTOR_SIZES = (512, 4096)
BAD_BLOCK_REASONS = (1, 2, 3)  # write error, flush error, read error
HASH_HEAD_OFFSET = 192
HEAD_CRC_OFFSET = 224
TRUST_OFFSET = 2816     # device_id, rollback_ctr, fw_ver_hash, key_id, key_epoch, sig_alg, key_src
ROLLBACK_CTR_OFFSET = 2832
TIME_OFFSET = 2896      # boot_id, boot_seq, clock_steps, largest_step_ns, unsync_ns,
                        # last_sync_wall_ns, rtc_offset_ns, rtc_state
RTC_STATE_NAMES = {0: "never_read", 1: "read", 2: "no_rtc"}

CSV_HEADER = (b"segment_id,commit_id,type,source,seq,mono_ctr,wall_ns,boot_ns,"
              b"boot_seq,time_flags,maxerror_us,esterror_us,last_sync_ns,payload\n")
CSV_HEADER_CORRECTED = (b"segment_id,commit_id,type,source,seq,mono_ctr,wall_ns,"
                        b"wall_corrected_ns,boot_ns,boot_seq,time_flags,maxerror_us,"
                        b"esterror_us,last_sync_ns,payload\n")

EXIT_OK = 0
EXIT_NOT_A_STORE = 2
EXIT_BAD_SEGMENT = 3
EXIT_NEWER_FORMAT = 5
EXIT_FRAME_FAILED = 1   # --frames: a frame (or the container) is not valid;
                        # --segment: the segment header is not valid


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

class DecodeError(Exception):
    """A structure failed validation.

    `offset` is the absolute byte offset in the store of the field that
    failed, so a technician can hexdump the exact spot.  `range_start` is
    where the byte range that holds it starts (segment header, record or
    commit marker): the verifier reports that (section 9, crc_mismatch).
    """

    def __init__(self, reason: str, offset: int, range_start: int | None = None):
        super().__init__(f"{reason} (offset {offset})")
        self.reason = reason
        self.offset = offset
        self.range_start = offset if range_start is None else range_start


class NewerFormatError(Exception):
    """The store was written by a newer format: refuse it (exit 5)."""


# ---------------------------------------------------------------------------
# CRC-32C (Castagnoli), table driven, reflected polynomial 0x82F63B78
# ---------------------------------------------------------------------------

def _make_crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _make_crc_table()


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C: init 0xFFFFFFFF, reflected in/out, final xor 0xFFFFFFFF."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE  # local name: this loop dominates run time on big segments
    for b in bytes(data):
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# Refuse to run with a broken CRC: every validity decision depends on it.
if crc32c(b"123456789") != 0xE3069283:
    raise ImportError("crc32c self-check failed: CRC of '123456789' is not 0xE3069283")


# ---------------------------------------------------------------------------
# Data classes
# ---------------------------------------------------------------------------

@dataclass
class BadBlock:
    slot: int
    reason: int
    segment_id: int


@dataclass
class Source:
    name: str
    last_seq: int


@dataclass
class Metadata:
    slot_name: str
    format_version: int
    incompat_flags: int
    compat_flags: int
    store_uuid: bytes
    generation: int
    store_size: int
    sector_size: int
    segment_size: int
    ring_offset: int
    ring_slots: int
    commit_id: int
    head_segment_id: int
    head_slot: int
    tail_slot: int
    tail_segment_id: int
    wrap_count: int
    clean_flag: int
    unexp_rst: int
    bo_event: int
    ecc_err_cnt: int
    verify_stat: int
    mono_hwm: int
    uplink_cursor: int
    records_total: int
    dropped_total: int
    lost_total: int
    bad_block_count: int
    source_count: int
    format_wall_ns: int
    head_crc: int
    bad_blocks: list[BadBlock] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    # Trust path (format version 2): offset 192 and 2816..2893.
    hash_head: bytes = ZERO_HASH
    device_id: bytes = bytes(16)
    rollback_ctr: int = 0
    fw_ver_hash: bytes = ZERO_HASH
    key_id: bytes = bytes(16)
    key_epoch: int = 0
    sig_alg: int = 0
    key_src: int = 0
    # Time path (format version 3): 2896..2952.
    boot_id: bytes = bytes(16)
    boot_seq: int = 0
    clock_steps: int = 0
    largest_step_ns: int = 0
    unsync_ns: int = 0
    last_sync_wall_ns: int = 0
    rtc_offset_ns: int = 0
    rtc_state: int = 0
    raw: bytes = b""        # the 4096 slot bytes as read (tables_hash is over them)

    @property
    def base(self) -> int:
        """Offset of this metadata slot in the store (0 or 4096)."""
        return META_SLOT_OFFSETS[self.slot_name]

    def slot_offset(self, slot: int) -> int:
        return self.ring_offset + slot * self.segment_size

    @property
    def bad_slots(self) -> frozenset[int]:
        return frozenset(b.slot for b in self.bad_blocks)

    def tables_hash(self) -> bytes:
        """SHA-256 of bad_block_count and source_count (u32 each), the used
        bad_block_tbl entries and the used source-table entries, exactly as
        the slot holds them (section 3.5, tables_hash)."""
        return tables_hash_of(self.raw, self.bad_block_count, self.source_count)


def tables_hash_of(raw: bytes, bad_block_count: int, source_count: int) -> bytes:
    bb_end = BAD_BLOCK_TBL_OFFSET + BAD_BLOCK_ENTRY * bad_block_count
    src_end = SOURCE_TBL_OFFSET + SOURCE_ENTRY * source_count
    return hashlib.sha256(struct.pack("<II", bad_block_count, source_count)
                          + raw[BAD_BLOCK_TBL_OFFSET:bb_end]
                          + raw[SOURCE_TBL_OFFSET:src_end]).digest()


@dataclass
class Record:
    record_len: int
    type: int
    time_flags: int         # offset 6: synced, wall_untrusted, after_step
    seq: int
    mono_ctr: int
    wall_ns: int
    boot_ns: int
    source: bytes
    payload: bytes
    boot_seq: int = 0       # offset 42: the store's boot_seq mod 65536
    # Format version 4: the sync sample in effect at capture.
    maxerror_us: int = NO_SAMPLE_US   # offset 44, u32
    esterror_us: int = NO_SAMPLE_US   # offset 48, u32
    last_sync_ns: int = NO_SYNC_NS    # offset 52, i64 wall time


# The sealed state of a statement (section 3.5, offsets 192..319) that
# section 9 compares between segments and with the metadata, in the order
# of the statement.
SEALED_COUNTERS = ("tail_segment_id", "mono_hwm", "records_total", "lost_total",
                   "dropped_total", "uplink_cursor", "wrap_count", "unexp_rst", "bo_event",
                   "ecc_err_cnt", "clock_steps", "boot_seq")


@dataclass
class Seal:
    """The seal of section 3.5, parsed at its fixed offsets whether or not it
    is well formed (seal_problem says whether it is)."""
    seal_len: int
    statement: bytes        # the 320 bytes the signature covers
    magic: bytes
    device_id: bytes
    segment_id: int
    commit_id: int
    first_mono: int
    last_mono: int
    record_count: int
    key_epoch: int
    key_id: bytes
    rollback_ctr: int
    fw_ver_hash: bytes
    prev_hash: bytes
    segment_hash: bytes
    sig_alg: int
    key_src: int
    sig_len: int
    signature: bytes        # the first min(sig_len, 64) bytes of the signature field
    # Format version 5: the store and the sealed state (offsets 192..319).
    store_uuid: bytes = bytes(16)
    tail_segment_id: int = 0
    mono_hwm: int = 0
    records_total: int = 0
    lost_total: int = 0
    dropped_total: int = 0
    uplink_cursor: int = 0
    wrap_count: int = 0
    unexp_rst: int = 0
    bo_event: int = 0
    ecc_err_cnt: int = 0
    clock_steps: int = 0
    boot_seq: int = 0
    tables_hash: bytes = ZERO_HASH
    tail_slot: int = 0      # offset 312: the ring slot of tail_segment_id after this commit
    ring_slots: int = 0     # offset 316: the metadata's ring_slots


@dataclass
class Segment:
    slot: int
    segment_id: int
    commit_id: int
    wrap_count: int
    record_count: int
    payload_len: int
    first_mono: int
    last_mono: int
    lost_records: int
    dropped_records: int
    body_crc: int
    records: list[Record]
    prev_crc: int = 0  # body_crc of the segment committed before it (header offset 120)
    prev_hash: bytes = ZERO_HASH     # header offset 80
    store_uuid: bytes = bytes(16)
    slot_index: int = 0              # as written in the header (may differ from `slot`)
    seal: Seal | None = None
    computed_hash: bytes = ZERO_HASH  # SHA-256 of header + records, as read
    base: int = 0                    # store offset of the slot

    @property
    def marker_offset(self) -> int:
        return self.base + SEG_HEADER_SIZE + self.payload_len


@dataclass
class ScanResult:
    meta: Metadata                  # the chosen slot, unmodified
    rejected_slots: list[str]       # slots that were not valid
    head_missing: DecodeError | None  # set when no slot's head segment was valid and bound by head_crc
    adopted: int                    # segments adopted by the forward scan
    tail_slot: int                  # after tail moves caused by adoption
    tail_segment_id: int
    last_slot: int                  # last adopted segment, or the chosen head
    last_segment_id: int
    empty: bool                     # no committed segment at all
    committed: list[tuple[int, int]]  # (slot, expected segment id), tail first
    cache: dict[tuple[int, int], Segment] = field(default_factory=dict)
    rejected_errors: dict[str, DecodeError] = field(default_factory=dict)
    stop_slot: int = -1             # where the forward scan stopped ...
    stop_segment_id: int = 0        # ... and the id it expected there
    given_up: int | None = None     # segment id of a tail given up, if any
    adopted_segments: list[Segment] = field(default_factory=list)  # in adoption order
    head_body_crc: int = 0          # h when the scan stopped: the head's body_crc


# ---------------------------------------------------------------------------
# Store access
# ---------------------------------------------------------------------------

class Store:
    """Positioned reads on the store file or device."""

    def __init__(self, fh: BinaryIO):
        self.fh = fh

    def read_at(self, offset: int, size: int) -> bytes:
        self.fh.seek(offset)
        data = self.fh.read(size)
        if len(data) != size:
            # A store image shorter than its geometry is a read error, not a
            # crash: the segment (or slot) there is simply not valid.
            raise DecodeError(f"short read: wanted {size} bytes, got {len(data)}", offset)
        return data

    def read_upto(self, offset: int, size: int) -> bytes:
        """Like read_at, but returns what is there when the store is shorter."""
        self.fh.seek(offset)
        return self.fh.read(size)

    def size(self) -> int:
        """Bytes the device (or image file) holds: the bound a metadata slot's
        store_size must keep to (section 2).  Seeking to the end works for a
        block device too, where stat() says 0."""
        return self.fh.seek(0, os.SEEK_END)


# ---------------------------------------------------------------------------
# Metadata (section 2)
# ---------------------------------------------------------------------------

_META_STRUCT = struct.Struct(
    "<8sHHII4x16sQQIIQI4xQQIIQIIIIIIQQQQQIIq")
_TRUST_STRUCT = struct.Struct("<16sQ32s16sIBB")
_TIME_STRUCT = struct.Struct("<16sIIQQqqB")
assert TIME_OFFSET + _TIME_STRUCT.size == 2953


def parse_metadata(buf: bytes, slot_name: str, base: int,
                   device_size: int | None = None) -> Metadata:
    """Parse and validate one 4096-byte metadata slot.

    device_size: the bytes the device holds; a slot whose store_size is
    more is not valid, "truncated" (section 2).  None: not checked (a slot
    looked at on its own, without its device).

    Raises NewerFormatError when the magic is ours but format_version is
    higher: the layout of a newer slot may differ (even the crc position),
    so the version is trusted on the magic alone.  This is checked even on a
    truncated slot, as long as the magic and version are there.
    """
    if (len(buf) >= 10 and buf[:8] == META_MAGIC
            and struct.unpack_from("<H", buf, 8)[0] > FORMAT_VERSION):
        raise NewerFormatError(f"metadata slot {slot_name} has format_version "
                               f"{struct.unpack_from('<H', buf, 8)[0]}, this reader "
                               f"knows {FORMAT_VERSION}")
    if len(buf) != META_SLOT_SIZE:
        raise DecodeError("metadata slot truncated", base)
    (magic, format_version, slot_size, incompat, compat, uuid, generation,
     store_size, sector_size, segment_size, ring_offset, ring_slots,
     commit_id, head_segment_id, head_slot, tail_slot, tail_segment_id,
     wrap_count, clean_flag, unexp_rst, bo_event, ecc_err_cnt, verify_stat,
     mono_hwm, uplink_cursor, records_total, dropped_total, lost_total,
     bad_block_count, source_count, format_wall_ns) = _META_STRUCT.unpack_from(buf, 0)

    head_crc = struct.unpack_from("<I", buf, HEAD_CRC_OFFSET)[0]
    hash_head = bytes(buf[HASH_HEAD_OFFSET:HASH_HEAD_OFFSET + 32])
    # The trust fields have no validity rule of their own in section 2: a
    # slot is valid or not on the rules below whatever they hold.
    (device_id, rollback_ctr, fw_ver_hash, key_id, key_epoch, sig_alg,
     key_src) = _TRUST_STRUCT.unpack_from(buf, TRUST_OFFSET)
    # Nor do the time fields: they are state for the technician.
    (boot_id, boot_seq, clock_steps, largest_step_ns, unsync_ns, last_sync_wall_ns,
     rtc_offset_ns, rtc_state) = _TIME_STRUCT.unpack_from(buf, TIME_OFFSET)

    if magic != META_MAGIC:
        raise DecodeError("bad metadata magic", base)
    if format_version != FORMAT_VERSION:
        # Lower versions (1 had no trust path, 2 no time path, 3 no sync
        # sample in its records) are not read (FORMAT.md, top).
        raise DecodeError(f"format_version {format_version}: not a store this version "
                          f"reads (format version {FORMAT_VERSION})", base + 8)
    if slot_size != META_SLOT_SIZE:
        raise DecodeError(f"bad slot_size {slot_size}", base + 10)
    stored_crc = struct.unpack_from("<I", buf, 4092)[0]
    if crc32c(buf[:4092]) != stored_crc:
        raise DecodeError("metadata crc mismatch", base + 4092)
    # incompat_flags is checked after the crc so that a torn slot is reported
    # as torn, and only an intact slot from a newer writer as incompatible.
    if incompat & ~KNOWN_INCOMPAT_FLAGS:
        raise DecodeError(f"unknown incompat_flags 0x{incompat:08x}", base + 12)
    if sector_size not in SECTOR_SIZES:
        raise DecodeError(f"bad sector_size {sector_size}", base + 56)
    if ring_offset != RING_OFFSET:
        raise DecodeError(f"bad ring_offset {ring_offset}", base + 64)
    if (segment_size % 4096 != 0 or segment_size < MIN_SEGMENT_SIZE
            or segment_size > MAX_SEGMENT_SIZE):
        raise DecodeError(f"bad segment_size {segment_size}", base + 60)
    if ring_slots < MIN_RING_SLOTS:
        raise DecodeError(f"ring_slots {ring_slots} below {MIN_RING_SLOTS}", base + 72)
    if ring_offset + ring_slots * segment_size > store_size:
        raise DecodeError("ring does not fit in store_size", base + 48)
    if device_size is not None and store_size > device_size:
        # A copy cut short is not a shorter valid store: the slot is refused,
        # and with no other valid slot the reader stops (exit 2).
        raise DecodeError(f"truncated: the slot describes {store_size} bytes, the device "
                          f"has {device_size}", base + 48)
    if head_slot >= ring_slots:
        raise DecodeError(f"head_slot {head_slot} >= ring_slots", base + 96)
    if tail_slot >= ring_slots:
        raise DecodeError(f"tail_slot {tail_slot} >= ring_slots", base + 100)
    if not 1 <= tail_segment_id <= head_segment_id + 1:
        raise DecodeError(f"tail_segment_id {tail_segment_id} not in "
                          f"1..head_segment_id + 1 ({head_segment_id + 1})", base + 104)
    # The bounds that keep every walk and sum of a reader bounded (section 2).
    for name, value, off in (("generation", generation, 40), ("commit_id", commit_id, 80),
                             ("head_segment_id", head_segment_id, 88),
                             ("tail_segment_id", tail_segment_id, 104),
                             ("mono_hwm", mono_hwm, 136),
                             ("rollback_ctr", rollback_ctr, ROLLBACK_CTR_OFFSET)):
        if value >= ID_LIMIT:
            raise DecodeError(f"{name} {value} is not below 2^62", base + off)
    # One segment per commit: commit_id equals head_segment_id (section 2).
    if commit_id != head_segment_id:
        raise DecodeError(f"commit_id {commit_id} is not head_segment_id {head_segment_id}",
                          base + 80)
    # clean_flag is 0 (a writer has it open) or 1 (closed cleanly); any
    # other value makes the slot invalid (section 2).
    if clean_flag not in (0, 1):
        raise DecodeError(f"clean_flag {clean_flag} is not 0 or 1", base + 116)
    # Every commit leaves a segment in the ring: it is empty only while
    # nothing was committed (head_segment_id 0, tail_segment_id 1).
    if head_segment_id != 0 and tail_segment_id > head_segment_id:
        raise DecodeError(f"empty ring (tail_segment_id {tail_segment_id}) with "
                          f"head_segment_id {head_segment_id}", base + 104)
    if bad_block_count > BAD_BLOCK_MAX:
        raise DecodeError(f"bad_block_count {bad_block_count} > {BAD_BLOCK_MAX}", base + 176)
    if source_count > SOURCE_MAX:
        raise DecodeError(f"source_count {source_count} > {SOURCE_MAX}", base + 180)

    bad_blocks = []
    seen_slots: set[int] = set()
    for i in range(bad_block_count):
        off = BAD_BLOCK_TBL_OFFSET + i * BAD_BLOCK_ENTRY
        slot, reason, segment_id = struct.unpack_from("<IH2xQ", buf, off)
        if slot >= ring_slots:
            raise DecodeError(f"bad_block_tbl entry {i}: slot {slot} >= ring_slots",
                              base + off)
        if reason not in BAD_BLOCK_REASONS:
            raise DecodeError(f"bad_block_tbl entry {i}: reason {reason} not 1, 2 or 3",
                              base + off + 4)
        if slot in seen_slots:
            raise DecodeError(f"bad_block_tbl entry {i}: slot {slot} listed twice", base + off)
        seen_slots.add(slot)
        bad_blocks.append(BadBlock(slot, reason, segment_id))
    if ring_slots - len(seen_slots) < 2:
        raise DecodeError(f"bad_block_tbl leaves {ring_slots - len(seen_slots)} of "
                          f"{ring_slots} ring slots, fewer than 2", base + 176)
    if (tail_segment_id <= head_segment_id
            and head_segment_id - tail_segment_id + 1 > ring_slots - bad_block_count):
        raise DecodeError(f"segments {tail_segment_id}..{head_segment_id} do not fit in "
                          f"{ring_slots - bad_block_count} good ring slots", base + 104)
    # ... in consecutive good slots: neither tail_slot nor head_slot is in
    # bad_block_tbl, and next() applied head_segment_id - tail_segment_id
    # times to tail_slot gives head_slot (section 2).  The count is below
    # the good slots (checked just above), so the walk is bounded.
    if tail_segment_id <= head_segment_id:
        if tail_slot in seen_slots:
            raise DecodeError(f"tail_slot {tail_slot} is in bad_block_tbl", base + 100)
        if head_slot in seen_slots:
            raise DecodeError(f"head_slot {head_slot} is in bad_block_tbl", base + 96)
        s = tail_slot
        for _ in range(head_segment_id - tail_segment_id):
            s = (s + 1) % ring_slots
            while s in seen_slots:
                s = (s + 1) % ring_slots
        if s != head_slot:
            raise DecodeError(f"segments {tail_segment_id}..{head_segment_id} from tail_slot "
                              f"{tail_slot} end in slot {s}, not in head_slot {head_slot}",
                              base + 96)

    sources = []
    seen_names: set[bytes] = set()
    for i in range(source_count):
        off = SOURCE_TBL_OFFSET + i * SOURCE_ENTRY
        name_len = buf[off]
        if not 1 <= name_len <= SOURCE_NAME_FIELD:
            raise DecodeError(f"source table entry {i}: name_len {name_len} not in "
                              f"1..{SOURCE_NAME_FIELD}", base + off)
        name = bytes(buf[off + 1: off + 1 + name_len])
        if not is_valid_source(name):
            raise DecodeError(f"source table entry {i}: not a valid source name",
                              base + off + 1)
        if name in seen_names:
            raise DecodeError(f"source table entry {i}: name {name.decode()} appears twice",
                              base + off + 1)
        seen_names.add(name)
        last_seq = struct.unpack_from("<Q", buf, off + 40)[0]
        if last_seq >= ID_LIMIT:
            raise DecodeError(f"source table entry {i}: last_seq {last_seq} is not below 2^62",
                              base + off + 40)
        sources.append(Source(name.decode("ascii"), last_seq))

    return Metadata(
        slot_name=slot_name, format_version=format_version,
        incompat_flags=incompat, compat_flags=compat, store_uuid=uuid,
        generation=generation, store_size=store_size, sector_size=sector_size,
        segment_size=segment_size, ring_offset=ring_offset,
        ring_slots=ring_slots, commit_id=commit_id,
        head_segment_id=head_segment_id, head_slot=head_slot,
        tail_slot=tail_slot, tail_segment_id=tail_segment_id,
        wrap_count=wrap_count, clean_flag=clean_flag, unexp_rst=unexp_rst,
        bo_event=bo_event, ecc_err_cnt=ecc_err_cnt, verify_stat=verify_stat,
        mono_hwm=mono_hwm, uplink_cursor=uplink_cursor,
        records_total=records_total, dropped_total=dropped_total,
        lost_total=lost_total, bad_block_count=bad_block_count,
        source_count=source_count, format_wall_ns=format_wall_ns,
        head_crc=head_crc, bad_blocks=bad_blocks, sources=sources,
        hash_head=hash_head, device_id=device_id, rollback_ctr=rollback_ctr,
        fw_ver_hash=fw_ver_hash, key_id=key_id, key_epoch=key_epoch,
        sig_alg=sig_alg, key_src=key_src, boot_id=boot_id, boot_seq=boot_seq,
        clock_steps=clock_steps, largest_step_ns=largest_step_ns, unsync_ns=unsync_ns,
        last_sync_wall_ns=last_sync_wall_ns, rtc_offset_ns=rtc_offset_ns,
        rtc_state=rtc_state, raw=bytes(buf))


def is_valid_source(name: bytes) -> bool:
    """A valid source name (section 3.2): 1 to 39 of A-Z a-z 0-9 . _ -, the
    first a letter or a digit."""
    return (1 <= len(name) <= SOURCE_NAME_MAX and name[0] in SOURCE_FIRST
            and set(name) <= SOURCE_CHARS)


# ---------------------------------------------------------------------------
# Records (section 3.2)
# ---------------------------------------------------------------------------

_REC_STRUCT = struct.Struct("<IHHQQqqHHIIq")
assert _REC_STRUCT.size == REC_FIXED


def parse_records(body: bytes, base: int, payload_len: int, record_count: int,
                  first_mono: int, last_mono: int) -> list[Record]:
    """Parse the records area: `body[0:payload_len]`, at store offset `base`.

    Records are found only by walking record_len from the start, never by
    searching for a magic, so bytes inside a payload that look like a record,
    marker or segment header are never taken for one.

    Every error of a record (it does not parse: length, CRC, end marker,
    source name; a seq or mono_ctr of 2^62 or more; a mono_ctr not above the
    record before it) names that record as its range_start.  When every
    record parses, a record count or a first or last mono_ctr other than the
    header's names the commit marker's start (`base + payload_len`) instead:
    section 9 item 3 reports it there ("the header's record_count,
    first_mono or last_mono disagree").
    """
    records: list[Record] = []
    pos = 0
    while pos < payload_len:
        at = base + pos
        if payload_len - pos < REC_MIN_LEN:
            raise DecodeError(f"{payload_len - pos} trailing bytes, shorter than a record", at, at)
        (record_len, rtype, time_flags, seq, mono, wall_ns, boot_ns,
         source_len, boot_seq, maxerror_us, esterror_us,
         last_sync_ns) = _REC_STRUCT.unpack_from(body, pos)
        if record_len < REC_MIN_LEN:
            raise DecodeError(f"record_len {record_len} below {REC_MIN_LEN}", at, at)
        if record_len > payload_len - pos:
            raise DecodeError(f"record_len {record_len} runs past payload_len", at, at)
        end = pos + record_len
        if body[end - 4:end] != REC_END:
            raise DecodeError("record end marker is not RECE", base + end - 4, at)
        stored_crc = struct.unpack_from("<I", body, end - 8)[0]
        if crc32c(body[pos:end - 8]) != stored_crc:
            raise DecodeError("record crc mismatch", base + end - 8, at)
        if not 1 <= source_len <= SOURCE_NAME_MAX:
            raise DecodeError(f"source_len {source_len} not in 1..{SOURCE_NAME_MAX}", at + 40, at)
        if REC_FIXED + source_len + REC_TRAILER > record_len:
            raise DecodeError("source_len runs past the record", at + 40, at)
        source = bytes(body[pos + REC_FIXED: pos + REC_FIXED + source_len])
        # A valid source name (section 3.2): never a character that could
        # break a JSON string or a CSV cell, never a leading formula sign.
        if not is_valid_source(source):
            raise DecodeError("source is not a valid source name (A-Za-z0-9._-, the first "
                              "a letter or digit)", at + REC_FIXED, at)
        if seq >= ID_LIMIT:
            raise DecodeError(f"seq {seq} is not below 2^62", at + 8, at)
        if mono >= ID_LIMIT:
            raise DecodeError(f"mono_ctr {mono} is not below 2^62", at + 16, at)
        if records and mono <= records[-1].mono_ctr:
            raise DecodeError(f"mono_ctr {mono} does not increase", at + 16, at)
        payload = body[pos + REC_FIXED + source_len: end - REC_TRAILER]
        # time_flags, boot_seq, maxerror_us, esterror_us and last_sync_ns
        # have no validity rule (3.4): a record with any value in them is
        # valid; they are printed and feed --wall corrected.
        records.append(Record(record_len, rtype, time_flags, seq, mono, wall_ns,
                              boot_ns, bytes(source), bytes(payload), boot_seq,
                              maxerror_us, esterror_us, last_sync_ns))
        pos = end

    marker_at = base + payload_len
    if len(records) != record_count:
        raise DecodeError(f"{len(records)} records parsed, header says {record_count}",
                          base - SEG_HEADER_SIZE + 56, marker_at)
    # With zero records there is no first or last record to compare.
    if records:
        if records[0].mono_ctr != first_mono:
            raise DecodeError("first record mono_ctr != header first_mono",
                              base - SEG_HEADER_SIZE + 64, marker_at)
        if records[-1].mono_ctr != last_mono:
            raise DecodeError("last record mono_ctr != header last_mono",
                              base - SEG_HEADER_SIZE + 72, marker_at)
    return records


# ---------------------------------------------------------------------------
# Segments (sections 3.1, 3.3, 3.4)
# ---------------------------------------------------------------------------

_SEG_STRUCT = struct.Struct("<8sHHI16sQQIIIIQQ32sIIII")
_MARKER_STRUCT = struct.Struct("<8sQQIIII")
_STATEMENT_STRUCT = struct.Struct("<8s16sQQQQII16sQ32s32s32sBBH4x"
                                   "16sQQQQQQIIIIII32sII")
assert _STATEMENT_STRUCT.size == STATEMENT_SIZE


def header_names(store: Store, meta: Metadata, slot: int, expected_id: int) -> bool:
    """True when the slot starts with an intact header (magic, version, size, CRC, this
    store's uuid) of segment `expected_id` written to this slot (section 5, step 3)."""
    base = meta.slot_offset(slot)
    header = store.read_upto(base, SEG_HEADER_SIZE)
    if len(header) != SEG_HEADER_SIZE:
        return False
    (magic, version, header_size, _flags, uuid, segment_id, _commit_id,
     slot_index, *_rest, header_crc) = _SEG_STRUCT.unpack(header)
    return (magic == SEG_MAGIC and version == FORMAT_VERSION and header_size == SEG_HEADER_SIZE
            and crc32c(header[:124]) == header_crc and uuid == meta.store_uuid
            and segment_id == expected_id and slot_index == slot)


def slot_has_header_magic(store: Store, meta: Metadata, slot: int) -> bool:
    """Whether the slot starts with the segment header magic at all (section 9:
    a slot without it holds no segment, whatever else is in it)."""
    return store.read_upto(meta.slot_offset(slot), len(SEG_MAGIC)) == SEG_MAGIC


def parse_seal(seal: bytes) -> Seal:
    """Split the 384-byte seal area at the offsets of section 3.5.  No check
    here: seal_problem() decides whether it is well formed."""
    (magic, device_id, segment_id, commit_id, first_mono, last_mono, record_count,
     key_epoch, key_id, rollback_ctr, fw_ver_hash, prev_hash, segment_hash, sig_alg,
     key_src, sig_len, store_uuid, tail_segment_id, mono_hwm, records_total, lost_total,
     dropped_total, uplink_cursor, wrap_count, unexp_rst, bo_event, ecc_err_cnt,
     clock_steps, boot_seq, tables_hash, tail_slot,
     ring_slots) = _STATEMENT_STRUCT.unpack_from(seal, 0)
    sig_field = seal[STATEMENT_SIZE:STATEMENT_SIZE + SIG_MAX]
    return Seal(seal_len=0, statement=bytes(seal[:STATEMENT_SIZE]), magic=magic,
                device_id=device_id, segment_id=segment_id, commit_id=commit_id,
                first_mono=first_mono, last_mono=last_mono, record_count=record_count,
                key_epoch=key_epoch, key_id=key_id, rollback_ctr=rollback_ctr,
                fw_ver_hash=fw_ver_hash, prev_hash=prev_hash, segment_hash=segment_hash,
                sig_alg=sig_alg, key_src=key_src, sig_len=sig_len,
                signature=bytes(sig_field[:min(sig_len, SIG_MAX)]),
                store_uuid=store_uuid, tail_segment_id=tail_segment_id, mono_hwm=mono_hwm,
                records_total=records_total, lost_total=lost_total,
                dropped_total=dropped_total, uplink_cursor=uplink_cursor,
                wrap_count=wrap_count, unexp_rst=unexp_rst, bo_event=bo_event,
                ecc_err_cnt=ecc_err_cnt, clock_steps=clock_steps, boot_seq=boot_seq,
                tables_hash=tables_hash, tail_slot=tail_slot, ring_slots=ring_slots)


def statement_problem(seal: Seal) -> str | None:
    """What a statement needs on its own to be well formed (section 3.4):
    the magic, a known sig_alg and that algorithm's sig_len.  Shared by the
    seal check below and the signed head of section 8."""
    if seal.magic != STATEMENT_MAGIC:
        return "statement magic is not EDGESIG2"
    if seal.sig_alg not in SIG_LEN_FOR_ALG:
        return f"sig_alg {seal.sig_alg} is not 0 to 3"
    if seal.sig_len != SIG_LEN_FOR_ALG[seal.sig_alg]:
        return (f"sig_len {seal.sig_len} is not the {SIG_LEN_FOR_ALG[seal.sig_alg]} of "
                f"{SIG_ALG_NAMES[seal.sig_alg]}")
    return None


def seal_problem(seg: Segment) -> str | None:
    """Why the seal is not well formed in the sense of section 3.4, or None:
    the statement magic, sig_alg 0..3 with its algorithm's sig_len, seal_len
    320 + sig_len, and the statement's segment_id, commit_id, first_mono,
    last_mono, record_count, prev_hash and store_uuid equal to the header's."""
    seal = seg.seal
    assert seal is not None
    problem = statement_problem(seal)
    if problem is not None:
        return problem
    if seal.seal_len != STATEMENT_SIZE + seal.sig_len:
        return f"seal_len {seal.seal_len} is not 320 + sig_len {seal.sig_len}"
    for name in ("segment_id", "commit_id", "first_mono", "last_mono", "record_count",
                 "prev_hash", "store_uuid"):
        if getattr(seal, name) != getattr(seg, name):
            return f"statement {name} differs from the header's"
    return None


def read_segment(store: Store, meta: Metadata, slot: int) -> Segment:
    """Read the segment at the start of ring slot `slot` and check its
    structure: everything of section 3.4 except which store, id and slot it
    names and the seal (parse_segment adds those; the verifier tells them
    apart, section 9).

    The byte ranges are checked in the order they lie in the slot: header,
    records, commit marker.  So the DecodeError's range_start is the first
    failing range, as section 9 item 3 defines it: the slot's start when the
    header itself does not check (magic, format_version, header_size,
    header_crc); else the payload_len field (slot offset 60) when
    payload_len overruns the segment; else the first record that does not
    parse, has a seq or mono_ctr of 2^62 or more, or a mono_ctr not above
    the record before it; else the commit marker's start (the marker,
    body_crc, commit_id, or the header's record_count, first_mono or
    last_mono disagree).  A changed payload byte fails its record before it
    fails body_crc in the marker.
    """
    base = meta.slot_offset(slot)
    header = store.read_at(base, SEG_HEADER_SIZE)
    (magic, version, header_size, _flags, uuid, segment_id, commit_id,
     slot_index, wrap_count, record_count, payload_len, first_mono, last_mono,
     prev_hash, lost_records, dropped_records, prev_crc,
     header_crc) = _SEG_STRUCT.unpack(header)

    if magic != SEG_MAGIC:
        raise DecodeError("bad segment magic", base)
    if version != FORMAT_VERSION:
        raise DecodeError(f"bad segment format_version {version}", base + 8, base)
    if header_size != SEG_HEADER_SIZE:
        raise DecodeError(f"bad header_size {header_size}", base + 10, base)
    if crc32c(header[:124]) != header_crc:
        raise DecodeError("header_crc mismatch", base + 124, base)
    if SEG_HEADER_SIZE + payload_len + MARKER_SIZE > meta.segment_size:
        raise DecodeError(f"payload_len {payload_len} does not fit the segment", base + 60)

    # Header is trustworthy now, so payload_len can size the next read.
    rest = store.read_at(base + SEG_HEADER_SIZE, payload_len + MARKER_SIZE)
    body_records = rest[:payload_len]
    marker = rest[payload_len:]
    records = parse_records(body_records, base + SEG_HEADER_SIZE, payload_len,
                            record_count, first_mono, last_mono)

    mbase = base + SEG_HEADER_SIZE + payload_len
    (mmagic, m_segment_id, m_commit_id, m_record_count, m_payload_len,
     body_crc, seal_len) = _MARKER_STRUCT.unpack_from(marker, 0)
    if mmagic != MARKER_MAGIC:
        raise DecodeError("bad commit marker magic", mbase)
    marker_crc = struct.unpack_from("<I", marker, MARKER_CRC_OFFSET)[0]
    if crc32c(marker[:MARKER_CRC_OFFSET]) != marker_crc:
        raise DecodeError("marker_crc mismatch", mbase + MARKER_CRC_OFFSET, mbase)
    if m_segment_id != segment_id:
        raise DecodeError("marker segment_id differs from header", mbase + 8, mbase)
    if m_commit_id != commit_id:
        raise DecodeError("marker commit_id differs from header", mbase + 16, mbase)
    if m_record_count != record_count:
        raise DecodeError("marker record_count differs from header", mbase + 24, mbase)
    if m_payload_len != payload_len:
        raise DecodeError("marker payload_len differs from header", mbase + 28, mbase)
    if crc32c(header + body_records) != body_crc:
        raise DecodeError("body_crc mismatch", mbase + 32, mbase)
    # One segment per commit: commit_id equals segment_id (section 3.4);
    # section 9 item 3 reports it at the commit marker's start.
    if commit_id != segment_id:
        raise DecodeError(f"commit_id {commit_id} is not segment_id {segment_id}",
                          base + 40, mbase)

    seal = parse_seal(marker[SEAL_OFFSET:SEAL_OFFSET + SEAL_AREA])
    seal.seal_len = seal_len
    return Segment(slot, segment_id, commit_id, wrap_count, record_count,
                   payload_len, first_mono, last_mono, lost_records,
                   dropped_records, body_crc, records, prev_crc,
                   prev_hash=prev_hash, store_uuid=uuid, slot_index=slot_index,
                   seal=seal,
                   # segment_hash covers exactly what body_crc covers (3.5).
                   computed_hash=hashlib.sha256(header + body_records).digest(),
                   base=base)


def parse_segment(store: Store, meta: Metadata, slot: int, expected_id: int) -> Segment:
    """Read and fully validate the segment in ring slot `slot` (section 3.4)."""
    seg = read_segment(store, meta, slot)
    base = seg.base
    if seg.store_uuid != meta.store_uuid:
        raise DecodeError("store_uuid is not this store's", base + 16, base)
    if seg.segment_id != expected_id:
        raise DecodeError(f"segment_id {seg.segment_id}, expected {expected_id}",
                          base + 32, base)
    if seg.slot_index != slot:
        raise DecodeError(f"slot_index {seg.slot_index}, expected {slot}", base + 48, base)
    problem = seal_problem(seg)
    if problem is not None:
        mbase = seg.marker_offset
        raise DecodeError(problem, mbase + SEAL_OFFSET, mbase)
    return seg


# ---------------------------------------------------------------------------
# Slot choice and forward scan (section 5)
# ---------------------------------------------------------------------------

def next_slot(meta: Metadata, s: int) -> int:
    """`next(s)` of section 5: (s + 1) mod ring_slots, skipping bad blocks."""
    bad = meta.bad_slots
    for _ in range(meta.ring_slots):
        s = (s + 1) % meta.ring_slots
        if s not in bad:
            return s
    raise DecodeError("every ring slot is listed in bad_block_tbl", meta.ring_offset)


def prev_slot(meta: Metadata, s: int) -> int:
    """`prev(s)` of section 9: (s - 1) mod ring_slots, skipping bad blocks."""
    bad = meta.bad_slots
    for _ in range(meta.ring_slots):
        s = (s - 1) % meta.ring_slots
        if s not in bad:
            return s
    raise DecodeError("every ring slot is listed in bad_block_tbl", meta.ring_offset)


def read_slots(store: Store) -> tuple[list[Metadata], dict[str, DecodeError]]:
    """Step 1: read both slots. Returns (valid slots, {rejected name: why}).

    A slot describing more bytes than the device holds is rejected as
    "truncated" (section 2), like any other invalid slot.

    Raises NewerFormatError if either slot has our magic and a newer
    format_version, whatever the other slot holds: both slots are always
    read before anything is decided.
    """
    valid: list[Metadata] = []
    rejected: dict[str, DecodeError] = {}
    newer: NewerFormatError | None = None
    device_size = store.size()
    for name, off in META_SLOT_OFFSETS.items():
        try:
            buf = store.read_upto(off, META_SLOT_SIZE)
            valid.append(parse_metadata(buf, name, off, device_size))
        except NewerFormatError as exc:
            newer = newer or exc
        except DecodeError as exc:
            rejected[name] = exc
    if newer is not None:
        raise newer
    return valid, rejected


def choose_slot(store: Store, valid: list[Metadata]
                ) -> tuple[Metadata, Segment | None, DecodeError | None]:
    """Step 2: newest generation first; the first whose head segment is valid
    and has a body_crc equal to the slot's head_crc.

    Returns (chosen slot, its head segment if read, error if no slot's head
    segment was valid and bound to it by head_crc).
    """
    ordered = sorted(valid, key=lambda m: m.generation, reverse=True)
    first_error: DecodeError | None = None
    for meta in ordered:
        if meta.head_segment_id == 0:
            return meta, None, None
        try:
            head = parse_segment(store, meta, meta.head_slot, meta.head_segment_id)
            # head_crc binds the slot to that exact segment: a segment that
            # reused the id and ring slot after this slot's commit was cut is
            # valid, but it is not the one this slot names.
            if head.body_crc != meta.head_crc:
                mbase = (meta.slot_offset(meta.head_slot) + SEG_HEADER_SIZE
                         + head.payload_len)
                raise DecodeError(f"body_crc 0x{head.body_crc:08x} differs from slot "
                                  f"{meta.slot_name} head_crc 0x{meta.head_crc:08x}",
                                  mbase + 32)
            return meta, head, None
        except DecodeError as err:
            if first_error is None:
                first_error = err
    # Neither head segment is valid: the newest slot wins anyway and the
    # missing segment is reported by the caller.
    return ordered[0], None, first_error


def scan(store: Store) -> ScanResult:
    """Steps 1-4 of section 5. Raises DecodeError / NewerFormatError for a non-store."""
    valid, rejected_errors = read_slots(store)
    rejected = list(rejected_errors)
    if not valid:
        why = "; ".join(f"{name}: {exc.reason}" for name, exc in rejected_errors.items())
        raise DecodeError(f"no valid metadata slot ({why})", 0)
    meta, head, head_error = choose_slot(store, valid)

    cache: dict[tuple[int, int], Segment] = {}
    if head is not None:
        cache[(head.slot, head.segment_id)] = head

    # "The ring is empty when tail_segment_id is greater than head_segment_id";
    # head_segment_id 0 means nothing was ever committed.
    empty = meta.head_segment_id == 0 or meta.tail_segment_id > meta.head_segment_id
    tail_slot, tail_id = meta.tail_slot, meta.tail_segment_id
    if empty:
        s, e = meta.tail_slot, meta.tail_segment_id
        last_slot, last_id = -1, 0
    else:
        s, e = next_slot(meta, meta.head_slot), meta.head_segment_id + 1
        last_slot, last_id = meta.head_slot, meta.head_segment_id

    # Step 3: adopt segments whose commit wrote the segment but not the
    # metadata.  Ids are strictly increasing and the ring is finite, so a
    # lap around the ring always ends at a slot holding an older id; the
    # loop is bounded by the ring all the same.
    adopted = 0
    adopted_segments: list[Segment] = []
    h = meta.head_crc
    # "The current head's hash" starts as the chosen slot's hash_head, the
    # way h starts as its head_crc: that is the value the next commit wrote
    # into its prev_hash (section 3.1).
    head_hash = meta.hash_head
    for _ in range(meta.ring_slots):
        try:
            seg = parse_segment(store, meta, s, e)
        except DecodeError:
            break  # where the scan stops: expected, not an error
        # Only a segment chaining onto the current head (prev_crc == h) is
        # adopted: one that followed a since-replaced head is stale.
        if seg.prev_crc != h:
            break
        # Validity is about power cuts; adoption also wants the content the
        # seal vouches for (its segment_hash) and the hash chain, so that a
        # segment nobody committed is never made part of the history.
        if seg.computed_hash != seg.seal.segment_hash or seg.prev_hash != head_hash:
            break
        h = seg.body_crc
        head_hash = seg.computed_hash
        cache[(s, e)] = seg
        adopted += 1
        adopted_segments.append(seg)
        # Only a non-empty ring has a tail segment that can be overwritten;
        # in an empty ring the first adopted segment lands on the tail slot
        # and becomes the tail.
        if not empty and s == tail_slot:
            tail_slot, tail_id = next_slot(meta, tail_slot), tail_id + 1
        empty = False
        last_slot, last_id = s, e
        s, e = next_slot(meta, s), e + 1

    # Step 3, last paragraph: the scan stopped at the tail slot of a full ring,
    # so a cut reclaim was overwriting the tail segment.  If that segment no
    # longer checks as the tail, it is given up and the tail moves on by one.
    # Only after an unclean stop, and only when the slot no longer holds the
    # tail's own intact header: otherwise it is damage, reported, not given up.
    stop_slot, stop_id = s, e
    given_up = None
    if not empty and s == tail_slot and meta.clean_flag != 1:
        try:
            parse_segment(store, meta, tail_slot, tail_id)
        except DecodeError:
            if not header_names(store, meta, tail_slot, tail_id):
                given_up = tail_id
                tail_slot, tail_id = next_slot(meta, tail_slot), tail_id + 1

    # Step 4: tail .. last in ring order.  A valid slot's segments fill
    # consecutive good slots from tail_slot to head_slot (section 2), and
    # adoption and a tail given up each move one end on by next(): the walk
    # from the tail reaches the last segment's slot with its id.
    committed: list[tuple[int, int]] = []
    if not empty:
        s = tail_slot
        for e in range(tail_id, last_id + 1):
            committed.append((s, e))
            s = next_slot(meta, s)

    return ScanResult(meta=meta, rejected_slots=rejected, head_missing=head_error,
                      adopted=adopted, tail_slot=tail_slot, tail_segment_id=tail_id,
                      last_slot=last_slot, last_segment_id=last_id, empty=empty,
                      committed=committed, cache=cache,
                      rejected_errors=rejected_errors, stop_slot=stop_slot,
                      stop_segment_id=stop_id, given_up=given_up,
                      adopted_segments=adopted_segments, head_body_crc=h)


def applied_metadata(result: ScanResult) -> Metadata:
    """The metadata of section 5: the chosen slot with the adopted segments
    applied as each one's commit's metadata write would have (step 3), and
    the tail section 5 computes (moved by adoption and by a tail given up).

    For each adopted segment, in order: head_segment_id, head_slot,
    commit_id, head_crc and hash_head name it; key_id, key_epoch, sig_alg
    and key_src are its statement's; mono_hwm becomes the larger of mono_hwm
    and its last_mono; lost_total and dropped_total grow by its header's
    lost_records and dropped_records; records_total by its data records
    (type 1); each record raises its source's last_seq (a source not in the
    table is appended, in record order, while the table has room);
    wrap_count grows by one when its slot is below head_slot (the head's
    before it); clock_steps and bo_event become its sealed values; unexp_rst,
    ecc_err_cnt, boot_seq, uplink_cursor and rollback_ctr become the larger
    of theirs and its sealed value.  Everything else is the chosen slot's.
    `raw` is the slot's bytes with the source table and source_count so
    changed (tables_hash is computed over them); the other fields of `raw`
    are the slot's as read.  Sums wrap at their field's width (FORMAT.md 5)."""
    m = result.meta
    raw = bytearray(m.raw)
    values = {name: getattr(m, name) for name in (
        "head_segment_id", "head_slot", "commit_id", "head_crc", "hash_head", "key_id",
        "key_epoch", "sig_alg", "key_src", "mono_hwm", "lost_total", "dropped_total",
        "records_total", "wrap_count", "clock_steps", "bo_event", "unexp_rst", "ecc_err_cnt",
        "boot_seq", "uplink_cursor", "rollback_ctr")}
    sources = [Source(src.name, src.last_seq) for src in m.sources]
    index = {src.name.encode("ascii"): i for i, src in enumerate(sources)}
    for seg in result.adopted_segments:
        st = seg.seal
        if values["head_segment_id"] != 0 and seg.slot < values["head_slot"]:
            values["wrap_count"] = (values["wrap_count"] + 1) & 0xFFFFFFFF
        values.update(head_segment_id=seg.segment_id, head_slot=seg.slot,
                      commit_id=seg.commit_id, head_crc=seg.body_crc,
                      hash_head=seg.computed_hash, key_id=st.key_id, key_epoch=st.key_epoch,
                      sig_alg=st.sig_alg, key_src=st.key_src, clock_steps=st.clock_steps,
                      bo_event=st.bo_event)
        values["mono_hwm"] = max(values["mono_hwm"], seg.last_mono)
        values["lost_total"] = (values["lost_total"] + seg.lost_records) & MASK64
        values["dropped_total"] = (values["dropped_total"] + seg.dropped_records) & MASK64
        for name in ("unexp_rst", "ecc_err_cnt", "boot_seq", "uplink_cursor",
                     "rollback_ctr"):
            values[name] = max(values[name], getattr(st, name))
        for rec in seg.records:
            if rec.type == 1:
                values["records_total"] = (values["records_total"] + 1) & MASK64
            i = index.get(rec.source)
            if i is None:
                if len(sources) >= SOURCE_MAX:
                    continue  # the table has no room
                i = index[rec.source] = len(sources)
                sources.append(Source(rec.source.decode("ascii"), rec.seq))
                off = SOURCE_TBL_OFFSET + i * SOURCE_ENTRY
                raw[off:off + SOURCE_ENTRY] = struct.pack(
                    "<B39sQ", len(rec.source), rec.source, rec.seq)
            elif rec.seq > sources[i].last_seq:
                sources[i].last_seq = rec.seq
                struct.pack_into("<Q", raw, SOURCE_TBL_OFFSET + i * SOURCE_ENTRY + 40, rec.seq)
    struct.pack_into("<I", raw, SOURCE_COUNT_OFFSET, len(sources))
    return dataclasses.replace(m, **values, tail_slot=result.tail_slot,
                               tail_segment_id=result.tail_segment_id, sources=sources,
                               source_count=len(sources), raw=bytes(raw))


def torn_after_head(store: Store, result: ScanResult) -> bool:
    """A torn segment after the head (sections 5 and 9 item 6): the slot
    where the forward scan stopped holds a header valid for the expected id
    and slot (magic, version, header_size, header_crc, store_uuid), whose
    prev_crc equals the head's body_crc, and the segment is not valid."""
    meta, slot, e = result.meta, result.stop_slot, result.stop_segment_id
    if slot < 0 or not header_names(store, meta, slot, e):
        return False
    header = store.read_upto(meta.slot_offset(slot), SEG_HEADER_SIZE)
    if struct.unpack_from("<I", header, 120)[0] != result.head_body_crc:
        return False
    try:
        parse_segment(store, meta, slot, e)
    except DecodeError:
        return True
    return False


# ---------------------------------------------------------------------------
# Output (section 7)
# ---------------------------------------------------------------------------

def _type_json(rtype: int) -> bytes:
    name = TYPE_NAMES.get(rtype)
    return f'"{name}"'.encode() if name else str(rtype).encode()


def _type_csv(rtype: int) -> bytes:
    return TYPE_NAMES.get(rtype, str(rtype)).encode()


def time_fields(rec: Record) -> tuple[int, int, int | None, int | None, int | None]:
    """boot_seq, time_flags, maxerror_us, esterror_us, last_sync_ns as section 7
    prints them, None for null.  The two null rules differ: the error fields
    are unsigned and null at 0xFFFFFFFF (0 is a real, perfect error), while
    last_sync_ns is an i64 wall time and null at 0 (a negative one is printed
    as it is)."""
    return (rec.boot_seq, rec.time_flags,
            None if rec.maxerror_us == NO_SAMPLE_US else rec.maxerror_us,
            None if rec.esterror_us == NO_SAMPLE_US else rec.esterror_us,
            None if rec.last_sync_ns == NO_SYNC_NS else rec.last_sync_ns)


# -- printable payloads (section 7) --

# "every value inside at most 63 objects or arrays, the outer object counting
# as one" (section 7): a value may be parsed while at most 63 containers are
# open around it.
PRINTABLE_MAX_DEPTH = 63
# After the UTF-8 decode, as raw characters: C0 controls, DEL, the C1
# controls U+0080..U+009F, the line and paragraph separators U+2028 and
# U+2029, and the bidirectional controls U+061C, U+200E, U+200F,
# U+202A..U+202E and U+2066..U+2069.  (A \u escape of one is plain ASCII
# text in the payload and is not matched.)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
                      "\u202a-\u202e\u2066-\u2069]")
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\]*)*"')
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_JSON_WS = re.compile(r"[ \t\n\r]*")


def is_printable_payload(data: bytes) -> bool:
    """Section 7: one JSON object per RFC 8259 (no NaN or Infinity; nothing
    before or after it, not even a space; every value inside at most 63
    objects or arrays, the outer object counting as one; duplicate keys and
    \\u escapes of lone surrogates accepted, as the grammar accepts them) in
    valid UTF-8 with no byte below 0x20, no 0x7F, no C1 control, no raw
    U+2028 or U+2029 and no raw bidirectional control (U+061C, U+200E,
    U+200F, U+202A..U+202E, U+2066..U+2069).
    Iterative: a payload nested a thousand deep is refused at its first
    value inside 64 containers, without recursion."""
    if len(data) < 2 or data[0] != 0x7B or data[-1] != 0x7D:  # { ... }
        return False
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    if _CONTROL.search(text):
        return False
    return _is_json_object(text)


def _is_json_object(text: str) -> bool:
    n = len(text)
    stack: list[str] = []
    i = 0
    expect = "value"
    while True:
        if expect != "after" or stack:
            i = _JSON_WS.match(text, i).end()
        if expect == "value":
            if i >= n or len(stack) > PRINTABLE_MAX_DEPTH:
                return False  # (a value inside 64 containers)
            c = text[i]
            if c in "{[":
                if not stack and c != "{":
                    return False
                stack.append(c)
                i = _JSON_WS.match(text, i + 1).end()
                close = "}" if c == "{" else "]"
                if i < n and text[i] == close:
                    stack.pop()
                    i += 1
                    expect = "after"
                else:
                    expect = "key" if c == "{" else "value"
                continue
            if not stack:
                return False  # the top level is one object
            if c == '"' or c == "-" or "0" <= c <= "9":
                m = (_JSON_STRING if c == '"' else _JSON_NUMBER).match(text, i)
                if m is None:
                    return False
                i = m.end()
            elif text.startswith("true", i) or text.startswith("null", i):
                i += 4
            elif text.startswith("false", i):
                i += 5
            else:
                return False
            expect = "after"
        elif expect == "key":
            m = _JSON_STRING.match(text, i) if i < n and text[i] == '"' else None
            if m is None:
                return False
            i = _JSON_WS.match(text, m.end()).end()
            if i >= n or text[i] != ":":
                return False
            i += 1
            expect = "value"
        else:  # after a value
            if not stack:
                return i == n  # nothing after the object
            if i >= n:
                return False
            c = text[i]
            if c == ",":
                i += 1
                expect = "key" if stack[-1] == "{" else "value"
            elif (c == "}" and stack[-1] == "{") or (c == "]" and stack[-1] == "["):
                stack.pop()
                i += 1
            else:
                return False


# Characters a spreadsheet takes for the start of a formula (section 7).
CSV_FORMULA_START = (b"=", b"+", b"-", b"@", b"\t", b"\r")


def csv_quoted(content: bytes) -> bytes:
    """A quoted CSV cell: each " doubled, and a ' before a leading = + - @ tab
    or carriage return, inside the quotes (section 7)."""
    content = content.replace(b'"', b'""')
    if content[:1] in CSV_FORMULA_START:
        content = b"'" + content
    return b'"' + content + b'"'


def format_jsonl(seg: Segment, rec: Record, corrected: int | None = None) -> bytes:
    # Built by hand, not with json.dumps: the key order and spacing are fixed
    # by the spec and a printable payload is spliced in as stored, not
    # re-encoded; any other is null plus its bytes in hex.
    extra = b"" if corrected is None else b',"wall_corrected_ns":%d' % corrected
    boot_seq, flags, maxerr, esterr, last_sync = (
        b"null" if v is None else b"%d" % v for v in time_fields(rec))
    if is_printable_payload(rec.payload):
        payload = rec.payload
    else:
        payload = b'null,"payload_hex":"%s"' % rec.payload.hex().encode()
    return (b'{"segment_id":%d,"commit_id":%d,"type":%s,"source":"%s","seq":%d,'
            b'"mono_ctr":%d,"wall_ns":%d%s,"boot_ns":%d,"boot_seq":%s,"time_flags":%s,'
            b'"maxerror_us":%s,"esterror_us":%s,"last_sync_ns":%s,"payload":%s}\n'
            % (seg.segment_id, seg.commit_id, _type_json(rec.type), rec.source,
               rec.seq, rec.mono_ctr, rec.wall_ns, extra, rec.boot_ns, boot_seq, flags,
               maxerr, esterr, last_sync, payload))


def format_csv(seg: Segment, rec: Record, corrected: int | None = None) -> bytes:
    # The source and the payload are quoted cells; a payload that is not
    # printable is the text hex:HEX.  A null of the JSON form is an empty
    # field (section 7).
    if is_printable_payload(rec.payload):
        payload = rec.payload
    else:
        payload = b"hex:" + rec.payload.hex().encode()
    extra = b"" if corrected is None else b",%d" % corrected
    times = b",".join(b"" if v is None else b"%d" % v for v in time_fields(rec))
    return (b'%d,%d,%s,%s,%d,%d,%d%s,%d,%s,%s\n'
            % (seg.segment_id, seg.commit_id, _type_csv(rec.type), csv_quoted(rec.source),
               rec.seq, rec.mono_ctr, rec.wall_ns, extra, rec.boot_ns, times,
               csv_quoted(payload)))


def is_good_time(rec: Record) -> bool:
    """`synced` set and `wall_untrusted` clear (section 3.2 time_flags)."""
    return bool(rec.time_flags & TIME_SYNCED) and not rec.time_flags & TIME_WALL_UNTRUSTED


def reference_offsets(records: list[Record]) -> dict[int, int]:
    """Section 7, `--wall corrected`: for each boot (boot_seq), wall_ns -
    boot_ns of its last record with `synced` set and `wall_untrusted` clear,
    or, when it has none, of its last record.  `records` in export order."""
    last_good: dict[int, Record] = {}
    last_any: dict[int, Record] = {}
    for rec in records:
        last_any[rec.boot_seq] = rec
        if is_good_time(rec):
            last_good[rec.boot_seq] = rec
    offsets = {}
    for boot, last in last_any.items():
        ref = last_good.get(boot, last)
        offsets[boot] = ref.wall_ns - ref.boot_ns
    return offsets


def wrap_i64(value: int) -> int:
    """Two's complement wrap to a signed 64-bit value."""
    return (value + 2**63) % 2**64 - 2**63


def wall_corrected(rec: Record, offsets: dict[int, int]) -> int:
    # "The arithmetic wraps at 64 bits" (section 7).  Python integers do not
    # overflow, so the sum is exact and wrapped once here; modular arithmetic
    # makes that equal to wrapping each subtraction and addition.
    return wrap_i64(rec.boot_ns + offsets[rec.boot_seq])


def printed_segments(store: Store, result: ScanResult, err: BinaryIO
                     ) -> tuple[list[Segment], int]:
    """Section 5 step 4: the committed segments export prints, in ring order,
    and how many it reports as damaged.  A segment is printed when it is
    valid for its expected id and slot, its SHA-256 is its seal's
    segment_hash, and its prev_hash is the hash of the segment before it when
    that one was printed (segment 1: zero; no check after a damaged or
    unretained segment)."""
    printed: list[Segment] = []
    damaged = 0
    prev_printed: tuple[int, bytes] | None = None  # (segment id, its hash)
    for slot, seg_id in result.committed:
        # Head and adopted segments were already parsed by the scan.
        seg = result.cache.pop((slot, seg_id), None)
        problem: tuple[int, str] | None = None
        if seg is None:
            try:
                seg = parse_segment(store, result.meta, slot, seg_id)
            except DecodeError as exc:
                problem = (exc.offset, exc.reason)
        if seg is not None and problem is None:
            mbase = seg.marker_offset
            if seg.computed_hash != seg.seal.segment_hash:
                problem = (mbase + SEAL_OFFSET + 152,
                           "SHA-256 of header and records is not the seal's segment_hash")
            elif seg_id == 1 and seg.prev_hash != ZERO_HASH:
                problem = (seg.base + 80, "segment 1 has a non-zero prev_hash")
            elif (seg_id != 1 and prev_printed is not None and prev_printed[0] == seg_id - 1
                  and seg.prev_hash != prev_printed[1]):
                problem = (seg.base + 80, f"prev_hash is not the hash of segment {seg_id - 1}")
        if problem is not None:
            damaged += 1
            prev_printed = None
            report(err, f"segment {seg_id} in slot {slot} at offset {problem[0]}: "
                        f"{problem[1]}; skipped")
            continue
        printed.append(seg)
        prev_printed = (seg_id, seg.computed_hash)
    return printed, damaged


def export(store: Store, result: ScanResult, fmt: str, since_commit: int | None,
           out: BinaryIO, err: BinaryIO, wall: str = "raw") -> int:
    """Print the committed records in ring order; return the number of
    committed segments reported as damaged (on `err`, skipped).

    Every printed segment is read before the first line is printed: with
    --wall corrected a record's reference is the last good record of its
    boot, which may come later."""
    line = format_csv if fmt == "csv" else format_jsonl
    segments, damaged = printed_segments(store, result, err)
    if fmt == "csv":
        out.write(CSV_HEADER_CORRECTED if wall == "corrected" else CSV_HEADER)
    offsets = None
    if wall == "corrected":
        offsets = reference_offsets([rec for seg in segments for rec in seg.records])
    for seg in segments:
        if since_commit is not None and seg.commit_id <= since_commit:
            continue
        for rec in seg.records:
            out.write(line(seg, rec) if offsets is None
                      else line(seg, rec, wall_corrected(rec, offsets)))
    return damaged


# Metadata fields --inspect prints, with the sealed field (section 3.5) each
# one is backed by, if any.
SEALED_BY = {"tail_segment_id": "tail_segment_id", "mono_hwm": "mono_hwm",
             "records_total": "records_total", "lost_total": "lost_total",
             "dropped_total": "dropped_total", "uplink_cursor": "uplink_cursor",
             "wrap_count": "wrap_count", "unexp_rst": "unexp_rst", "bo_event": "bo_event",
             "ecc_err_cnt": "ecc_err_cnt", "clock_steps": "clock_steps",
             "boot_seq": "boot_seq", "rollback_ctr": "rollback_ctr",
             "key_id": "key_id", "key_epoch": "key_epoch", "sig_alg": "sig_alg",
             "key_src": "key_src", "device_id": "device_id",
             "head_segment_id": "segment_id", "commit_id": "commit_id",
             "hash_head": "segment_hash", "tail_slot": "tail_slot",
             "ring_slots": "ring_slots"}
UNSEALED = ("generation", "clean_flag", "verify_stat", "fw_ver_hash", "boot_id",
            "largest_step_ns", "unsync_ns", "last_sync_wall_ns", "rtc_offset_ns",
            "rtc_state", "format_wall_ns")


def unchecked_fields(result: ScanResult, head: Segment | None) -> list[str]:
    """The printed metadata fields not backed by the chosen slot's head seal:
    those no seal carries, and the sealed ones that differ from the head's
    seal or have no valid head (bound by head_crc) to compare with."""
    m = result.meta
    names = list(UNSEALED)
    for name, sealed in SEALED_BY.items():
        if head is None or getattr(m, name) != getattr(head.seal, sealed):
            names.append(name)
    if head is None or m.tables_hash() != head.seal.tables_hash:
        names += ["bad_blocks", "sources"]
    return sorted(names)


def inspect(result: ScanResult) -> dict:
    m = result.meta
    head = result.cache.get((m.head_slot, m.head_segment_id))
    if head is not None and (head.computed_hash != head.seal.segment_hash
                             or result.head_missing is not None):
        head = None
    return {
        "chosen_slot": m.slot_name,
        "generation": m.generation,
        "commit_id": m.commit_id,
        "head_segment_id": m.head_segment_id,
        "head_slot": m.head_slot,
        "tail_segment_id": m.tail_segment_id,
        "tail_slot": m.tail_slot,
        "wrap_count": m.wrap_count,
        "clean_flag": m.clean_flag,
        "unexp_rst": m.unexp_rst,
        "bo_event": m.bo_event,
        "ecc_err_cnt": m.ecc_err_cnt,
        "verify_stat": m.verify_stat,
        "mono_hwm": m.mono_hwm,
        "uplink_cursor": m.uplink_cursor,
        "records_total": m.records_total,
        "dropped_total": m.dropped_total,
        "lost_total": m.lost_total,
        "sector_size": m.sector_size,
        "segment_size": m.segment_size,
        "ring_slots": m.ring_slots,
        "head_crc": m.head_crc,
        "hash_head": m.hash_head.hex(),
        "device_id": m.device_id.hex(),
        "rollback_ctr": m.rollback_ctr,
        "fw_ver_hash": m.fw_ver_hash.hex(),
        "key_id": m.key_id.hex(),
        "key_epoch": m.key_epoch,
        "sig_alg": SIG_ALG_NAMES.get(m.sig_alg, str(m.sig_alg)),
        "key_src": KEY_SRC_NAMES.get(m.key_src, str(m.key_src)),
        # Time path (section 2, 2896..2952), as stored: last_sync_wall_ns 0
        # means never, and rtc_offset_ns means something only when rtc_state
        # is "read".
        "boot_id": m.boot_id.hex(),
        "boot_seq": m.boot_seq,
        "clock_steps": m.clock_steps,
        "largest_step_ns": m.largest_step_ns,
        "unsync_ns": m.unsync_ns,
        "last_sync_wall_ns": m.last_sync_wall_ns,
        "rtc_offset_ns": m.rtc_offset_ns,
        "rtc_state": RTC_STATE_NAMES.get(m.rtc_state, str(m.rtc_state)),
        "format_wall_ns": m.format_wall_ns,
        "store_size": m.store_size,
        "bad_blocks": [{"slot": b.slot, "reason": b.reason, "segment_id": b.segment_id}
                       for b in m.bad_blocks],
        "sources": [{"name": s.name, "last_seq": s.last_seq} for s in m.sources],
        "adopted_segments": result.adopted,
        # Committed segments = the tail..last range, whether or not each one
        # still reads back.
        "segments": len(result.committed),
        # Section 2: "one that a reader prints unchecked is labelled so".
        "unchecked": unchecked_fields(result, head),
    }


# ---------------------------------------------------------------------------
# Format 6, in progress: the record block (FORMAT.md appendix A)
#
# No store holds it yet; these functions decode one segment's frames (their
# record blocks and the deflate encoding) so that the writer can be checked
# against the text.  Only `--frames FILE` (a test-vector container, not a
# store format) reaches them from the command line.
# ---------------------------------------------------------------------------

U16_MAX = 0xFFFF
U32_MAX = 0xFFFFFFFF
U64_MAX = 2**64 - 1
VARINT_MAX_BYTES = 10
BLOCK_SOURCES_MAX = 1024          # A.2: at most 1024 sources in a segment
HEAD_HAS_TYPE = 1 << 0            # A.3 head bits
HEAD_NEW_SOURCE = 1 << 1
HEAD_HAS_TIME_QUALITY = 1 << 2
HEAD_RESERVED = 0xF8              # bits 3 to 7: 0, else the block is invalid
ENCODING_STORED = 0               # A.4
ENCODING_DEFLATE = 1
FRAMES_MAGIC = b"EDGEFRM1"        # --frames test-vector container
_FRAME_HEADER = struct.Struct("<B3sIII")


class BlockError(Exception):
    """A record block or a frame's stored bytes failed validation (appendix A).

    `record` is the index of the record in the block (0 for the first),
    `offset` the byte offset in the block of the field that failed; either
    is None where it does not apply (a frame that does not inflate has no
    block yet).
    """

    def __init__(self, reason: str, record: int | None = None, offset: int | None = None):
        where = []
        if record is not None:
            where.append(f"record {record}")
        if offset is not None:
            where.append(f"block offset {offset}")
        super().__init__(f"{reason} ({', '.join(where)})" if where else reason)
        self.reason = reason
        self.record = record
        self.offset = offset


def read_varint(data: bytes | bytearray | memoryview, pos: int,
                limit: int = U64_MAX) -> tuple[int, int]:
    """Read the varint (A.1) at `data[pos:]`; return (value, position after it).

    Unsigned LEB128, at most 10 bytes, the 10th 0 or 1, the shortest
    encoding only (a last byte of 0 only as the sole byte); `limit` is the
    largest value the field holds (u16, u32: A.1's last sentence).  Raises
    BlockError(offset=pos) otherwise; the caller adds the record index.
    """
    value = 0
    for i in range(VARINT_MAX_BYTES):
        if pos + i >= len(data):
            raise BlockError("varint runs past the end of the block", offset=pos)
        byte = data[pos + i]
        if i == VARINT_MAX_BYTES - 1 and byte > 1:
            raise BlockError(f"varint's 10th byte is {byte:#04x} (only 0 or 1)", offset=pos)
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise BlockError("varint not in its shortest encoding", offset=pos)
            if value > limit:
                raise BlockError(f"varint {value} does not fit its field (max {limit})",
                                 offset=pos)
            return value, pos + i + 1
    raise BlockError("varint longer than 10 bytes", offset=pos)


def zigzag_decode(u: int) -> int:
    """A.1: the i64 `d = (u >> 1) xor -(u and 1)` of a u64 zigzag value."""
    return (u >> 1) ^ -(u & 1)


def apply_zigzag_delta(base: int, u: int) -> int:
    """A.1: `v = (b + d) mod 2^64` as a u64, for the zigzag value `u`
    against base `b` (either signedness: only b mod 2^64 matters)."""
    return (base + zigzag_decode(u)) % 2**64


@dataclass
class BlockContext:
    """The decoding context of A.2, carried from frame to frame of a segment.

    i64 fields (prev_wall, prev_boot, last_sync_ns) hold signed values;
    the zigzag arithmetic is mod 2^64 so that makes no difference.
    """
    sources: list[bytes] = field(default_factory=list)
    last_seq: list[int] = field(default_factory=list)
    prev_mono: int = 0
    prev_wall: int = 0
    prev_boot: int = 0
    time_flags: int = 0
    boot_seq: int = 0
    maxerror_us: int = NO_SAMPLE_US
    esterror_us: int = NO_SAMPLE_US
    last_sync_ns: int = 0

    def copy(self) -> BlockContext:
        return dataclasses.replace(self, sources=list(self.sources),
                                   last_seq=list(self.last_seq))


@dataclass
class BlockRecord:
    """One record decoded from a record block: the fields of section 3.2."""
    type: int
    source: bytes
    seq: int
    mono_ctr: int
    wall_ns: int            # i64
    boot_ns: int            # i64
    time_flags: int
    boot_seq: int
    maxerror_us: int        # raw u32 (0xFFFFFFFF: no sample)
    esterror_us: int        # raw u32
    last_sync_ns: int       # i64 (0: none known)
    payload: bytes


def _decode_block_record(block: bytes, pos: int, index: int,
                         ctx: BlockContext) -> tuple[BlockRecord, int]:
    """Decode record `index` at `block[pos:]` against `ctx`, moving `ctx` on
    (the caller hands a copy).  Returns the record and the position after it."""

    def varint(limit: int = U64_MAX) -> int:
        nonlocal pos
        try:
            value, pos = read_varint(block, pos, limit)
        except BlockError as exc:
            raise BlockError(exc.reason, index, exc.offset) from None
        return value

    if pos >= len(block):
        raise BlockError("block ends before the record's head", index, pos)
    head = block[pos]
    if head & HEAD_RESERVED:
        raise BlockError(f"head {head:#04x} has reserved bits 3..7 set", index, pos)
    pos += 1

    rtype = varint(U16_MAX) if head & HEAD_HAS_TYPE else 1

    if head & HEAD_NEW_SOURCE:
        if pos >= len(block):
            raise BlockError("block ends before the source's name_len", index, pos)
        name_len = block[pos]
        if not 1 <= name_len <= SOURCE_NAME_MAX:
            raise BlockError(f"source name_len {name_len} (1..{SOURCE_NAME_MAX})", index, pos)
        if pos + 1 + name_len > len(block):
            raise BlockError("source name runs past the end of the block", index, pos)
        name = bytes(block[pos + 1:pos + 1 + name_len])
        if not is_valid_source(name):
            raise BlockError(f"invalid source name {name!r}", index, pos + 1)
        if name in ctx.sources:
            raise BlockError(f"source {name.decode()!r} already defined as index "
                             f"{ctx.sources.index(name)}", index, pos + 1)
        if len(ctx.sources) >= BLOCK_SOURCES_MAX:
            raise BlockError(f"more than {BLOCK_SOURCES_MAX} sources in the segment", index, pos)
        ctx.sources.append(name)
        ctx.last_seq.append(0)
        src = len(ctx.sources) - 1
        pos += 1 + name_len
    else:
        at = pos
        src = varint()
        if src >= len(ctx.sources):
            raise BlockError(f"source index {src} not below {len(ctx.sources)} "
                             f"sources defined", index, at)

    at = pos
    seq = apply_zigzag_delta(ctx.last_seq[src], varint())
    if seq >= ID_LIMIT:
        raise BlockError(f"seq {seq} is 2^62 or more", index, at)

    at = pos
    mono = ctx.prev_mono + 1 + varint()
    if mono > U64_MAX:
        raise BlockError(f"mono_ctr {ctx.prev_mono} + 1 + delta passes 2^64-1", index, at)
    if mono >= ID_LIMIT:
        raise BlockError(f"mono_ctr {mono} is 2^62 or more", index, at)

    wall = wrap_i64(apply_zigzag_delta(ctx.prev_wall, varint()))
    # A.3: boot_ns against prev_boot moved by as much as wall_ns moved.
    boot = wrap_i64(apply_zigzag_delta(ctx.prev_boot + wall - ctx.prev_wall, varint()))

    if head & HEAD_HAS_TIME_QUALITY:
        time_flags = varint(U16_MAX)
        boot_seq = varint(U16_MAX)
        maxerror = varint(U32_MAX)
        esterror = varint(U32_MAX)
        last_sync = wrap_i64(apply_zigzag_delta(ctx.last_sync_ns, varint()))
    else:
        time_flags, boot_seq = ctx.time_flags, ctx.boot_seq
        maxerror, esterror, last_sync = ctx.maxerror_us, ctx.esterror_us, ctx.last_sync_ns

    at = pos
    payload_len = varint()
    if payload_len > len(block) - pos:
        raise BlockError(f"payload_len {payload_len} runs past the end of the block "
                         f"({len(block) - pos} bytes left)", index, at)
    payload = bytes(block[pos:pos + payload_len])
    pos += payload_len

    ctx.last_seq[src] = seq
    ctx.prev_mono, ctx.prev_wall, ctx.prev_boot = mono, wall, boot
    ctx.time_flags, ctx.boot_seq = time_flags, boot_seq
    ctx.maxerror_us, ctx.esterror_us, ctx.last_sync_ns = maxerror, esterror, last_sync
    return BlockRecord(type=rtype, source=ctx.sources[src], seq=seq, mono_ctr=mono,
                       wall_ns=wall, boot_ns=boot, time_flags=time_flags, boot_seq=boot_seq,
                       maxerror_us=maxerror, esterror_us=esterror, last_sync_ns=last_sync,
                       payload=payload), pos


def decode_record_block(block: bytes | bytearray | memoryview, record_count: int,
                        ctx: BlockContext) -> list[BlockRecord]:
    """Decode a frame's record block (A.3) against the segment's context.

    Valid when exactly `record_count` records decode from exactly the
    block's bytes.  `ctx` moves on only when the whole block is valid: on a
    BlockError it is left as it was.
    """
    block = bytes(block)
    work = ctx.copy()
    records = []
    pos = 0
    for index in range(record_count):
        if pos == len(block):
            raise BlockError(f"block ends after {index} records, record_count is "
                             f"{record_count}", index, pos)
        rec, pos = _decode_block_record(block, pos, index, work)
        records.append(rec)
    if pos != len(block):
        raise BlockError(f"{len(block) - pos} bytes after the last of {record_count} "
                         f"records", None, pos)
    for f in dataclasses.fields(BlockContext):
        setattr(ctx, f.name, getattr(work, f.name))
    return records


def inflate_frame(encoding: int, stored: bytes | bytearray | memoryview, block_len: int,
                  dictionary: bytes = b"") -> bytes:
    """The record block of a frame from its stored bytes (A.4).

    encoding 0 (stored): the stored bytes are the block, `block_len` of them.
    encoding 1 (deflate): one raw deflate stream, `dictionary` (the previous
    frame's record block of the segment, empty for the first) set before the
    first byte, inflating to exactly `block_len` bytes, complete, with
    nothing after it; inflating stops at the first byte beyond block_len.
    """
    stored = bytes(stored)
    if encoding == ENCODING_STORED:
        if len(stored) != block_len:
            raise BlockError(f"stored frame has {len(stored)} bytes, block_len is {block_len}")
        return stored
    if encoding != ENCODING_DEFLATE:
        raise BlockError(f"unknown frame encoding {encoding}")
    try:
        if dictionary:
            inflater = zlib.decompressobj(wbits=-15, zdict=bytes(dictionary))
        else:
            inflater = zlib.decompressobj(wbits=-15)
        # max_length 0 would mean "no limit", so an empty block feeds
        # nothing here and goes straight to the one-byte probe below.
        if block_len > 0:
            # zlib takes a C ssize_t: a format 6 frame's block_len is a u64
            # varint (A.6), and no stream inflates to sys.maxsize bytes anyway.
            out = inflater.decompress(stored, min(block_len, sys.maxsize))
            tail = inflater.unconsumed_tail
        else:
            out, tail = b"", stored
        if not inflater.eof and tail:
            # block_len bytes out and input left: one more byte at most
            # tells whether the stream goes on past block_len.
            if inflater.decompress(tail, 1):
                raise BlockError(f"deflate stream inflates to more than block_len "
                                 f"{block_len} bytes")
    except zlib.error as exc:
        raise BlockError(f"deflate stream is not valid: {exc}") from None
    if not inflater.eof:
        raise BlockError(f"deflate stream is incomplete (ends without its final block, "
                         f"{len(out)} bytes inflated)")
    if len(out) != block_len:
        raise BlockError(f"deflate stream inflates to {len(out)} bytes, block_len is "
                         f"{block_len}")
    if inflater.unused_data:
        raise BlockError(f"{len(inflater.unused_data)} stored bytes after the end of the "
                         f"deflate stream")
    return out


class SegmentFrames:
    """One segment's frames, decoded in order (A.2, A.4): the context and
    the dictionary (the previous frame's record block) move on only when a
    frame is valid, stored bytes and record block both."""

    def __init__(self) -> None:
        self.context = BlockContext()
        self.prev_block = b""

    def decode_frame(self, encoding: int, record_count: int, block_len: int,
                     stored: bytes | bytearray | memoryview) -> list[BlockRecord]:
        block = inflate_frame(encoding, stored, block_len, self.prev_block)
        records = decode_record_block(block, record_count, self.context)
        self.prev_block = block
        return records


def read_frame_container(data: bytes):
    """Yield (encoding, record_count, block_len, stored) for each frame of a
    `--frames` test-vector container: ASCII `EDGEFRM1`, then frames back to
    back, each u8 encoding, 3 reserved zero bytes, u32 record_count, u32
    block_len, u32 stored_len, then stored_len bytes.  Raises BlockError
    where the container is malformed (at the frame it reached)."""
    if data[:len(FRAMES_MAGIC)] != FRAMES_MAGIC:
        raise BlockError("not a frame container (magic is not EDGEFRM1)")
    pos = len(FRAMES_MAGIC)
    while pos < len(data):
        if len(data) - pos < _FRAME_HEADER.size:
            raise BlockError(f"frame header truncated at file offset {pos}")
        encoding, reserved, record_count, block_len, stored_len = \
            _FRAME_HEADER.unpack_from(data, pos)
        if reserved != bytes(3):
            raise BlockError(f"frame header reserved bytes not zero at file offset {pos + 1}")
        pos += _FRAME_HEADER.size
        if len(data) - pos < stored_len:
            raise BlockError(f"stored bytes truncated: stored_len {stored_len}, "
                             f"{len(data) - pos} bytes left at file offset {pos}")
        yield encoding, record_count, block_len, data[pos:pos + stored_len]
        pos += stored_len


def block_record_json(frame: int, rec: BlockRecord, offsets: dict[int, int] | None = None) -> bytes:
    obj = {"frame": frame, "type": rec.type, "source": rec.source.decode("ascii"),
           "seq": rec.seq, "mono_ctr": rec.mono_ctr, "wall_ns": rec.wall_ns}
    if offsets is not None:
        obj["wall_corrected_ns"] = wall_corrected(rec, offsets)
    obj |= {"boot_ns": rec.boot_ns, "time_flags": rec.time_flags, "boot_seq": rec.boot_seq,
           "maxerror_us": rec.maxerror_us, "esterror_us": rec.esterror_us,
           "last_sync_ns": rec.last_sync_ns, "payload_hex": rec.payload.hex()}
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def decode_frames_file(data: bytes, out: BinaryIO) -> int:
    """`--frames`: print each frame's records, or the first failure; 0 or 1."""
    frames = SegmentFrames()
    index = 0
    try:
        for encoding, record_count, block_len, stored in read_frame_container(data):
            records = frames.decode_frame(encoding, record_count, block_len, stored)
            out.write(b"".join(block_record_json(index, rec) for rec in records))
            index += 1
    except BlockError as exc:
        out.write(json.dumps({"frame": index, "error": str(exc)},
                             separators=(",", ":")).encode() + b"\n")
        return EXIT_FRAME_FAILED
    return EXIT_OK


# ---------------------------------------------------------------------------
# Format 6, in progress: one segment (FORMAT.md appendix A.5 to A.7)
#
# A ring slot's bytes: the segment header (A.5), then frames (A.6) from
# header_len, each on a sector boundary, each with the statement (A.7) its
# signature is over rebuilt from the header, the frames before it and the
# frame itself.  Signatures are not checked here (the verifier's job); the
# walk stops at the first position that does not hold a valid frame, which
# is the end of what is committed in the slot, not an error of the segment.
# Only `--segment FILE --sector-size N` (test only) reaches this from the
# command line.
# ---------------------------------------------------------------------------

SEG6_FORMAT_VERSION = 6
SEG6_FIXED = 248                  # bytes of the header before the tables
SEG6_CRC_SIZE = 4                 # header_crc, the last 4 bytes of the header
TABLES_BAD_SLOTS_MAX = 64         # A.5 tables: at most 64 bad slots
TABLES_SOURCES_MAX = 258          # 256 user sources + edgelog + edgelog.time
FRAME_MAGIC = b"EF"               # A.6
FRAME_FLAG_DEFLATE = 1 << 0
FRAME_FLAG_STATE = 1 << 1
FRAME_FLAGS_RESERVED = 0xFC       # bits 2 to 7: zero
FRAME_CRC_SIZE = 4
STATE_LIST_MAX = 16               # A.6: varint n (1..16)
# A.6 state list field ids, the sealed field each sets and its width (the
# statement's field, A.7: u64 for 1 to 3, u32 for 4 to 6).
STATE_FIELDS = {1: ("lost_total", U64_MAX), 2: ("dropped_total", U64_MAX),
                3: ("uplink_cursor", U64_MAX), 4: ("bo_event", U32_MAX),
                5: ("ecc_err_cnt", U32_MAX), 6: ("clock_steps", U32_MAX)}
STATEMENT3_MAGIC = b"EDGESIG3"    # A.7
STATEMENT3_SIZE = 352

_SEG6_HEADER = struct.Struct("<8sHHI16sQQII32s16s16sIBBH32sQQIIQQQQQIIIIII")
assert _SEG6_HEADER.size == SEG6_FIXED
_STATEMENT3 = struct.Struct("<8s16sQQQQII16sQ32s32s32sBBH4s16sQQQQQQIIIIII32sII32s")
assert _STATEMENT3.size == STATEMENT3_SIZE


class SegmentError(Exception):
    """A format 6 segment header (A.5) is not valid, or a slot is not one.

    `reason` is a short token printed by --segment ("bad_magic",
    "format_version", "header_len", "crc_mismatch", "tables_len", "tables",
    "sig_alg", "sig_len", "store_uuid", "slot_size"); the message says more.
    """

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class FrameStop(Exception):
    """The position the walk reached does not hold a valid frame (A.6).

    `reason` is "blank" (an all-zero sector), "slot_end" (no sector left),
    or what failed: "bad_magic", "flags", "frame_len", "crc_mismatch",
    "record_count", "block_len", "state", "block", "records_total",
    "tables", "frame_id".
    """

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass
class SegmentTables:
    """The tables of A.5: the bad-slot list and the source table."""
    bad_slots: list[tuple[int, int, int]] = field(default_factory=list)  # slot, reason, segment_id
    sources: list[list] = field(default_factory=list)                    # [name bytes, last_seq]

    def copy(self) -> SegmentTables:
        return SegmentTables(list(self.bad_slots), [list(s) for s in self.sources])


def decode_tables(data: bytes | bytearray | memoryview) -> SegmentTables:
    """Decode A.5's tables encoding from exactly `data`; SegmentError("tables")
    when it is not valid (a bad varint, a count above its limit, a bad-slot
    reason other than 1, 2 or 3, a bad name or a name twice, a last_seq of
    2^62 or more, or bytes left over)."""
    data = bytes(data)
    pos = 0

    def varint(what: str, limit: int = U64_MAX) -> int:
        nonlocal pos
        try:
            value, pos = read_varint(data, pos, limit)
        except BlockError as exc:
            raise SegmentError("tables", f"{what}: {exc.reason} (tables offset "
                                         f"{exc.offset})") from None
        return value

    tables = SegmentTables()
    count = varint("bad_slot_count")
    if count > TABLES_BAD_SLOTS_MAX:
        raise SegmentError("tables", f"bad_slot_count {count} (at most {TABLES_BAD_SLOTS_MAX})")
    for i in range(count):
        slot = varint(f"bad slot {i}'s slot", U32_MAX)
        if pos >= len(data):
            raise SegmentError("tables", f"bad slot {i}'s reason runs past the tables")
        reason = data[pos]
        if reason not in BAD_BLOCK_REASONS:
            raise SegmentError("tables", f"bad slot {i}'s reason {reason} (1, 2 or 3)")
        pos += 1
        seg_id = varint(f"bad slot {i}'s segment_id")
        tables.bad_slots.append((slot, reason, seg_id))
    count = varint("source_count")
    if count > TABLES_SOURCES_MAX:
        raise SegmentError("tables", f"source_count {count} (at most {TABLES_SOURCES_MAX})")
    names = set()
    for i in range(count):
        if pos >= len(data):
            raise SegmentError("tables", f"source {i}'s name_len runs past the tables")
        name_len = data[pos]
        if not 1 <= name_len <= SOURCE_NAME_MAX or pos + 1 + name_len > len(data):
            raise SegmentError("tables", f"source {i}'s name_len {name_len} (1..39, "
                                         f"within the tables)")
        name = data[pos + 1:pos + 1 + name_len]
        if not is_valid_source(name):
            raise SegmentError("tables", f"source {i}'s name {name!r} is not a valid name")
        if name in names:
            raise SegmentError("tables", f"source name {name.decode()!r} twice")
        names.add(name)
        pos += 1 + name_len
        last_seq = varint(f"source {name.decode()!r}'s last_seq")
        if last_seq >= ID_LIMIT:
            raise SegmentError("tables", f"source {name.decode()!r}'s last_seq {last_seq} "
                                         f"is 2^62 or more")
        tables.sources.append([name, last_seq])
    if pos != len(data):
        raise SegmentError("tables", f"the tables decode to {pos} bytes, tables_len is "
                                     f"{len(data)}")
    return tables


def _enc_varint(value: int) -> bytes:
    """A.1's varint of `value` (0..2^64-1), shortest form."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def encode_tables(tables: SegmentTables) -> bytes:
    """A.5's tables encoding (what tables_hash of A.7 is over)."""
    out = bytearray(_enc_varint(len(tables.bad_slots)))
    for slot, reason, seg_id in tables.bad_slots:
        out += _enc_varint(slot) + bytes([reason]) + _enc_varint(seg_id)
    out += _enc_varint(len(tables.sources))
    for name, last_seq in tables.sources:
        out += bytes([len(name)]) + name + _enc_varint(last_seq)
    return bytes(out)


@dataclass
class SegmentState:
    """The sealed numbers that frames move on (A.6): before the first frame
    from the header, after each frame as A.6 says."""
    mono_hwm: int
    records_total: int
    lost_total: int
    dropped_total: int
    uplink_cursor: int
    bo_event: int
    ecc_err_cnt: int
    clock_steps: int
    tables: SegmentTables

    def copy(self) -> SegmentState:
        return dataclasses.replace(self, tables=self.tables.copy())


@dataclass
class SegmentHeader:
    """A format 6 segment header (A.5) that passed every validity rule."""
    header_len: int
    store_uuid: bytes
    segment_id: int
    first_frame_id: int
    slot_index: int
    wrap_count: int
    prev_hash: bytes
    device_id: bytes
    key_id: bytes
    key_epoch: int
    sig_alg: int
    key_src: int
    sig_len: int
    fw_ver_hash: bytes
    rollback_ctr: int
    tail_segment_id: int
    tail_slot: int
    ring_slots: int
    mono_hwm: int
    records_total: int
    lost_total: int
    dropped_total: int
    uplink_cursor: int
    unexp_rst: int
    bo_event: int
    ecc_err_cnt: int
    clock_steps: int
    boot_seq: int
    tables_len: int
    tables: SegmentTables
    tables_bytes: bytes
    header_crc: int
    header_hash: bytes

    def initial_state(self) -> SegmentState:
        return SegmentState(mono_hwm=self.mono_hwm, records_total=self.records_total,
                            lost_total=self.lost_total, dropped_total=self.dropped_total,
                            uplink_cursor=self.uplink_cursor, bo_event=self.bo_event,
                            ecc_err_cnt=self.ecc_err_cnt, clock_steps=self.clock_steps,
                            tables=self.tables.copy())


def parse_segment_header(slot: bytes | bytearray | memoryview, sector_size: int,
                         store_uuid: bytes | None = None) -> SegmentHeader:
    """Parse and check the segment header at the start of a ring slot's bytes.

    A.5's rules, in this order: magic, format_version 6, header_len a
    non-zero multiple of the sector size no larger than the slot, header_crc,
    `248 + tables_len <= header_len - 4`, the tables decode to exactly
    tables_len bytes, sig_alg 0..3 and sig_len its length, and (when
    `store_uuid` is given: the slot alone does not say it) store_uuid is
    the store's.  Raises SegmentError.
    """
    slot = memoryview(bytes(slot))
    if sector_size not in SECTOR_SIZES:
        raise ValueError(f"sector size {sector_size} (512 or 4096)")
    if bytes(slot[:8]) != SEG_MAGIC:
        raise SegmentError("bad_magic", f"magic {bytes(slot[:8])!r} is not {SEG_MAGIC!r}")
    if len(slot) < 10:
        raise SegmentError("format_version", "the slot ends inside format_version")
    version = struct.unpack_from("<H", slot, 8)[0]
    if version != SEG6_FORMAT_VERSION:
        raise SegmentError("format_version", f"format_version {version} (6)")
    if len(slot) < 16:
        raise SegmentError("header_len", "the slot ends inside header_len")
    header_len = struct.unpack_from("<I", slot, 12)[0]
    if header_len == 0 or header_len % sector_size or header_len > len(slot):
        raise SegmentError("header_len", f"header_len {header_len} is not a multiple of the "
                                         f"sector size {sector_size} no larger than the "
                                         f"slot ({len(slot)} bytes)")
    # A non-zero multiple of 512 holds the 248 fixed bytes and the CRC.
    body = bytes(slot[:header_len - SEG6_CRC_SIZE])
    header_crc = struct.unpack_from("<I", slot, header_len - SEG6_CRC_SIZE)[0]
    if crc32c(body) != header_crc:
        raise SegmentError("crc_mismatch", f"header_crc {header_crc:#010x}, the CRC of bytes "
                                           f"0..{header_len - 5} is {crc32c(body):#010x}")
    (_magic, _version, _reserved, _hlen, uuid, segment_id, first_frame_id, slot_index,
     wrap_count, prev_hash, device_id, key_id, key_epoch, sig_alg, key_src, sig_len,
     fw_ver_hash, rollback_ctr, tail_segment_id, tail_slot, ring_slots, mono_hwm,
     records_total, lost_total, dropped_total, uplink_cursor, unexp_rst, bo_event,
     ecc_err_cnt, clock_steps, boot_seq, tables_len) = _SEG6_HEADER.unpack_from(body, 0)
    if SEG6_FIXED + tables_len > header_len - SEG6_CRC_SIZE:
        raise SegmentError("tables_len", f"248 + tables_len {tables_len} is more than "
                                         f"header_len - 4 = {header_len - 4}")
    tables_bytes = body[SEG6_FIXED:SEG6_FIXED + tables_len]
    tables = decode_tables(tables_bytes)
    if sig_alg not in SIG_LEN_FOR_ALG:
        raise SegmentError("sig_alg", f"sig_alg {sig_alg} (0..3)")
    if sig_len != SIG_LEN_FOR_ALG[sig_alg]:
        raise SegmentError("sig_len", f"sig_len {sig_len}, sig_alg {sig_alg} "
                                      f"({SIG_ALG_NAMES[sig_alg]}) signs with "
                                      f"{SIG_LEN_FOR_ALG[sig_alg]}")
    if store_uuid is not None and uuid != store_uuid:
        raise SegmentError("store_uuid", f"store_uuid {uuid.hex()} is not the store's "
                                         f"{bytes(store_uuid).hex()}")
    return SegmentHeader(
        header_len=header_len, store_uuid=uuid, segment_id=segment_id,
        first_frame_id=first_frame_id, slot_index=slot_index, wrap_count=wrap_count,
        prev_hash=prev_hash, device_id=device_id, key_id=key_id, key_epoch=key_epoch,
        sig_alg=sig_alg, key_src=key_src, sig_len=sig_len, fw_ver_hash=fw_ver_hash,
        rollback_ctr=rollback_ctr, tail_segment_id=tail_segment_id, tail_slot=tail_slot,
        ring_slots=ring_slots, mono_hwm=mono_hwm, records_total=records_total,
        lost_total=lost_total, dropped_total=dropped_total, uplink_cursor=uplink_cursor,
        unexp_rst=unexp_rst, bo_event=bo_event, ecc_err_cnt=ecc_err_cnt,
        clock_steps=clock_steps, boot_seq=boot_seq, tables_len=tables_len, tables=tables,
        tables_bytes=tables_bytes, header_crc=header_crc,
        header_hash=hashlib.sha256(body).digest())


def build_statement(header: SegmentHeader, frame_id: int, first_mono: int, last_mono: int,
                    record_count: int, prev_hash: bytes, frame_hash: bytes,
                    state: SegmentState) -> bytes:
    """The 352-byte EDGESIG3 statement of a frame (A.7); `state` is the
    sealed state after the frame."""
    return _STATEMENT3.pack(
        STATEMENT3_MAGIC, header.device_id, header.segment_id, frame_id, first_mono,
        last_mono, record_count, header.key_epoch, header.key_id, header.rollback_ctr,
        header.fw_ver_hash, prev_hash, frame_hash, header.sig_alg, header.key_src,
        header.sig_len, bytes(4), header.store_uuid, header.tail_segment_id, state.mono_hwm,
        state.records_total, state.lost_total, state.dropped_total, state.uplink_cursor,
        header.wrap_count, header.unexp_rst, state.bo_event, state.ecc_err_cnt,
        state.clock_steps, header.boot_seq,
        hashlib.sha256(encode_tables(state.tables)).digest(), header.tail_slot,
        header.ring_slots, header.header_hash)


@dataclass
class SegmentFrame:
    """One valid frame of a segment (A.6) and what follows from it."""
    frame_id: int
    offset: int                 # slot offset of its magic
    frame_len: int
    deflate: bool
    record_count: int
    block_len: int
    state_list: list[tuple[int, int]]
    stored: bytes
    signature: bytes
    frame_crc: int
    frame_hash: bytes
    records: list[BlockRecord]
    state: SegmentState         # the sealed state after the frame
    statement: bytes            # A.7, 352 bytes: what `signature` is over


@dataclass
class SegmentWalk:
    """A segment's valid frames in order, and where and why the walk stopped."""
    header: SegmentHeader
    frames: list[SegmentFrame]
    end_offset: int
    end_reason: str
    end_detail: str = ""


class _SegmentWalker:
    """Walks one slot's frames (A.6) after a valid header, carrying the
    record block context and dictionary (A.2, A.4), the sealed state (A.6)
    and the prev_hash chain (A.7) from each frame to the next."""

    def __init__(self, slot: bytes, header: SegmentHeader, sector_size: int):
        self.slot = slot
        self.header = header
        self.sector_size = sector_size
        self.frames = SegmentFrames()
        self.state = header.initial_state()
        self.prev_hash = header.prev_hash
        self.index = 0
        # A.6's block budget: the frames of a segment hold together at most
        # 8 x segment_size bytes of record block (the slot is one segment).
        self.budget_left = FRAME_BLOCK_BUDGET_PER_SEGMENT_BYTE * len(slot)

    def read_frame(self, pos: int) -> SegmentFrame:
        """The frame at slot offset `pos` (a sector boundary at or after
        header_len), moving the walk on; FrameStop when there is none."""
        slot, header = self.slot, self.header
        if pos + self.sector_size > len(slot):
            raise FrameStop("slot_end", f"no sector left at slot offset {pos}")
        if slot[pos:pos + self.sector_size] == bytes(self.sector_size):
            raise FrameStop("blank", f"the sector at slot offset {pos} is all zero")
        if slot[pos:pos + 2] != FRAME_MAGIC:
            raise FrameStop("bad_magic", f"magic {slot[pos:pos + 2]!r} is not {FRAME_MAGIC!r}")
        flags = slot[pos + 2]
        if flags & FRAME_FLAGS_RESERVED:
            raise FrameStop("flags", f"flags {flags:#04x} has reserved bits 2..7 set")
        try:
            frame_len, cur = read_varint(slot, pos + 3)
        except BlockError as exc:
            raise FrameStop("frame_len", f"frame_len: {exc.reason}") from None
        trailer = header.sig_len + FRAME_CRC_SIZE
        if frame_len < cur - pos + trailer or frame_len > len(slot) - pos:
            raise FrameStop("frame_len", f"frame_len {frame_len} (at least {cur - pos + trailer}"
                                         f", and the frame must end inside the slot: "
                                         f"{len(slot) - pos} bytes left)")
        end = pos + frame_len
        sig_at, crc_at = end - trailer, end - FRAME_CRC_SIZE
        frame_crc = struct.unpack_from("<I", slot, crc_at)[0]
        # A.6: seeded with the store and the segment, so that a frame of an
        # older lap of the ring in this slot does not check.
        computed = crc32c(header.store_uuid + struct.pack("<Q", header.segment_id)
                          + slot[pos:crc_at])
        if computed != frame_crc:
            raise FrameStop("crc_mismatch", f"frame_crc {frame_crc:#010x}, computed "
                                            f"{computed:#010x}")

        fields = memoryview(slot)[:sig_at]   # the varints and state list end before stored

        def varint(reason: str, what: str, limit: int = U64_MAX) -> int:
            nonlocal cur
            try:
                value, cur = read_varint(fields, cur, limit)
            except BlockError as exc:
                raise FrameStop(reason, f"{what}: {exc.reason}") from None
            return value

        record_count = varint("record_count", "record_count", U32_MAX)
        block_len = varint("block_len", "block_len")
        # A.6: block_len at most 16 MiB and at least 7 bytes a record.
        if block_len > FRAME_BLOCK_LEN_MAX or block_len < FRAME_MIN_RECORD_LEN * record_count:
            raise FrameStop("block_len", f"block_len {block_len} for {record_count} records "
                                         f"(at most {FRAME_BLOCK_LEN_MAX}, at least "
                                         f"{FRAME_MIN_RECORD_LEN} a record)")
        if block_len > self.budget_left:
            raise FrameStop("block_len", f"block_len {block_len} passes the segment's block "
                                         f"budget ({self.budget_left} bytes left of "
                                         f"{FRAME_BLOCK_BUDGET_PER_SEGMENT_BYTE} x the slot)")
        state_list: list[tuple[int, int]] = []
        new_state = self.state.copy()
        if flags & FRAME_FLAG_STATE:
            n = varint("state", "the state list's n")
            if not 1 <= n <= STATE_LIST_MAX:
                raise FrameStop("state", f"state list n {n} (1..{STATE_LIST_MAX})")
            last_id = 0
            for i in range(n):
                if cur >= len(fields):
                    raise FrameStop("state", f"state pair {i}'s field id runs past the "
                                             f"stored bytes' start")
                fid = fields[cur]
                cur += 1
                if fid not in STATE_FIELDS:
                    raise FrameStop("state", f"unknown state field id {fid} (1..6)")
                if fid <= last_id:
                    raise FrameStop("state", f"state field ids not strictly increasing "
                                             f"({last_id} then {fid})")
                last_id = fid
                name, limit = STATE_FIELDS[fid]
                value = varint("state", f"state field {fid} ({name})", limit)
                before = getattr(new_state, name)
                if value < before:
                    raise FrameStop("state", f"state field {fid} ({name}) {value} is below "
                                             f"{before}")
                setattr(new_state, name, value)
                state_list.append((fid, value))
        stored = bytes(fields[cur:])
        signature = slot[sig_at:crc_at]
        frame_hash = hashlib.sha256(slot[pos:sig_at]).digest()

        if not flags & FRAME_FLAG_DEFLATE and len(stored) != block_len:
            raise FrameStop("block_len", f"a stored frame of {len(stored)} bytes with block_len "
                                         f"{block_len}")
        if header.first_frame_id + self.index > U64_MAX:
            raise FrameStop("frame_id", f"first_frame_id {header.first_frame_id} + "
                                        f"{self.index} passes 2^64 - 1")
        encoding = ENCODING_DEFLATE if flags & FRAME_FLAG_DEFLATE else ENCODING_STORED
        context, prev_block = self.frames.context.copy(), self.frames.prev_block
        try:
            records = self.frames.decode_frame(encoding, record_count, block_len, stored)
        except BlockError as exc:
            raise FrameStop("block", str(exc)) from None
        try:
            self._apply_records(new_state, records)
        except FrameStop:
            self.frames.context, self.frames.prev_block = context, prev_block
            raise
        statement = build_statement(
            header, header.first_frame_id + self.index,
            records[0].mono_ctr if records else 0, records[-1].mono_ctr if records else 0,
            record_count, self.prev_hash, frame_hash, new_state)
        frame = SegmentFrame(
            frame_id=header.first_frame_id + self.index, offset=pos, frame_len=frame_len,
            deflate=encoding == ENCODING_DEFLATE, record_count=record_count,
            block_len=block_len, state_list=state_list, stored=stored, signature=signature,
            frame_crc=frame_crc, frame_hash=frame_hash, records=records, state=new_state,
            statement=statement)
        self.state, self.prev_hash = new_state, frame_hash
        self.index += 1
        self.budget_left -= block_len
        return frame

    @staticmethod
    def _apply_records(state: SegmentState, records: list[BlockRecord]) -> None:
        """A.6: records_total grows by the type 1 records, mono_hwm becomes the
        last mono_ctr, each source's last_seq its last seq in the frame (a
        source not in the table added at its end, in order of first use)."""
        total = state.records_total + sum(1 for r in records if r.type == 1)
        if total > U64_MAX:
            raise FrameStop("records_total", f"records_total {total} passes 2^64 - 1")
        state.records_total = total
        if records:
            state.mono_hwm = records[-1].mono_ctr
        index = {name: i for i, (name, _) in enumerate(state.tables.sources)}
        for rec in records:
            if rec.source not in index:
                index[rec.source] = len(state.tables.sources)
                state.tables.sources.append([rec.source, 0])
            state.tables.sources[index[rec.source]][1] = rec.seq
        if len(state.tables.sources) > TABLES_SOURCES_MAX:
            raise FrameStop("tables", f"{len(state.tables.sources)} sources after the frame "
                                      f"(the tables hold at most {TABLES_SOURCES_MAX})")


FRAME_BLOCK_LEN_MAX = 16 << 20   # A.6
FRAME_BLOCK_BUDGET_PER_SEGMENT_BYTE = 8   # A.6: a segment's block_len sum <= 8 x segment_size
FRAME_MIN_RECORD_LEN = 7


def walk_segment(slot: bytes | bytearray | memoryview, sector_size: int,
                 store_uuid: bytes | None = None) -> SegmentWalk:
    """Decode one ring slot's bytes as a format 6 segment: the header (A.5,
    SegmentError when it is not valid, or when the slot is not a whole
    number of sectors), then every frame from header_len on until the first
    position that does not hold a valid frame."""
    slot = bytes(slot)
    if sector_size not in SECTOR_SIZES:
        raise ValueError(f"sector size {sector_size} (512 or 4096)")
    if not slot or len(slot) % sector_size:
        raise SegmentError("slot_size", f"a slot of {len(slot)} bytes is not a whole "
                                        f"number of {sector_size}-byte sectors")
    header = parse_segment_header(slot, sector_size, store_uuid)
    walker = _SegmentWalker(slot, header, sector_size)
    frames = []
    pos = header.header_len
    while True:
        try:
            frame = walker.read_frame(pos)
        except FrameStop as stop:
            return SegmentWalk(header, frames, pos, stop.reason, stop.detail)
        frames.append(frame)
        end = pos + frame.frame_len
        pos = -(-end // sector_size) * sector_size


def _jline(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def segment_header_json(h: SegmentHeader) -> bytes:
    return _jline({
        "kind": "header", "segment_id": h.segment_id, "first_frame_id": h.first_frame_id,
        "slot_index": h.slot_index, "wrap_count": h.wrap_count, "header_len": h.header_len,
        "store_uuid": h.store_uuid.hex(), "device_id": h.device_id.hex(),
        "key_id": h.key_id.hex(), "key_epoch": h.key_epoch, "sig_alg": h.sig_alg,
        "key_src": h.key_src, "sig_len": h.sig_len, "rollback_ctr": h.rollback_ctr,
        "tail_segment_id": h.tail_segment_id, "tail_slot": h.tail_slot,
        "ring_slots": h.ring_slots, "mono_hwm": h.mono_hwm, "records_total": h.records_total,
        "lost_total": h.lost_total, "dropped_total": h.dropped_total,
        "uplink_cursor": h.uplink_cursor, "unexp_rst": h.unexp_rst, "bo_event": h.bo_event,
        "ecc_err_cnt": h.ecc_err_cnt, "clock_steps": h.clock_steps, "boot_seq": h.boot_seq,
        "bad_slots": [list(b) for b in h.tables.bad_slots],
        "sources": [[name.decode("ascii"), seq] for name, seq in h.tables.sources],
        "prev_hash": h.prev_hash.hex(), "header_hash": h.header_hash.hex()})


def segment_frame_json(f: SegmentFrame) -> bytes:
    return _jline({
        "kind": "frame", "frame_id": f.frame_id, "offset": f.offset, "frame_len": f.frame_len,
        "deflate": f.deflate, "record_count": f.record_count, "block_len": f.block_len,
        "state": [list(p) for p in f.state_list], "frame_hash": f.frame_hash.hex(),
        "statement": f.statement.hex(), "signature": f.signature.hex()})


def decode_segment_file(data: bytes, sector_size: int, out: BinaryIO, err: BinaryIO) -> int:
    """`--segment`: print the header, each frame and its records, and where
    the walk ended; exit 1 (after an error line) when the header is not
    valid, else 0 (a torn or blank end is the normal end of a slot)."""
    try:
        walk = walk_segment(data, sector_size)
    except SegmentError as exc:
        out.write(_jline({"kind": "error", "reason": exc.reason}))
        report(err, f"segment header not valid: {exc}")
        return EXIT_FRAME_FAILED
    out.write(segment_header_json(walk.header))
    for frame in walk.frames:
        out.write(segment_frame_json(frame))
        out.write(b"".join(block_record_json(frame.frame_id, rec) for rec in frame.records))
    out.write(_jline({"kind": "end", "offset": walk.end_offset, "frames": len(walk.frames),
                      "reason": walk.end_reason}))
    return EXIT_OK


# ---------------------------------------------------------------------------
# Format 6, in progress: a whole store (FORMAT.md appendix A.8 and A.9)
#
# Two 16 KiB metadata slots, then the ring of segments (A.5 to A.7).  The
# reader chooses a slot (A.9 step 1), follows the chain forward from its
# head frame (step 2), tells a torn commit (step 4) and gives the committed
# history from the oldest retained segment to the last frame found (step 3).
# Only `--packed-store IMAGE` (test only) reaches this from the command line.
#
# Choices where A.8 and A.9 leave room (each has a test in
# scripts/test_edgelog_decode.py, "--packed-store"):
# - meta_len 512 is in A.8's range, but tables_len (offset 508) is then
#   where the CRC is and `512 + tables_len <= meta_len - 4` cannot hold:
#   tables_len is read from offset 508 whatever meta_len is, so such a slot
#   is never valid;
# - ring_slots is checked with `32768 + ring_slots * segment_size <=
#   store_size` (the validity rule's own words), not as the exact quotient;
# - format_version other than 6 (older or newer) makes a slot not valid;
#   generation parity and the tables' bad-slot entries are not checked (no
#   validity rule names them); equal generations: slot A first;
# - next() skips the bad slots of the chosen slot's tables and of the
#   headers of the segments adopted so far (a bad slot is never written
#   again, so the union only grows);
# - a chosen slot with head_frame_id 0 scans from tail_slot for segment
#   tail_segment_id (1 in every store the writer makes), frame 1, zero
#   prev_hash;
# - head missing: the scan continues from the slot's head as it states it
#   (head_segment_id in head_slot, head_frame_id, hash_head), the head
#   segment contributes the frames of its walk up to head_frame_id, and the
#   sealed numbers are the slot's until a later frame is adopted; the head
#   segment's own walk end is not a torn commit (nothing after the head was
#   found);
# - step 4 is read literally: any walk end of the last segment other than
#   blank or slot_end is torn, an older lap's frame left after the last
#   frame of a reused slot (crc_mismatch, A.6) included; a header with the
#   next segment id and no valid frame is torn whatever its first_frame_id
#   and prev_hash say;
# - tail after the scan: the last adopted segment's header (tail_segment_id,
#   tail_slot, wrap_count), else the chosen slot's; then the oldest retained
#   segment is the first from that tail on (slot by slot) whose slot holds a
#   valid header of this store with the expected segment_id and at least one
#   valid frame; when none does, the tail is left as it was;
# - step 3 takes, in each slot from the oldest on, the segment with the
#   expected id and every frame of its walk (in the last segment, up to the
#   last frame found); a slot that holds another id or no valid header adds
#   nothing; the chain between those segments is not checked again (step 3
#   does not ask for it);
# - a segment header's slot_index, tail and ring_slots are not compared with
#   the slot it is read from or with the metadata (A.5's validity rule and
#   A.9's tests do not name them).
# ---------------------------------------------------------------------------

META6_FORMAT_VERSION = 6
META6_SLOT_SIZE = 16384
META6_OFFSETS = {"A": 0, "B": 16384}
RING6_OFFSET = 32768
META6_FIXED = 512                 # bytes before the tables
META6_TABLES_LEN_OFFSET = 508
META6_MIN_LEN = 512
META6_MIN_SEGMENT = 8192
META6_MAX_SEGMENT = 16 * 1024 * 1024
META6_MIN_RING_SLOTS = 4

_META6 = struct.Struct("<8sHHI16sQQIIIIQQII32sIIQIIQQQQQQIIII16sq16sIB3sQQqqq")
assert _META6.size == 296
RTC_STATES = (0, 1, 2)


class MetaError(Exception):
    """A format 6 metadata slot (A.8) is not valid.  `reason` is a short
    token ("truncated", "bad_magic", "format_version", "meta_len",
    "crc_mismatch", "sector_size", "segment_size", "ring_slots", "ring_size",
    "store_size", "clean_flag", "rtc_state", "head_slot", "tail_slot", "tables_len",
    "tables", "bounds")."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class Metadata6:
    """A format 6 metadata slot (A.8) that passed every validity rule."""
    slot_name: str
    meta_len: int
    store_uuid: bytes
    generation: int
    store_size: int
    sector_size: int
    segment_size: int
    ring_slots: int
    clean_flag: int
    head_frame_id: int
    head_segment_id: int
    head_slot: int
    head_offset: int
    hash_head: bytes
    head_crc: int
    wrap_count: int
    tail_segment_id: int
    tail_slot: int
    unexp_rst: int
    rollback_ctr: int
    mono_hwm: int
    records_total: int
    lost_total: int
    dropped_total: int
    uplink_cursor: int
    bo_event: int
    ecc_err_cnt: int
    clock_steps: int
    boot_seq: int
    device_id: bytes
    format_wall_ns: int
    tables_len: int
    tables: SegmentTables
    # A.8 offsets 232..295: sealed by no frame (the writer's bookkeeping).
    boot_id: bytes = bytes(16)
    verify_stat: int = 0
    rtc_state: int = 0
    largest_step_ns: int = 0
    unsync_ns: int = 0
    last_sync_wall_ns: int = 0
    rtc_offset_ns: int = 0
    last_offset_ns: int = 0

    def slot_offset(self, slot: int) -> int:
        return RING6_OFFSET + slot * self.segment_size


def parse_metadata6(buf: bytes | bytearray | memoryview, slot_name: str = "A",
                    image_size: int | None = None) -> Metadata6:
    """Parse and check one format 6 metadata slot (A.8) from the bytes at its
    offset (up to 16384 of them; fewer when the image ends inside the slot).

    In this order: magic, format_version 6, meta_len (512 to 16384, a
    multiple of 512, within the bytes read), the CRC of bytes 0..meta_len-5,
    sector_size 512 or 4096 and meta_len a multiple of it, segment_size a
    multiple of 4096 from 8192 to 16 MiB, ring_slots at least 4,
    `32768 + ring_slots * segment_size <= store_size`, store_size not more
    than `image_size` (when given: the image's bytes), clean_flag 0 or 1,
    head_slot and tail_slot below ring_slots, `512 + tables_len <= meta_len
    - 4`, the tables decode to exactly tables_len bytes (decode_tables), and
    head_frame_id, head_segment_id, tail_segment_id, rollback_ctr and
    mono_hwm below 2^62.  Raises MetaError.
    """
    buf = bytes(buf[:META6_SLOT_SIZE])
    if len(buf) < 16:
        raise MetaError("truncated", f"the image ends {len(buf)} bytes into slot {slot_name}")
    if buf[:8] != META_MAGIC:
        raise MetaError("bad_magic", f"magic {buf[:8]!r} is not {META_MAGIC!r}")
    version = struct.unpack_from("<H", buf, 8)[0]
    if version != META6_FORMAT_VERSION:
        raise MetaError("format_version", f"format_version {version} (6)")
    meta_len = struct.unpack_from("<I", buf, 12)[0]
    if not META6_MIN_LEN <= meta_len <= META6_SLOT_SIZE or meta_len % 512:
        raise MetaError("meta_len", f"meta_len {meta_len} (a multiple of the sector size, "
                                    f"512 to 16384)")
    if meta_len > len(buf):
        raise MetaError("truncated", f"meta_len {meta_len}, the image holds {len(buf)} "
                                     f"bytes of slot {slot_name}")
    body = buf[:meta_len - 4]
    stored_crc = struct.unpack_from("<I", buf, meta_len - 4)[0]
    if crc32c(body) != stored_crc:
        raise MetaError("crc_mismatch", f"crc {stored_crc:#010x}, the CRC of bytes "
                                        f"0..{meta_len - 5} is {crc32c(body):#010x}")
    (_magic, _version, _reserved, _meta_len, store_uuid, generation, store_size, sector_size,
     segment_size, ring_slots, clean_flag, head_frame_id, head_segment_id, head_slot,
     head_offset, hash_head, head_crc, wrap_count, tail_segment_id, tail_slot, unexp_rst,
     rollback_ctr, mono_hwm, records_total, lost_total, dropped_total, uplink_cursor,
     bo_event, ecc_err_cnt, clock_steps, boot_seq, device_id,
     format_wall_ns, boot_id, verify_stat, rtc_state, _reserved2, largest_step_ns, unsync_ns,
     last_sync_wall_ns, rtc_offset_ns, last_offset_ns) = _META6.unpack_from(body, 0)
    # tables_len (offset 508) is inside the CRC's range only from meta_len
    # 1024 on; at 512 those bytes are the CRC and no tables_len passes the
    # `512 + tables_len <= meta_len - 4` rule below.
    tables_len = struct.unpack_from("<I", buf, META6_TABLES_LEN_OFFSET)[0]
    if sector_size not in SECTOR_SIZES:
        raise MetaError("sector_size", f"sector_size {sector_size} (512 or 4096)")
    if meta_len % sector_size:
        raise MetaError("meta_len", f"meta_len {meta_len} is not a multiple of the sector "
                                    f"size {sector_size}")
    if (segment_size % 4096 or segment_size < META6_MIN_SEGMENT
            or segment_size > META6_MAX_SEGMENT):
        raise MetaError("segment_size", f"segment_size {segment_size} (a multiple of 4096 "
                                        f"from 8192 to 16 MiB)")
    if ring_slots < META6_MIN_RING_SLOTS:
        raise MetaError("ring_slots", f"ring_slots {ring_slots} (at least 4)")
    if store_size < RING6_OFFSET or ring_slots != (store_size - RING6_OFFSET) // segment_size:
        raise MetaError("ring_size", f"ring_slots {ring_slots} is not (store_size {store_size} "
                                     f"- 32768) / {segment_size}")
    if image_size is not None and store_size > image_size:
        raise MetaError("store_size", f"store_size {store_size} is more than the image's "
                                      f"{image_size} bytes")
    if clean_flag not in (0, 1):
        raise MetaError("clean_flag", f"clean_flag {clean_flag} (0 or 1)")
    if rtc_state not in RTC_STATES:
        raise MetaError("rtc_state", f"rtc_state {rtc_state} (0, 1 or 2)")
    if head_slot >= ring_slots:
        raise MetaError("head_slot", f"head_slot {head_slot} (below {ring_slots})")
    if tail_slot >= ring_slots:
        raise MetaError("tail_slot", f"tail_slot {tail_slot} (below {ring_slots})")
    if META6_FIXED + tables_len > meta_len - 4:
        raise MetaError("tables_len", f"512 + tables_len {tables_len} is more than "
                                      f"meta_len - 4 = {meta_len - 4}")
    try:
        tables = decode_tables(body[META6_FIXED:META6_FIXED + tables_len])
    except SegmentError as exc:
        raise MetaError("tables", exc.detail) from None
    for name, value in (("generation", generation), ("head_frame_id", head_frame_id),
                        ("head_segment_id", head_segment_id),
                        ("tail_segment_id", tail_segment_id), ("rollback_ctr", rollback_ctr),
                        ("mono_hwm", mono_hwm)):
        if value >= ID_LIMIT:
            raise MetaError("bounds", f"{name} {value} is not below 2^62")
    # A.8: the counters a writer increments, the tail's range, the head inside a segment, and a
    # slot that names no frame describing an empty store.
    if unexp_rst >= 2**31 or boot_seq >= 2**31:
        raise MetaError("bounds", f"unexp_rst {unexp_rst} or boot_seq {boot_seq} not below 2^31")
    if not 1 <= tail_segment_id <= head_segment_id + 1:
        raise MetaError("bounds", f"tail_segment_id {tail_segment_id} outside 1 .. "
                                  f"head_segment_id + 1 ({head_segment_id + 1})")
    if head_offset >= segment_size:
        raise MetaError("bounds", f"head_offset {head_offset} not below segment_size")
    if head_frame_id == 0 and (head_segment_id != 0 or tail_segment_id != 1
                               or hash_head != bytes(32) or head_crc != 0):
        raise MetaError("bounds", "a slot with head_frame_id 0 must describe an empty store")
    if not bad_slots_fit(tables.bad_slots, ring_slots):
        raise MetaError("tables", "bad slots outside the ring, twice, or fewer than two good left")
    if head_slot in {b[0] for b in tables.bad_slots} or tail_slot in {b[0] for b in tables.bad_slots}:
        raise MetaError("tables", "head_slot or tail_slot is a bad slot")
    return Metadata6(
        slot_name=slot_name, meta_len=meta_len, store_uuid=store_uuid, generation=generation,
        store_size=store_size, sector_size=sector_size, segment_size=segment_size,
        ring_slots=ring_slots, clean_flag=clean_flag, head_frame_id=head_frame_id,
        head_segment_id=head_segment_id, head_slot=head_slot, head_offset=head_offset,
        hash_head=hash_head, head_crc=head_crc, wrap_count=wrap_count,
        tail_segment_id=tail_segment_id, tail_slot=tail_slot, unexp_rst=unexp_rst,
        rollback_ctr=rollback_ctr, mono_hwm=mono_hwm, records_total=records_total,
        lost_total=lost_total, dropped_total=dropped_total, uplink_cursor=uplink_cursor,
        bo_event=bo_event, ecc_err_cnt=ecc_err_cnt, clock_steps=clock_steps,
        boot_seq=boot_seq, device_id=device_id, format_wall_ns=format_wall_ns,
        tables_len=tables_len, tables=tables, boot_id=boot_id, verify_stat=verify_stat,
        rtc_state=rtc_state, largest_step_ns=largest_step_ns, unsync_ns=unsync_ns,
        last_sync_wall_ns=last_sync_wall_ns, rtc_offset_ns=rtc_offset_ns,
        last_offset_ns=last_offset_ns)


def read_metadata6(store: Store) -> tuple[list[Metadata6], dict[str, MetaError]]:
    """A.9 step 1's first half: both slots read; (the valid ones, newest
    generation first (A before B on a tie), {rejected slot: why})."""
    size = store.size()
    valid: list[Metadata6] = []
    rejected: dict[str, MetaError] = {}
    for name, off in META6_OFFSETS.items():
        try:
            valid.append(parse_metadata6(store.read_upto(off, META6_SLOT_SIZE), name, size))
        except MetaError as exc:
            rejected[name] = exc
    valid.sort(key=lambda m: m.generation, reverse=True)   # stable: A first on a tie
    return valid, rejected


def bad_slots_fit(bad_slots, ring_slots: int) -> bool:
    """A.8 / A.9: bad slots inside the ring, none twice, at least two good slots left."""
    slots = [b[0] for b in bad_slots]
    return (len(set(slots)) == len(slots) and all(s < ring_slots for s in slots)
            and ring_slots - len(slots) >= 2)


class PackedRing:
    """The ring of one store as a chosen metadata slot describes it: each
    slot's walk (A.5, A.6, with the slot's sector size and store_uuid),
    read once; None for a slot whose header is not valid (or not this
    store's)."""

    def __init__(self, store: Store, meta: Metadata6):
        self.store = store
        self.meta = meta
        self._walks: dict[int, SegmentWalk | None] = {}
        self.header_errors: dict[int, SegmentError] = {}

    def walk(self, slot: int) -> SegmentWalk | None:
        if slot not in self._walks:
            m = self.meta
            data = self.store.read_upto(m.slot_offset(slot), m.segment_size)
            try:
                walk = walk_segment(data, m.sector_size, m.store_uuid)
                h = walk.header
                # A.9: a header fits the store when it names this slot, the ring's size, a tail
                # inside the ring, ids below 2^62 and a tail not above its own id.
                if (h.slot_index != slot or h.ring_slots != m.ring_slots
                        or h.tail_slot >= m.ring_slots or h.segment_id >= ID_LIMIT
                        or h.first_frame_id >= ID_LIMIT or h.tail_segment_id > h.segment_id
                        or h.tail_segment_id < 1 or h.segment_id - h.tail_segment_id >= m.ring_slots
                        or h.rollback_ctr >= ID_LIMIT or h.mono_hwm >= ID_LIMIT or h.unexp_rst >= 2**31
                        or h.boot_seq >= 2**31
                        or not bad_slots_fit(h.tables.bad_slots, m.ring_slots)):
                    raise SegmentError("fits", "segment header does not fit the store")
                self._walks[slot] = walk
            except SegmentError as exc:
                self._walks[slot] = None
                self.header_errors[slot] = exc
        return self._walks[slot]


def packed_next_slot(ring_slots: int, bad: set[int], s: int) -> int | None:
    """`next(s)`: the next ring slot, wrapping, skipping `bad`; None when
    every other slot is bad."""
    for _ in range(ring_slots):
        s = (s + 1) % ring_slots
        if s not in bad:
            return s
    return None


def head_frame_index(ring: PackedRing) -> int | None:
    """A.9 step 1's test for the ring's slot: the index in the walk of the
    segment in head_slot of the frame the slot names, when that segment is
    valid, this store's, with head_segment_id, and its walk holds a frame
    with frame_id head_frame_id at head_offset whose frame_crc and frame_hash
    are head_crc and hash_head; else None."""
    m = ring.meta
    walk = ring.walk(m.head_slot)
    if walk is None or walk.header.segment_id != m.head_segment_id:
        return None
    for i, f in enumerate(walk.frames):
        if (f.offset == m.head_offset and f.frame_id == m.head_frame_id
                and f.frame_crc == m.head_crc and f.frame_hash == m.hash_head):
            return i
    return None


@dataclass
class CommittedFrame:
    segment_id: int
    slot: int
    frame: SegmentFrame


@dataclass
class PackedScan:
    """What A.9 finds in a store image."""
    meta: Metadata6                 # the chosen slot, as read
    rejected: dict[str, MetaError]
    head_missing: bool
    frames_adopted: int             # frames found by the forward scan after the head
    segments_adopted: int           # segments it added after the head's
    torn: bool                      # step 4
    head_frame_id: int              # after the forward scan
    head_segment_id: int
    head_slot: int
    hash_head: bytes
    tail_segment_id: int            # the oldest retained segment, after the tail rule
    tail_slot: int
    wrap_count: int
    state: SegmentState | None      # sealed state after the last frame found (None: none)
    records_total: int
    lost_total: int
    committed: list[CommittedFrame]
    stop_slot: int | None           # where the forward scan stopped
    stop_reason: str


def scan_packed(store: Store) -> PackedScan:
    """A.9 steps 1 to 4 over a store image.  Raises MetaError("not_a_store")
    when neither metadata slot is valid."""
    valid, rejected = read_metadata6(store)
    if not valid:
        why = "; ".join(f"{name}: {exc}" for name, exc in rejected.items())
        raise MetaError("not_a_store", f"no valid metadata slot ({why})")

    # Step 1: the newest valid slot whose head checks (or names no frame).
    # A slot naming no frame is chosen only when no slot's head checks (A.9 step 1).
    chosen = None
    empty = None
    for meta in valid:
        ring = PackedRing(store, meta)
        if meta.head_frame_id == 0:
            if empty is None:
                empty = ring
            continue
        index = head_frame_index(ring)
        if index is not None:
            chosen, head_index = ring, index
            break
    if chosen is None and empty is not None:
        chosen, head_index = empty, None
    head_missing = chosen is None
    if head_missing:
        chosen, head_index = PackedRing(store, valid[0]), None
    ring, meta = chosen, chosen.meta

    bad = {slot for slot, _, _ in meta.tables.bad_slots}
    frames_adopted = segments_adopted = 0
    state: SegmentState | None = None
    last_walk: SegmentWalk | None = None
    tail_id, tail_slot, wrap_count = meta.tail_segment_id, meta.tail_slot, meta.wrap_count

    # Step 2's starting point: the last segment and frame before the scan.
    if meta.head_frame_id == 0:
        last_seg, last_slot = meta.tail_segment_id - 1, None
        last_frame, last_hash = 0, ZERO_HASH
        s: int | None = meta.tail_slot
    elif head_missing:
        # A.9 step 1: no forward scan; the history runs to the slot's head as it states it.
        last_seg, last_slot = meta.head_segment_id, meta.head_slot
        last_frame, last_hash = meta.head_frame_id, meta.hash_head
        s = None
    else:
        # Step 2: the frames after the head in its segment's walk.
        last_walk = ring.walk(meta.head_slot)
        # The tail and wrap count are the head segment's header's (signed), not the slot's.
        tail_id, tail_slot = last_walk.header.tail_segment_id, last_walk.header.tail_slot
        wrap_count = last_walk.header.wrap_count
        frames_adopted = len(last_walk.frames) - 1 - head_index
        last_seg, last_slot = meta.head_segment_id, meta.head_slot
        last_frame, last_hash = last_walk.frames[-1].frame_id, last_walk.frames[-1].frame_hash
        state = last_walk.frames[-1].state
        s = packed_next_slot(meta.ring_slots, bad, meta.head_slot)

    # Step 2, slot by slot; step 4's torn segment start on the way.
    torn_start = False
    stop_reason = "no_slot"
    stop_slot = s
    for _ in range(meta.ring_slots):
        stop_slot = s
        if s is None:
            stop_reason = "no_slot"
            break
        walk = ring.walk(s)
        if walk is None:
            stop_reason = "header"
            break
        h = walk.header
        if h.segment_id != last_seg + 1:
            stop_reason = "segment_id"
            break
        if not walk.frames:
            # A header valid for the next segment id, no valid first frame.
            torn_start = True
            stop_reason = "no_frame"
            break
        if h.first_frame_id != last_frame + 1:
            stop_reason = "first_frame_id"
            break
        if h.prev_hash != last_hash:
            stop_reason = "prev_hash"
            break
        segments_adopted += 1
        frames_adopted += len(walk.frames)
        last_walk = walk
        last_seg, last_slot = h.segment_id, s
        last_frame, last_hash = walk.frames[-1].frame_id, walk.frames[-1].frame_hash
        state = walk.frames[-1].state
        tail_id, tail_slot, wrap_count = h.tail_segment_id, h.tail_slot, h.wrap_count
        s = packed_next_slot(meta.ring_slots, bad, s)
    else:
        stop_reason = "ring_end"

    # Step 4: the last segment's walk ends torn, or the next slot starts a
    # segment whose first frame never made it.
    torn = meta.clean_flag == 0 and (torn_start or (
        last_walk is not None and last_walk.end_reason not in ("blank", "slot_end")))

    # Step 3 and the tail rule: from the tail, slot by slot, to the last
    # frame found.  The tail is given up (at most one segment) only when the
    # store was left open with a full ring, the tail's slot being the one
    # after the last segment's, and it does not read: a cut reclaim.
    committed: list[CommittedFrame] = []
    found_frame = state is not None
    if last_slot is not None and last_seg >= tail_id:
        good = sum(1 for i in range(meta.ring_slots) if i not in bad) or 1
        count = min(last_seg - tail_id + 1, good)
        may_give_up = (meta.clean_flag == 0 and tail_id < last_seg
                       and packed_next_slot(meta.ring_slots, bad, last_slot) == tail_slot)
        oldest: tuple[int, int] | None = None
        slot: int | None = tail_slot
        segs: list[tuple[int, int, SegmentWalk]] = []
        for k in range(count):
            if slot is None:
                break
            e = tail_id + k
            walk = ring.walk(slot)
            if walk is not None and walk.header.segment_id == e and walk.frames:
                if oldest is None:
                    oldest = (e, slot)
                segs.append((e, slot, walk))
            elif k == 0 and may_give_up:
                nxt_slot = packed_next_slot(meta.ring_slots, bad, slot)
                if nxt_slot is None:
                    break
                oldest = (e + 1, nxt_slot)   # given up: the history starts after it
            else:
                break   # A.9: step 3 stops at the first slot without the next segment
            slot = packed_next_slot(meta.ring_slots, bad, slot)
        # A.9 step 3: a segment's frames end where the next segment chains on.
        for i, (e, sl, walk) in enumerate(segs):
            if i + 1 < len(segs):
                nxt = segs[i + 1][2].header
                kept = [f for f in walk.frames if f.frame_id < nxt.first_frame_id]
                committed.extend(CommittedFrame(e, sl, f) for f in kept)
                if not kept or kept[-1].frame_id + 1 != nxt.first_frame_id \
                        or kept[-1].frame_hash != nxt.prev_hash:
                    break
            else:
                for f in walk.frames:
                    if e == last_seg and f.frame_id > last_frame:
                        break
                    committed.append(CommittedFrame(e, sl, f))
        if oldest is not None:
            tail_id, tail_slot = oldest

    if found_frame:
        head_frame_id, head_segment_id, head_slot = last_frame, last_seg, last_slot
        records_total, lost_total = state.records_total, state.lost_total
    else:
        head_frame_id, head_segment_id, head_slot = (meta.head_frame_id, meta.head_segment_id,
                                                     meta.head_slot)
        records_total, lost_total = meta.records_total, meta.lost_total
    return PackedScan(
        meta=meta, rejected=rejected, head_missing=head_missing,
        frames_adopted=frames_adopted, segments_adopted=segments_adopted, torn=torn,
        head_frame_id=head_frame_id, head_segment_id=head_segment_id, head_slot=head_slot,
        hash_head=last_hash if found_frame else meta.hash_head, tail_segment_id=tail_id,
        tail_slot=tail_slot, wrap_count=wrap_count, state=state,
        records_total=records_total, lost_total=lost_total, committed=committed,
        stop_slot=stop_slot, stop_reason=stop_reason)


def packed_metadata_json(result: PackedScan) -> bytes:
    m = result.meta
    return _jline({
        "kind": "metadata", "slot": m.slot_name, "generation": m.generation,
        "clean_flag": m.clean_flag, "head_missing": result.head_missing,
        "frames_adopted": result.frames_adopted, "segments_adopted": result.segments_adopted,
        "torn": result.torn, "head_frame_id": result.head_frame_id,
        "head_segment_id": result.head_segment_id, "tail_segment_id": result.tail_segment_id,
        "tail_slot": result.tail_slot, "records_total": result.records_total,
        "lost_total": result.lost_total})


def decode_packed_store(store: Store, out: BinaryIO, err: BinaryIO, corrected: bool = False) -> int:
    """`--packed-store`: the metadata line, then each committed frame and its
    records; exit 2 (after an error line) when no metadata slot is valid.
    `corrected`: each record line also has wall_corrected_ns (section 7, over
    the committed records in order, as export --wall corrected)."""
    try:
        result = scan_packed(store)
    except MetaError as exc:
        out.write(_jline({"kind": "error", "reason": exc.reason}))
        report(err, f"not a format 6 store: {exc.detail}")
        return EXIT_NOT_A_STORE
    if result.head_missing:
        m = result.meta
        report(err, f"no valid slot's head frame checks; using slot {m.slot_name}, head frame "
                    f"{m.head_frame_id} of segment {m.head_segment_id} in ring slot "
                    f"{m.head_slot} at offset {m.head_offset} (missing)")
    out.write(packed_metadata_json(result))
    offsets = reference_offsets([rec for c in result.committed for rec in c.frame.records]) if corrected else None
    for c in result.committed:
        f = c.frame
        out.write(_jline({"kind": "frame", "segment_id": c.segment_id, "frame_id": f.frame_id,
                          "records": f.record_count}))
        out.write(b"".join(block_record_json(f.frame_id, rec, offsets) for rec in f.records))
    return EXIT_OK


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def report(err: BinaryIO, msg: str) -> None:
    err.write(f"edgelog_decode: {msg}\n".encode())


def main(argv: list[str] | None = None, out: BinaryIO | None = None,
         err: BinaryIO | None = None) -> int:
    out = out if out is not None else sys.stdout.buffer
    err = err if err is not None else sys.stderr.buffer
    parser = argparse.ArgumentParser(description="Decode an edgelog store (format version 5).")
    parser.add_argument("store", metavar="STORE_PATH", nargs="?")
    parser.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    parser.add_argument("--since-commit", type=int, default=None, metavar="N")
    parser.add_argument("--wall", choices=("raw", "corrected"), default="raw",
                        help="corrected: add wall_corrected_ns after wall_ns (FORMAT.md "
                             "section 7)")
    parser.add_argument("--inspect", action="store_true")
    parser.add_argument("--frames", metavar="FILE", default=None,
                        help="test only: decode a container of format 6 frames (FORMAT.md "
                             "appendix A) instead of a store; exit 1 at the first bad frame")
    parser.add_argument("--segment", metavar="FILE", default=None,
                        help="test only: decode one ring slot's bytes as a format 6 segment "
                             "(FORMAT.md appendix A.5 to A.7); needs --sector-size")
    parser.add_argument("--sector-size", type=int, choices=SECTOR_SIZES, default=None,
                        metavar="N", help="with --segment: the store's sector size, 512 or 4096")
    parser.add_argument("--packed-store", metavar="IMAGE", default=None,
                        help="test only: read a whole format 6 store image (FORMAT.md "
                             "appendix A.8, A.9) and print its committed frames")
    args = parser.parse_args(argv)

    if args.packed_store is not None:
        if (args.store is not None or args.frames is not None or args.segment is not None
                or args.sector_size is not None or args.inspect
                or args.since_commit is not None or args.format != "jsonl"):
            parser.error("--packed-store takes no STORE_PATH and no other option but --wall")
        try:
            fh = open(args.packed_store, "rb")
        except OSError as exc:
            report(err, f"cannot open {args.packed_store}: {exc.strerror}")
            return EXIT_NOT_A_STORE
        with fh:
            code = decode_packed_store(Store(fh), out, err, corrected=args.wall == "corrected")
        out.flush()
        return code

    if args.segment is not None or args.sector_size is not None:
        if args.segment is None:
            parser.error("--sector-size goes with --segment")
        if args.sector_size is None:
            parser.error("--segment needs --sector-size N (512 or 4096)")
        if (args.store is not None or args.frames is not None or args.inspect
                or args.since_commit is not None or args.format != "jsonl"
                or args.wall != "raw"):
            parser.error("--segment takes --sector-size only: no STORE_PATH, no other option")
        try:
            with open(args.segment, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            report(err, f"cannot open {args.segment}: {exc.strerror}")
            return EXIT_NOT_A_STORE
        code = decode_segment_file(data, args.sector_size, out, err)
        out.flush()
        return code

    if args.frames is not None:
        if (args.store is not None or args.inspect or args.since_commit is not None
                or args.format != "jsonl" or args.wall != "raw"):
            parser.error("--frames takes no STORE_PATH and no other option")
        try:
            with open(args.frames, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            report(err, f"cannot open {args.frames}: {exc.strerror}")
            return EXIT_NOT_A_STORE
        code = decode_frames_file(data, out)
        out.flush()
        return code
    if args.store is None:
        parser.error("the following arguments are required: STORE_PATH")

    try:
        fh = open(args.store, "rb")
    except OSError as exc:
        report(err, f"cannot open {args.store}: {exc.strerror}")
        return EXIT_NOT_A_STORE

    with fh:
        store = Store(fh)
        try:
            result = scan(store)
        except NewerFormatError as exc:
            report(err, f"newer format: {exc}")
            return EXIT_NEWER_FORMAT
        except DecodeError as exc:
            report(err, f"not an edgelog store: {exc.reason} (offset {exc.offset})")
            return EXIT_NOT_A_STORE

        failed = False
        if result.head_missing is not None:
            # The head is inside the committed range, so export reports it
            # again if it is invalid (not if it is valid but its body_crc
            # differs from head_crc); this line says why the slot was still
            # chosen (and is the only report under --inspect).
            m = result.meta
            report(err, f"neither metadata slot's head segment is valid with a matching "
                        f"head_crc; using slot "
                        f"{m.slot_name}, head segment {m.head_segment_id} in slot "
                        f"{m.head_slot} at offset {result.head_missing.offset}: "
                        f"{result.head_missing.reason}")
            failed = True

        if args.inspect:
            out.write(json.dumps(inspect(result), sort_keys=True).encode() + b"\n")
        else:
            if export(store, result, args.format, args.since_commit, out, err, args.wall):
                failed = True
        out.flush()
    return EXIT_BAD_SEGMENT if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
