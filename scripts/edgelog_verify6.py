#!/usr/bin/env python3
"""Independent verifier for format 6 edgelog stores (FORMAT.md appendix A.11).

Written from docs/FORMAT.md alone (appendix A and sections 3.5, 4, 8, 9),
without looking at the Swift sources, so that it can catch disagreements
between the spec and `edgelog verify`.  The bytes are parsed by
edgelog_decode.py (the metadata slot of A.8, the segment header, the walk
over a slot with its rebuilt EDGESIG3 statements, A.5 to A.7); the trust
keys, the signature rules and the key rotation endorsement are
edgelog_verify.py's (section 3.5, section 4 type 8).  edgelog_verify.py
hands a format 6 image over to this module, so one command verifies either
format.

Usage (the same as edgelog_verify.py; this script reads format 6 only):
    edgelog_verify6.py --device IMAGE --trust KEY [--trust KEY ...]
                       [--anchor HEADFILE] [--allow-fw HEX64 ...]
                       [--allow-unsigned] [--json]

Exit codes: 0 the verdict is PASS, 1 FAIL, 2 usage error or a file that
cannot be read.

Hostile input never raises: the metadata slot is checked (A.8) before
anything is read through it, every loop runs over the ring's slots, a
slot's sectors or a walk's frames (each bounded by the checked geometry),
payloads are parsed as JSON only when printable (section 7, nesting bounded)
and the anchor is never parsed as JSON (A.11.1: its two hex fields are
decoded, the head printed again and compared; at most 4096 bytes read).
The search for CRC-valid frames after a walk's end (item 5) is linear in
the slot's size: the CRC of every candidate is derived from per-sector CRC
registers (CRC-32C is linear), so overlapping frame_len claims cannot make
it quadratic.

Choices where A.11 is silent, ambiguous or contradicts A.1 to A.10 (the
most literal reading that keeps the guarantees each time):
- Dispatch (edgelog_verify.py): an image is format 6 when slot A (offset 0)
  or slot B (offset 16384) is a valid A.8 slot, or when either starts with
  EDGELOGM and format_version 6 and no valid format 5 slot is at 0 or 4096
  (a format 5 store with a version-6 word in its slot stays format 5's
  "newer format").  Either slot with a format_version above 6 is the
  finding not_a_store ("newer format", offset 0), as edgelog_verify.py.
- Item 2: A.9 steps 1 and 2 are run here, not by dec.scan_packed, because
  next() must skip the sealed bad slots (A.11 Terms, decision 5): the scan
  steps with the bad slots of the header of the segment it stands on (the
  chosen slot's tables before the first segment of an empty store); the
  range's next()/prev()/good use the tables of the header in s_H when it
  fits the store with id H, else the chosen slot's.  "Fits the store" is
  A.9's list; "got past S4" also needs S1 to S3.
- Head missing: F_H is the last frame of H's walk not above head_frame_id
  (0 when there is none, or the header in s_H is not segment H); H's
  history frames are those frames.
- A segment with zero history frames (nothing committed in its slot) fails:
  with F1's mapping of its walk end (gap for blank, crc_mismatch otherwise)
  at the walk end when its walk holds no frame, else gap at the slot, and
  no frame line (there is no frame to name).  `frames` is null only when
  the header did not get past S2.
- sig_verify is PASS exactly when the segment passed.  A signature that
  verified counts for S7's downgrade rule and for the summary's sig_alg
  whatever fails after it (F3's rotation check, S9, F6), as in format 5;
  an unsigned frame that "verifies without a signature" counts for neither.
- f* and the frames after it fail with S9's reason when S9 applies: they
  are counted, not listed (S9 is an S-reason), and not checked further.
- Rotation (F3): a type 8 record that does not parse, names another old
  key or epoch, does not move to old_epoch + 1 (section 3.5: "+1 at each
  rotation"), or whose endorsement does not verify is bad_signature
  (edgelog_verify.check_rotation, as format 5); its new key
  counts from segment e + 1 on only when its frame passed, and the old key
  is retired at once for the later frames of e (F2) and the later segments
  (S8).  An endorsed HMAC key needs its secret with --trust.
- F1's "ended `state` because a value went back" is the walk's state
  reason with the decoder's "state field N (name) V is below B" detail;
  any other state-list fault is crc_mismatch.
- Item 4, the tail: when item 2 gave the tail up, the chosen slot may hold
  either the sealed tail (T, tail_slot: the metadata before recovery, which
  the writer writes only after the reclaiming frame is durable, A.9 "When
  the metadata is written") or the moved-on tail (T + 1, next(tail_slot):
  the metadata recovery wrote at open); anything else is metadata_mismatch
  against the moved-on values A.11 names.  The tables are compared as the
  slot's raw bytes 512 .. 512 + tables_len - 1.
- Item 4 "newer slot passed over" applies to any valid slot with a higher
  generation than a chosen slot whose head checks, an empty one included.
- Item 5: its checks apply to segments of the range that passed S1 to S5
  (the slot holds segment e's own walk); "signed frames past a chain point"
  to those that passed S1 to S8.  In an unsigned segment let through by
  S7, a frame past the chain point "verifies" (A.11 Terms): fork.  Frames
  past a chain point that do not verify give one not_continued note per
  run of consecutive frames (frame_id: the first of the run); the search
  after a walk's end below H gives one note, frame_id the id the walk
  would have given the next frame.  The search runs after every walk end
  (sector boundaries strictly after it), whatever ended the walk.
- Item 5 "frame written whole that does not decode" below H applies when
  the walk holds every history frame (else it is F1's); in H always (the
  walk end is past the head).
- Item 6: for an empty history (H = 0) the "next slot" is the slot the
  forward scan started at (the chosen slot's tail_slot), F_H is 0 and its
  hash zero.  With clean_flag 1 the H + 1 header is truncated_tail even
  when item 5 found a frame after H's walk (only the note is dropped).
- Item 7: "the newest rollback_ctr of a passing frame" is that of the last
  frame that passed; "the first passing frame above A" is compared by its
  own statement (the state after it, its header's fields); a frame without
  records has no first mono_ctr to compare.  "A is a history frame that a
  walk holds" looks at segments that passed S1 to S5, the first in id order.
  "start's header was not read" means it did not get past S4 (F0 unknown).
- Notes: every incomplete (type 3) and recovery (type 5) record of a
  passing frame is power_cut_explained; a gap record is a note when its
  payload is a printable JSON object whose reason is ring_overwrite,
  uplink_acked or tail_unreadable (edgelog_verify.payload_object).
- Output: --json escapes every non-printable-ASCII character of a detail as
  \\uXXXX (json.dumps ensure_ascii); the text output prints every byte of a
  detail (and of the image name) outside 0x20..0x7E as \\xNN (section 9).
"""

from __future__ import annotations

import hashlib
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
import edgelog_decode as dec  # noqa: E402
import edgelog_verify as ver  # noqa: E402

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = ver.EXIT_PASS, ver.EXIT_FAIL, ver.EXIT_USAGE

META_OFFSETS = dec.META6_OFFSETS            # {"A": 0, "B": 16384}
META_SLOT = dec.META6_SLOT_SIZE             # 16384
RING = dec.RING6_OFFSET                     # 32768
ID_LIMIT = 2**62
U31 = 2**31
ZERO = bytes(32)
STATEMENT_SIZE = 352
STATEMENT_MAGIC = b"EDGESIG3"
TYPE_GAP, TYPE_INCOMPLETE, TYPE_RECOVERY, TYPE_ROTATION = 2, 3, 5, 8
BEFORE_CRC = ("blank", "slot_end", "bad_magic", "flags", "frame_len", "crc_mismatch")
WENT_BACK = re.compile(r"state field \d+ \(\w+\) \d+ is below \d+")

# A.5's fixed header, read here only for a header whose sig_alg or sig_len
# is not valid (S5): the decoder refuses such a header, but S2 to S4 come
# first and need its fields.
_HEADER = struct.Struct("<8sHHI16sQQII32s16s16sIBBH32sQQIIQQQQQIIIIII")
_HEADER_NAMES = ("magic", "format_version", "reserved", "header_len", "store_uuid",
                 "segment_id", "first_frame_id", "slot_index", "wrap_count", "prev_hash",
                 "device_id", "key_id", "key_epoch", "sig_alg", "key_src", "sig_len",
                 "fw_ver_hash", "rollback_ctr", "tail_segment_id", "tail_slot", "ring_slots",
                 "mono_hwm", "records_total", "lost_total", "dropped_total", "uplink_cursor",
                 "unexp_rst", "bo_event", "ecc_err_cnt", "clock_steps", "boot_seq",
                 "tables_len")
assert _HEADER.size == 248

# A.7, the statement fields the anchor checks read (offset, format).
_ST_FIELDS = {"device_id": (8, "16s"), "segment_id": (24, "<Q"), "frame_id": (32, "<Q"),
              "first_mono": (40, "<Q"), "record_count": (56, "<I"), "key_epoch": (60, "<I"),
              "key_id": (64, "16s"), "rollback_ctr": (80, "<Q"), "frame_hash": (152, "32s"),
              "sig_alg": (184, "<B"), "sig_len": (186, "<H"), "store_uuid": (192, "16s"),
              "tail_segment_id": (208, "<Q"), "mono_hwm": (216, "<Q"),
              "records_total": (224, "<Q"), "lost_total": (232, "<Q"),
              "dropped_total": (240, "<Q"), "uplink_cursor": (248, "<Q"),
              "wrap_count": (256, "<I"), "unexp_rst": (260, "<I"), "bo_event": (264, "<I"),
              "ecc_err_cnt": (268, "<I"), "clock_steps": (272, "<I"), "boot_seq": (276, "<I"),
              "tables_hash": (280, "32s"), "ring_slots": (316, "<I")}


def statement_fields(st: bytes) -> SimpleNamespace:
    return SimpleNamespace(**{name: struct.unpack_from(fmt, st, off)[0]
                              for name, (off, fmt) in _ST_FIELDS.items()})


# ---------------------------------------------------------------------------
# Which format (edgelog_verify.py's dispatch)
# ---------------------------------------------------------------------------

def _version_at(store: dec.Store, offset: int) -> int | None:
    raw = store.read_upto(offset, 10)
    if len(raw) < 10 or raw[:8] != dec.META_MAGIC:
        return None
    return struct.unpack_from("<H", raw, 8)[0]


def is_format6(store: dec.Store) -> bool:
    """A valid format 6 slot at 0 or 16384, or a format 6 slot's magic and
    version there and no valid format 5 slot (see Choices)."""
    valid, _ = dec.read_metadata6(store)
    if valid:
        return True
    if 6 not in (_version_at(store, 0), _version_at(store, META_SLOT)):
        return False
    size = store.size()
    for name, off in dec.META_SLOT_OFFSETS.items():
        try:
            dec.parse_metadata(store.read_upto(off, dec.META_SLOT_SIZE), name, off, size)
            return False
        except (dec.DecodeError, dec.NewerFormatError):
            pass
    return True


# ---------------------------------------------------------------------------
# CRC-32C search for frames after a walk's end (item 5), linear in the slot
# ---------------------------------------------------------------------------

_T = dec._CRC_TABLE


def _crc_reg(reg: int, data) -> int:
    """The CRC-32C register after `data` from `reg` (no init, no final xor)."""
    t = _T
    for b in data:
        reg = t[(reg ^ b) & 0xFF] ^ (reg >> 8)
    return reg


def _apply(matrix: list[int], v: int) -> int:
    r, i = 0, 0
    while v:
        if v & 1:
            r ^= matrix[i]
        v >>= 1
        i += 1
    return r


def _zero_matrices(count: int = 26) -> list[list[int]]:
    """Z[k]: the register after 2^k zero bytes, as 32 columns (GF(2))."""
    z = [[_T[(1 << i) & 0xFF] ^ ((1 << i) >> 8) for i in range(32)]]
    for _ in range(count - 1):
        m = z[-1]
        z.append([_apply(m, _apply(m, 1 << i)) for i in range(32)])
    return z


_Z = _zero_matrices()


def _zeros(n: int, v: int) -> int:
    """The register `v` moved on by n zero bytes."""
    k = 0
    while n:
        if n & 1:
            v = _apply(_Z[k], v)
        n >>= 1
        k += 1
    return v


def first_crc_frame(slot: bytes, after: int, sector: int, seed: bytes,
                    sig_len: int) -> int | None:
    """Item 5: the first sector boundary strictly after `after` holding
    `EF`, a flags byte without reserved bits, a valid frame_len that ends
    inside the slot, and a frame_crc that checks with `seed` (store_uuid,
    segment_id); None when there is none."""
    start = after + sector
    candidates = []
    for p in range(start, len(slot) - 3, sector):
        if slot[p:p + 2] != dec.FRAME_MAGIC or slot[p + 2] & dec.FRAME_FLAGS_RESERVED:
            continue
        try:
            frame_len, cur = dec.read_varint(slot, p + 3)
        except dec.BlockError:
            continue
        if frame_len < cur - p + sig_len + 4 or frame_len > len(slot) - p:
            continue
        candidates.append((p, p + frame_len - 4))
    if not candidates:
        return None
    # g[k]: the register (from 0) over slot[start : start + k * sector].
    g = [0]
    for p in range(start, len(slot), sector):
        g.append(_crc_reg(g[-1], slot[p:p + sector]))
    s0 = _crc_reg(0xFFFFFFFF, seed)
    for p, end in candidates:
        gp = g[(p - start) // sector]
        k = (end - start) // sector
        ge = _crc_reg(g[k], slot[start + k * sector:end])
        crc = _zeros(end - p, s0 ^ gp) ^ ge ^ 0xFFFFFFFF
        if crc == struct.unpack_from("<I", slot, end)[0]:
            return p
    return None


# ---------------------------------------------------------------------------
# The signed head, version 3 (A.11.1)
# ---------------------------------------------------------------------------

ANCHOR_MAX = ver.ANCHOR_MAX
_HEX_FIELD3 = {name: re.compile(rb'"%s":"([0-9a-f]{0,%d})"' % (name, limit))
               for name, limit in ((b"statement", 2 * STATEMENT_SIZE),
                                   (b"signature", 2 * dec.SIG_MAX))}


def statement_problem(st: bytes) -> str | None:
    if len(st) != STATEMENT_SIZE:
        return f"statement is {len(st)} bytes, not {STATEMENT_SIZE}"
    if st[:8] != STATEMENT_MAGIC:
        return "statement magic is not EDGESIG3"
    f = statement_fields(st)
    if f.sig_alg not in dec.SIG_LEN_FOR_ALG:
        return f"statement sig_alg {f.sig_alg} (0..3)"
    if f.sig_len != dec.SIG_LEN_FOR_ALG[f.sig_alg]:
        return f"statement sig_len {f.sig_len} is not {dec.SIG_ALG_NAMES[f.sig_alg]}'s"
    if st[188:192] != bytes(4):
        return "statement bytes 188..191 are not zero"
    return None


def render_head3(statement: bytes, signature: bytes) -> bytes:
    """The version 3 signed head line (A.11.1) of a statement and signature."""
    f = statement_fields(statement)
    return ('{"format":"edgelog-head","version":3,"device_id":"%s","store_uuid":"%s",'
            '"segment_id":%d,"frame_id":%d,"hash_head":"%s","rollback_ctr":%d,'
            '"tail_segment_id":%d,"key_epoch":%d,"key_id":"%s","sig_alg":"%s",'
            '"statement":"%s","signature":"%s"}\n'
            % (f.device_id.hex(), f.store_uuid.hex(), f.segment_id, f.frame_id,
               f.frame_hash.hex(), f.rollback_ctr, f.tail_segment_id, f.key_epoch,
               f.key_id.hex(), dec.SIG_ALG_NAMES[f.sig_alg], statement.hex(),
               signature.hex())).encode()


@dataclass
class Anchor3:
    statement: bytes
    signature: bytes
    fields: SimpleNamespace


def parse_anchor3(data: bytes) -> Anchor3 | str:
    """Exactly one well-formed version 3 signed head, or why not."""
    if len(data) > ANCHOR_MAX:
        return f"more than {ANCHOR_MAX} bytes"
    raw = {}
    for name, pattern in _HEX_FIELD3.items():
        m = pattern.search(data)
        if m is None or len(m.group(1)) % 2:
            return f"no lowercase hex {name.decode()} field"
        raw[name] = bytes.fromhex(m.group(1).decode("ascii"))
    statement, signature = raw[b"statement"], raw[b"signature"]
    problem = statement_problem(statement)
    if problem is not None:
        return problem
    f = statement_fields(statement)
    if len(signature) != f.sig_len:
        return f"signature is {len(signature)} bytes, the statement's sig_len is {f.sig_len}"
    if render_head3(statement, signature) != data:
        return ("not exactly the version 3 signed head its statement and signature print "
                "(one line, keys in order, no spaces, lowercase hex, a final newline)")
    return Anchor3(statement, signature, f)


# ---------------------------------------------------------------------------
# Report (A.11.3)
# ---------------------------------------------------------------------------

@dataclass
class FrameLine:
    segment_id: int
    frame_id: int
    frames: int
    offset: int
    reason: str
    key_epoch: int
    detail: str = ""


@dataclass
class SegmentLine:
    segment_id: int
    slot: int
    offset: int
    first_frame_id: int | None = None
    frames: int | None = None
    passed: int = 0
    reason: str | None = None
    key_epoch: int = 0
    detail: str = ""
    frame_lines: list[FrameLine] = field(default_factory=list)


@dataclass
class Note:
    note: str
    segment_id: int
    frame_id: int
    detail: str


@dataclass
class Report:
    segments: list[SegmentLine] = field(default_factory=list)
    findings: list[ver.Finding] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    verified_algs: list[int] = field(default_factory=list)
    passed_signed: list[bool] = field(default_factory=list)   # per passing frame

    def finding(self, reason: str, offset: int, detail: str) -> None:
        self.findings.append(ver.Finding(reason, offset, detail))

    @property
    def reasons(self) -> list[str]:
        codes = {s.reason for s in self.segments if s.reason is not None}
        codes |= {f.reason for s in self.segments for f in s.frame_lines}
        codes |= {f.reason for f in self.findings}
        return sorted(codes)

    @property
    def verdict(self) -> str:
        ok = all(s.reason is None for s in self.segments) and not self.findings
        return "PASS" if ok else "FAIL"

    @property
    def frames(self) -> int:
        return sum(s.frames for s in self.segments if s.frames is not None)

    @property
    def frames_passed(self) -> int:
        return sum(s.passed for s in self.segments)

    @property
    def signed(self) -> bool:
        return bool(self.passed_signed) and all(self.passed_signed)

    @property
    def sig_alg(self) -> str:
        if not self.verified_algs:
            return "unsigned"
        return dec.SIG_ALG_NAMES.get(self.verified_algs[-1], str(self.verified_algs[-1]))


# ---------------------------------------------------------------------------
# Slots
# ---------------------------------------------------------------------------

@dataclass
class View:
    """What one ring slot holds, read with one metadata slot's geometry."""
    slot: int
    base: int                       # image offset of the slot
    magic: bool = False             # S1
    header_ok: bool = False         # got past S2
    s2_detail: str = ""
    hdr: object = None              # dec.SegmentHeader (or the raw fields, S5)
    sig_problem: str | None = None  # S5
    walk: dec.SegmentWalk | None = None


def _raw_header(data: bytes) -> SimpleNamespace:
    h = SimpleNamespace(**dict(zip(_HEADER_NAMES, _HEADER.unpack_from(data, 0))))
    h.tables = dec.decode_tables(data[248:248 + h.tables_len])
    return h


def _bounds_problem(h, ring_slots: int) -> str | None:
    """S2's bounds (A.9's fit, the parts S3 to S9 do not check)."""
    for name in ("segment_id", "first_frame_id", "rollback_ctr", "mono_hwm"):
        if getattr(h, name) >= ID_LIMIT:
            return f"{name} {getattr(h, name)} is 2^62 or more"
    for name in ("unexp_rst", "boot_seq"):
        if getattr(h, name) >= U31:
            return f"{name} {getattr(h, name)} is 2^31 or more"
    if h.tail_segment_id == 0:
        return "tail_segment_id 0"
    if h.tail_slot >= ring_slots:
        return f"tail_slot {h.tail_slot} is not below ring_slots {ring_slots}"
    if not dec.bad_slots_fit(h.tables.bad_slots, ring_slots):
        return "a bad slot outside the ring, twice, or fewer than two good slots"
    return None


def read_view(store: dec.Store, meta: dec.Metadata6, slot: int) -> View:
    base = meta.slot_offset(slot)
    data = store.read_upto(base, meta.segment_size)
    v = View(slot, base)
    if data[:8] != dec.SEG_MAGIC:
        return v
    v.magic = True
    try:
        v.walk = dec.walk_segment(data, meta.sector_size)
        v.hdr = v.walk.header
    except dec.SegmentError as exc:
        if exc.reason not in ("sig_alg", "sig_len"):
            v.s2_detail = f"segment header not valid: {exc.reason}: {exc.detail}"
            return v
        v.hdr, v.sig_problem = _raw_header(data), exc.detail
    problem = _bounds_problem(v.hdr, meta.ring_slots)
    if problem is not None:
        v.s2_detail = f"segment header outside A.9's bounds: {problem}"
        return v
    v.header_ok = True
    return v


def fits(v: View, meta: dec.Metadata6) -> bool:
    """A.9: the header fits the store (and its walk could be read)."""
    if not v.header_ok or v.walk is None:
        return False
    h = v.hdr
    return (h.store_uuid == meta.store_uuid and h.slot_index == v.slot
            and h.ring_slots == meta.ring_slots and h.tail_segment_id <= h.segment_id
            and h.segment_id - h.tail_segment_id < meta.ring_slots)


def next_slot(s: int, bad: set[int], ring_slots: int) -> int | None:
    for _ in range(ring_slots):
        s = (s + 1) % ring_slots
        if s not in bad:
            return s
    return None


def prev_slot(s: int, bad: set[int], ring_slots: int) -> int | None:
    for _ in range(ring_slots):
        s = (s - 1) % ring_slots
        if s not in bad:
            return s
    return None


def bad_of(tables) -> set[int]:
    return {b[0] for b in tables.bad_slots}


@dataclass
class FrameRef:
    """A frame that passed: what later checks compare with."""
    segment_id: int
    slot: int
    hdr: object
    frame: dec.SegmentFrame


@dataclass
class SegInfo:
    e: int
    slot: int | None
    past_s4: bool = False
    ffid: int = 0
    header_len: int = 0
    walk: dec.SegmentWalk | None = None
    last_hist_passed: FrameRef | None = None


def walk_end_reason(walk: dec.SegmentWalk) -> tuple[str, str]:
    """F1's (and item 5's) reason for where a walk ended."""
    if walk.end_reason == "blank":
        return "gap", "the walk ended at an all-zero sector (deleted)"
    if walk.end_reason == "state" and WENT_BACK.fullmatch(walk.end_detail or ""):
        return "sequence_regression", f"state list value goes back: {walk.end_detail}"
    return "crc_mismatch", f"the walk ended: {walk.end_reason}" + (
        f" ({walk.end_detail})" if walk.end_detail else "")


# ---------------------------------------------------------------------------
# The verifier
# ---------------------------------------------------------------------------

class Verifier:
    def __init__(self, store: dec.Store, keys: list, anchor: bytes | None,
                 allow_fw: set[bytes] | None, allow_unsigned: bool):
        self.store = store
        self.keys = keys
        self.trust = ver.Trust(keys)
        self.anchor_data = anchor
        self.allow_fw = allow_fw
        self.allow_unsigned = allow_unsigned
        self.report = Report()
        self._views: dict[tuple, View] = {}
        self.P: FrameRef | None = None               # the last passing frame
        self.seq_high: dict[bytes, int] = {}         # source -> highest passing seq
        self.any_verified = False
        self.endorsed_without_secret: set[bytes] = set()
        self.record_notes: list[tuple[tuple, Note]] = []
        self.item5: list[tuple[int, str, str]] = []  # (offset, reason, detail)
        self.found_after_h = False                   # item 5 found a frame after H's walk
        self.anchor: Anchor3 | str | None = None
        self.anchor_held: tuple[int, bytes] | None = None   # (segment, statement)
        self.first_above_anchor: FrameRef | None = None
        self.head_ref: FrameRef | None = None        # the chosen slot's head frame, passed
        self.start_info: SegInfo | None = None
        self.start_first_passed = False

    # -- slots ---------------------------------------------------------------

    def view(self, slot: int, meta: dec.Metadata6 | None = None) -> View:
        meta = meta or self.meta
        key = (meta.slot_offset(slot), meta.segment_size, meta.sector_size, meta.ring_slots)
        if key not in self._views:
            self._views[key] = read_view(self.store, meta, slot)
        return self._views[key]

    def forget(self, slot: int | None) -> None:
        if slot is None:
            return
        m = self.meta
        self._views.pop((m.slot_offset(slot), m.segment_size, m.sector_size, m.ring_slots),
                        None)

    def head_index(self, meta: dec.Metadata6) -> int | None:
        """A.9 step 1: the index in its walk of the frame `meta` names."""
        v = self.view(meta.head_slot, meta)
        if not fits(v, meta) or v.hdr.segment_id != meta.head_segment_id:
            return None
        for i, f in enumerate(v.walk.frames):
            if (f.offset == meta.head_offset and f.frame_id == meta.head_frame_id
                    and f.frame_crc == meta.head_crc and f.frame_hash == meta.hash_head):
                return i
        return None

    # -- A.9 steps 1 and 2 (item 2) ---------------------------------------------

    def scan(self, valid: list[dec.Metadata6]) -> None:
        self.valid = valid
        self.checked = [m for m in valid if m.head_frame_id and self.head_index(m) is not None]
        if self.checked:
            meta, mode = self.checked[0], "head"
        else:
            empty = [m for m in valid if m.head_frame_id == 0]
            meta, mode = (empty[0], "empty") if empty else (valid[0], "missing")
        self.meta, self.mode = meta, mode
        self.meta_base = META_OFFSETS[meta.slot_name]
        rs = meta.ring_slots
        H, s_H, f_h, h_hash = 0, None, 0, ZERO
        scan_start = None
        if mode == "head":
            v = self.view(meta.head_slot)
            last = v.walk.frames[-1]
            H, s_H, f_h, h_hash = meta.head_segment_id, meta.head_slot, last.frame_id, \
                last.frame_hash
            bad = bad_of(v.hdr.tables)
            s = next_slot(s_H, bad, rs)
        elif mode == "empty":
            H = meta.tail_segment_id - 1
            bad = bad_of(meta.tables)
            s = scan_start = meta.tail_slot
        else:
            H, s_H = meta.head_segment_id, meta.head_slot
            v = self.view(s_H)
            if v.walk is not None and v.header_ok and v.hdr.segment_id == H:
                held = [f for f in v.walk.frames if f.frame_id <= meta.head_frame_id]
                if held:
                    f_h, h_hash = held[-1].frame_id, held[-1].frame_hash
            s = None
        found = mode == "head"
        for _ in range(rs):
            if s is None:
                break
            v = self.view(s)
            if not fits(v, meta) or v.hdr.segment_id != H + 1 or not v.walk.frames:
                break
            h = v.hdr
            if h.first_frame_id != f_h + 1 or h.prev_hash != h_hash:
                break
            last = v.walk.frames[-1]
            H, s_H, f_h, h_hash, found = h.segment_id, s, last.frame_id, last.frame_hash, True
            bad = bad_of(h.tables)
            s = next_slot(s, bad, rs)
        if mode == "empty" and not found:
            H = 0
        self.H, self.s_H, self.F_H, self.hash_FH = H, s_H, f_h, h_hash
        self.scan_start = scan_start

    def plan_range(self) -> None:
        meta, H, rs = self.meta, self.H, self.meta.ring_slots
        hv = self.view(self.s_H) if H and self.s_H is not None else None
        self.h_fits = hv is not None and fits(hv, meta) and hv.hdr.segment_id == H
        self.bad = bad_of(hv.hdr.tables if self.h_fits else meta.tables)
        self.good = rs - len(self.bad)
        self.given_up = False
        self.start = 1
        self.plan: list[tuple[int, int | None]] = []
        if H == 0:
            return
        T = hv.hdr.tail_segment_id if self.h_fits else meta.tail_segment_id
        self.T = T
        start = T
        if meta.clean_flag == 0 and T < H and H - T + 1 == self.good:
            ts = next_slot(self.s_H, self.bad, rs)
            tv = self.view(ts) if ts is not None else None
            if not (tv is not None and fits(tv, meta) and tv.hdr.segment_id == T
                    and tv.walk.frames):
                start, self.given_up = T + 1, True
        start = max(1, min(start, H))
        low = H - self.good + 1
        if start < low:
            if not self.h_fits:
                self.report.finding(
                    "metadata_mismatch", self.meta_base + 128,
                    f"metadata slot {meta.slot_name} tail_segment_id {T}: the range {start}.."
                    f"{H} is longer than the {self.good} good ring slots; cut to {low}..{H}")
            start = low
        self.start = start
        slots: dict[int, int | None] = {}
        used: set[int] = set()
        s: int | None = self.s_H
        for e in range(H, start - 1, -1):
            if e != H and s is not None:
                s = prev_slot(s, self.bad, rs)
                if s in used:
                    s = None
            if s is not None:
                used.add(s)
            slots[e] = s
        self.plan = [(e, slots[e]) for e in range(start, H + 1)]

    # -- item 3 ----------------------------------------------------------------

    def past_s4(self, v: View, e: int, slot: int) -> bool:
        return (v.header_ok and v.hdr.store_uuid == self.meta.store_uuid
                and v.hdr.device_id == self.meta.device_id
                and v.hdr.segment_id == e and v.hdr.slot_index == slot)

    def ffid_problem(self, prev: SegInfo, ffid: int) -> str | None:
        """S6's first_frame_id checks of the segment after `prev`."""
        diff = ffid - prev.ffid
        if diff <= 0:
            return (f"first_frame_id {ffid} is not above segment {prev.e}'s "
                    f"{prev.ffid}")
        cap = (self.meta.segment_size - prev.header_len) // self.meta.sector_size
        if diff > cap:
            return (f"first_frame_id {ffid}: segment {prev.e} would hold {diff} frames, "
                    f"its slot holds at most {cap}")
        if (prev.walk is not None and prev.walk.end_reason == "slot_end"
                and len(prev.walk.frames) < diff):
            return (f"segment {prev.e}'s walk ended slot_end before its chain point "
                    f"(frame {ffid - 1})")
        return None

    def run_range(self) -> None:
        prev: SegInfo | None = None
        for i, (e, slot) in enumerate(self.plan):
            nxt = self.plan[i + 1] if i + 1 < len(self.plan) else None
            info = self.check_segment(e, slot, prev, nxt)
            if e == self.start:
                self.start_info = info
            if prev is not None:
                self.forget(prev.slot)
            prev = info

    def history_count(self, e: int, info: SegInfo, v: View, nxt) -> int:
        if e == self.H:
            if v.walk is None:
                return 0
            if self.mode == "missing":
                if not info.past_s4:
                    return 0
                return sum(1 for f in v.walk.frames if f.frame_id <= self.meta.head_frame_id)
            return len(v.walk.frames)
        if info.past_s4 and nxt is not None and nxt[1] is not None:
            nv = self.view(nxt[1])
            if (self.past_s4(nv, nxt[0], nxt[1])
                    and self.ffid_problem(info, nv.hdr.first_frame_id) is None):
                return nv.hdr.first_frame_id - info.ffid
        return len(v.walk.frames) if v.walk is not None else 0

    def check_segment(self, e: int, slot: int | None, prev: SegInfo | None, nxt) -> SegInfo:
        meta = self.meta
        info = SegInfo(e, slot)
        line = SegmentLine(e, slot if slot is not None else 0,
                           meta.slot_offset(slot) if slot is not None else 0)
        self.report.segments.append(line)

        def fail(reason: str, detail: str, offset: int | None = None) -> SegInfo:
            line.reason, line.detail = reason, detail
            if offset is not None:
                line.offset = offset
            return info

        if slot is None:
            return fail("gap", "no ring slot is left for this id")
        v = self.view(slot)
        if not v.magic:
            return fail("gap", "no segment header in the slot (deleted)")
        if not v.header_ok:
            return fail("crc_mismatch", v.s2_detail)
        h = v.hdr
        line.key_epoch = h.key_epoch
        reason = None
        if h.store_uuid != meta.store_uuid:
            reason = ("foreign_segment", "store_uuid is not this store's", None)
        elif h.device_id != meta.device_id:
            reason = ("foreign_segment", "device_id is not this store's", None)
        elif h.segment_id != e or h.slot_index != slot:
            detail = (f"segment {h.segment_id} written for slot {h.slot_index}, expected "
                      f"segment {e} in slot {slot}")
            code = ("reordered" if h.slot_index != slot
                    else "gap" if h.segment_id > e else "chain_break")
            reason = (code, detail, None)
        else:
            info.past_s4, info.ffid, info.header_len = True, h.first_frame_id, h.header_len
            line.first_frame_id = h.first_frame_id
        info.walk = v.walk
        n_hist = self.history_count(e, info, v, nxt)
        line.frames = n_hist
        if reason is None and v.sig_problem is not None:
            reason = ("seal_mismatch", v.sig_problem, v.base + 124)
        if reason is None:
            reason = self.s6(e, h, prev)
        key = None
        if reason is None:
            if h.sig_alg == 0:
                if not self.allow_unsigned:
                    reason = ("unsigned", "segment is not signed", None)
                elif self.any_verified:
                    reason = ("unsigned", "segment is not signed after a frame whose "
                              "signature verified (a downgrade)", None)
                elif self.signed_anchor:
                    reason = ("unsigned", "segment is not signed, and the anchor is a signed "
                              "head that verifies with a --trust key (a downgrade)", None)
            else:
                entry = self.trust.active.get(h.key_id)
                if entry is None or h.key_epoch not in entry[1] or entry[0].alg != h.sig_alg:
                    why = (" (an endorsed HMAC key: give its secret with --trust)"
                           if h.key_id in self.endorsed_without_secret else "")
                    reason = ("unknown_key", f"key_id {h.key_id.hex()} epoch {h.key_epoch} "
                              f"{dec.SIG_ALG_NAMES.get(h.sig_alg, h.sig_alg)} is not a key "
                              f"trusted here{why}", None)
                else:
                    key = entry[0]
        if v.walk is not None and info.past_s4:
            self.record_anchor_hold(e, info, v, n_hist)
        if reason is not None:
            fail(*reason)
            if info.past_s4 and v.walk is not None:
                self.outside_history(e, v, n_hist, None, s1_to_s8=False)
            return info
        self.check_frames(e, v, info, line, key, n_hist, prev)
        self.outside_history(e, v, n_hist, key, s1_to_s8=True)
        return info

    def s6(self, e: int, h, prev: SegInfo | None):
        if e == 1 and (h.first_frame_id != 1 or h.prev_hash != ZERO):
            return ("chain_break", "segment 1 has a first_frame_id other than 1 or a "
                    "non-zero prev_hash", None)
        if prev is not None and prev.past_s4:
            problem = self.ffid_problem(prev, h.first_frame_id)
            if problem is not None:
                return ("chain_break", problem, None)
            cp = prev.last_hist_passed
            if (cp is not None and cp.frame.frame_id == h.first_frame_id - 1
                    and cp.frame.frame_hash != h.prev_hash):
                return ("chain_break", f"prev_hash is not the frame_hash of frame "
                        f"{cp.frame.frame_id} (segment {prev.e}'s chain point)", None)
        return None

    def chain_point(self, h, prev: SegInfo | None) -> FrameRef | None:
        if prev is None or not prev.past_s4:
            return None
        cp = prev.last_hist_passed
        if cp is not None and cp.frame.frame_id == h.first_frame_id - 1:
            return cp
        return None

    def s9(self, e: int, h, prev: SegInfo | None):
        P = self.P
        if self.allow_fw is not None and h.fw_ver_hash not in self.allow_fw:
            return ("fw_not_allowed", f"fw_ver_hash {h.fw_ver_hash.hex()} is not in --allow-fw")
        if P is not None and h.rollback_ctr < P.hdr.rollback_ctr:
            return ("rollback", f"rollback_ctr {h.rollback_ctr} is below frame "
                    f"{P.frame.frame_id}'s {P.hdr.rollback_ctr}")
        if P is not None:
            for name in ("wrap_count", "unexp_rst", "boot_seq", "tail_segment_id"):
                if getattr(h, name) < getattr(P.hdr, name):
                    return ("sequence_regression", f"header {name} {getattr(h, name)} is below "
                            f"frame {P.frame.frame_id}'s {getattr(P.hdr, name)}")
            if h.ring_slots != P.hdr.ring_slots:
                return ("sequence_regression", f"header ring_slots {h.ring_slots} is not frame "
                        f"{P.frame.frame_id}'s {P.hdr.ring_slots}")
        if h.tail_segment_id > e:
            return ("sequence_regression", f"header tail_segment_id {h.tail_segment_id} is "
                    f"above the segment's id {e}")
        own_good = h.ring_slots - len(h.tables.bad_slots)
        if e - h.tail_segment_id + 1 > own_good:
            return ("sequence_regression", f"segments {h.tail_segment_id}..{e} are more than "
                    f"the {own_good} good slots of its own tables")
        if P is not None:
            st = P.frame.state
            for name in ("mono_hwm", "records_total", "lost_total", "dropped_total",
                         "uplink_cursor", "bo_event", "ecc_err_cnt", "clock_steps"):
                if getattr(h, name) < getattr(st, name):
                    return ("sequence_regression", f"header {name} {getattr(h, name)} is below "
                            f"the state after frame {P.frame.frame_id}, {getattr(st, name)}")
            mine = {name: seq for name, seq in h.tables.sources}
            for name, seq in st.tables.sources:
                if name not in mine or mine[name] < seq:
                    return ("sequence_regression", f"source {name.decode('ascii')} last_seq "
                            f"{mine.get(name)} in the header's tables, {seq} after frame "
                            f"{P.frame.frame_id}")
        cp = self.chain_point(h, prev)
        if cp is not None:
            st = cp.frame.state
            for name in ("mono_hwm", "records_total", "dropped_total", "uplink_cursor",
                         "bo_event", "clock_steps"):
                if getattr(h, name) != getattr(st, name):
                    return ("seal_mismatch", f"header {name} {getattr(h, name)} is not the "
                            f"chain point's (frame {cp.frame.frame_id}) {getattr(st, name)}")
            if [list(s) for s in h.tables.sources] != [list(s) for s in st.tables.sources]:
                return ("seal_mismatch", f"header source table is not the chain point's "
                        f"(frame {cp.frame.frame_id})")
            cbad = list(st.tables.bad_slots)
            if list(h.tables.bad_slots)[:len(cbad)] != cbad:
                return ("seal_mismatch", "header bad-slot list does not begin with the chain "
                        f"point's (frame {cp.frame.frame_id})")
        return None

    def f6(self, h, f: dec.SegmentFrame, header_seq: dict[bytes, int]) -> str | None:
        if f.records:
            floor = h.mono_hwm if self.P is None else max(h.mono_hwm, self.P.frame.state.mono_hwm)
            if f.records[0].mono_ctr <= floor:
                return f"first mono_ctr {f.records[0].mono_ctr} is not above {floor}"
        own: dict[bytes, int] = {}
        for rec in f.records:
            highs = [x for x in (header_seq.get(rec.source), self.seq_high.get(rec.source),
                                 own.get(rec.source)) if x is not None]
            if highs and rec.seq <= max(highs):
                return (f"record seq {rec.seq} of source {rec.source.decode('ascii')} is not "
                        f"above {max(highs)}")
            own[rec.source] = rec.seq
        return None

    def check_frames(self, e: int, v: View, info: SegInfo, line: SegmentLine, key,
                     n_hist: int, prev: SegInfo | None) -> None:
        h, walk = v.hdr, v.walk
        header_seq = {name: seq for name, seq in h.tables.sources}
        retired = False
        s9_checked = False
        seg_reason = None
        first_fail: FrameLine | None = None
        pending = []
        signer = SimpleNamespace(key_id=h.key_id, key_epoch=h.key_epoch)

        def frame_fail(frame_id: int, frames: int, offset: int, reason: str, detail: str):
            nonlocal first_fail
            fl = FrameLine(e, frame_id, frames, offset, reason, h.key_epoch, detail)
            line.frame_lines.append(fl)
            if first_fail is None:
                first_fail = fl

        for i in range(n_hist):
            frame_id = info.ffid + i if info.past_s4 else h.first_frame_id + i
            if i >= len(walk.frames):                                         # F1
                code, detail = walk_end_reason(walk)
                frame_fail(frame_id, n_hist - i, v.base + walk.end_offset, code,
                           f"frames {frame_id}..{info.ffid + n_hist - 1} are not in the "
                           f"walk: {detail}")
                break
            f = walk.frames[i]
            off = v.base + f.offset
            if retired:                                                       # F2
                frame_fail(f.frame_id, 1, off, "unknown_key", "a rotation earlier in the "
                           "segment retired its key")
                continue
            signed = False                                                    # F3
            if h.sig_alg != 0:
                if not ver.signature_verifies(key, h.sig_alg, f.statement, f.signature):
                    frame_fail(f.frame_id, 1, off, "bad_signature",
                               "the statement's signature does not verify")
                    continue
                signed = True
                self.any_verified = True
                self.report.verified_algs.append(h.sig_alg)
            rotations, problem = [], None
            for rec in f.records:
                if rec.type != TYPE_ROTATION:
                    continue
                r = ver.check_rotation(rec.payload, signer, key if signed else None,
                                       h.device_id, self.trust.given)
                if isinstance(r, str):
                    problem = r
                    break
                rotations.append(r)
            if problem is not None:
                frame_fail(f.frame_id, 1, off, "bad_signature", problem)
                continue
            if not s9_checked:                                                # S9
                s9_checked = True
                seg_reason = self.s9(e, h, prev)
                if seg_reason is not None:
                    break
            problem = self.f6(h, f, header_seq)                               # F6
            if problem is not None:
                frame_fail(f.frame_id, 1, off, "sequence_regression", problem)
                continue
            # The frame passes.
            ref = FrameRef(e, v.slot, h, f)
            self.P = ref
            line.passed += 1
            self.report.passed_signed.append(signed)
            for rec in f.records:
                if rec.seq > self.seq_high.get(rec.source, -1):
                    self.seq_high[rec.source] = rec.seq
            self.list_evidence(e, f)
            if rotations:
                retired = True
                pending.extend(rotations)
            if i == n_hist - 1:
                info.last_hist_passed = ref
            if i == 0 and e == self.start:
                self.start_first_passed = True
            m = self.meta
            if (self.mode == "head" and e == m.head_segment_id and v.slot == m.head_slot
                    and f.frame_id == m.head_frame_id and f.offset == m.head_offset):
                self.head_ref = ref
            if (isinstance(self.anchor, Anchor3) and self.first_above_anchor is None
                    and f.frame_id > self.anchor.fields.frame_id):
                self.first_above_anchor = ref

        if seg_reason is not None:
            line.reason, line.detail = seg_reason[0], seg_reason[1]
        elif first_fail is not None:
            line.reason, line.detail, line.offset = first_fail.reason, first_fail.detail, \
                first_fail.offset
        elif n_hist == 0:
            if not walk.frames:
                code, detail = walk_end_reason(walk)
                line.reason, line.offset = code, v.base + walk.end_offset
                line.detail = f"the slot holds no committed frame: {detail}"
            else:
                line.reason, line.detail = "gap", "the slot holds none of the history's frames"
        for rotation in pending:
            self.trust.active.pop(h.key_id, None)
            if rotation.new_key is None:
                self.endorsed_without_secret.add(rotation.new_key_id)
                continue
            self.trust.trust(rotation.new_key_id, rotation.new_key,
                             frozenset({rotation.new_epoch}))

    def list_evidence(self, e: int, f: dec.SegmentFrame) -> None:
        for rec in f.records:
            if rec.type not in (TYPE_GAP, TYPE_INCOMPLETE, TYPE_RECOVERY):
                continue
            text = rec.payload.decode("utf-8", "replace")
            if rec.type == TYPE_GAP:
                obj = ver.payload_object(rec.payload)
                code = None if obj is None else obj.get("reason")
                if not isinstance(code, str) or code not in ver.GAP_REASONS:
                    continue
                note = Note(code, e, f.frame_id, f"gap record in frame {f.frame_id}: {text}")
            else:
                kind = "incomplete" if rec.type == TYPE_INCOMPLETE else "recovery"
                note = Note("power_cut_explained", e, f.frame_id, f"{kind} record: {text}")
            self.record_notes.append(((e, f.frame_id), note))

    def record_anchor_hold(self, e: int, info: SegInfo, v: View, n_hist: int) -> None:
        if not isinstance(self.anchor, Anchor3) or self.anchor_held is not None:
            return
        A = self.anchor.fields.frame_id
        i = A - info.ffid
        if 0 <= i < n_hist and i < len(v.walk.frames):
            self.anchor_held = (e, v.walk.frames[i].statement)

    # -- item 5, per segment ------------------------------------------------------

    def outside_history(self, e: int, v: View, n_hist: int, key, s1_to_s8: bool) -> None:
        walk, h = v.walk, v.hdr
        frames = walk.frames
        if e == self.H:
            if walk.end_reason not in BEFORE_CRC:
                self.whole_frame_finding(v)
            pos = self.search(v)
            if pos is not None:
                self.found_after_h = True
                self.item5.append((v.base + pos, "truncated_tail",
                                   f"a frame of segment {e} at slot offset {pos}, after where "
                                   f"its walk stopped ({walk.end_reason}): a power cut tears "
                                   "only the frame being written"))
            return
        if len(frames) >= n_hist:
            if s1_to_s8:
                run_start = None
                forked = False
                for f in frames[n_hist:]:
                    ok = (h.sig_alg == 0 or ver.signature_verifies(
                        key, h.sig_alg, f.statement, f.signature))
                    if ok:
                        if run_start is not None:
                            self.not_continued(e, run_start)
                            run_start = None
                        if not forked:
                            forked = True
                            self.item5.append((v.base + f.offset, "fork",
                                               f"frame {f.frame_id} of segment {e}, past its "
                                               f"chain point, is signed with the segment's "
                                               "key: a second continuation of the chain"))
                    elif run_start is None:
                        run_start = f
                if run_start is not None:
                    self.not_continued(e, run_start)
            if walk.end_reason not in BEFORE_CRC:
                self.whole_frame_finding(v)
        pos = self.search(v)
        if pos is not None:
            fid = h.first_frame_id + len(frames)
            self.record_notes.append(((e, fid), Note(
                "not_continued", e, fid,
                f"a CRC-valid frame of segment {e} at slot offset {pos}, after where its walk "
                f"stopped ({walk.end_reason}): never continued")))

    def not_continued(self, e: int, f: dec.SegmentFrame) -> None:
        self.record_notes.append(((e, f.frame_id), Note(
            "not_continued", e, f.frame_id,
            f"frames from {f.frame_id} of segment {e} lie past its chain point and do not "
            "verify with the segment's key: never continued")))

    def whole_frame_finding(self, v: View) -> None:
        code, detail = walk_end_reason(v.walk)
        if code != "sequence_regression":
            code = "crc_mismatch"
        self.item5.append((v.base + v.walk.end_offset, code,
                           f"a frame whose CRC checks does not decode ({v.walk.end_reason}: "
                           f"{v.walk.end_detail}): neither a writer nor a power cut leaves one"))

    def search(self, v: View) -> int | None:
        walk = v.walk
        if walk.end_reason == "slot_end":
            return None
        data = self.store.read_upto(v.base, self.meta.segment_size)
        seed = v.hdr.store_uuid + struct.pack("<Q", v.hdr.segment_id)
        return first_crc_frame(data, walk.end_offset, self.meta.sector_size, seed,
                               v.hdr.sig_len)

    def beyond_the_head(self) -> None:
        in_range = {s for _, s in self.plan if s is not None}
        meta, H = self.meta, self.H
        for slot in range(meta.ring_slots):
            if slot in in_range:
                continue
            v = read_view(self.store, meta, slot)
            if not v.header_ok or v.walk is None:
                continue
            h = v.hdr
            if (h.store_uuid != meta.store_uuid or h.device_id != meta.device_id
                    or h.slot_index != slot or h.segment_id < H + 1):
                continue
            need = 1 if h.segment_id > H + 1 else 2
            count = 0
            for f in v.walk.frames:
                if h.sig_alg == 0:
                    ok = self.allow_unsigned
                else:
                    entry = self.trust.ever.get(h.key_id)
                    ok = (entry is not None and h.key_epoch in entry[1]
                          and entry[0].alg == h.sig_alg
                          and ver.signature_verifies(entry[0], h.sig_alg, f.statement,
                                                     f.signature))
                if ok:
                    count += 1
                    if count >= need:
                        break
            if count >= need:
                self.item5.append((v.base, "truncated_tail",
                                   f"slot {slot} holds segment {h.segment_id} with committed "
                                   f"frames, beyond the head segment {H}: the newest history "
                                   "was cut away"))

    # -- item 4 --------------------------------------------------------------------

    def check_metadata(self) -> None:
        meta, rep = self.meta, self.report
        if not self.checked:
            named = [m for m in self.valid if m.head_frame_id]
            if named:
                m = named[0]
                rep.finding("truncated_tail", m.slot_offset(m.head_slot),
                            f"no valid metadata slot's head frame checks; slot {m.slot_name} "
                            f"names frame {m.head_frame_id} of segment {m.head_segment_id} "
                            f"in ring slot {m.head_slot} at offset {m.head_offset}")
        if self.mode == "head":
            for m in self.valid:
                if m is not meta and m.generation > meta.generation:
                    rep.finding("hash_mismatch", META_OFFSETS[m.slot_name] + 88,
                                f"metadata slot {m.slot_name} (generation {m.generation}) "
                                f"names frame {m.head_frame_id} that the ring does not hold; "
                                f"slot {meta.slot_name} (generation {meta.generation}) chosen")
        ref = self.head_ref
        if ref is None:
            return
        h, st = ref.hdr, ref.frame.state
        tail, tail_slot = h.tail_segment_id, h.tail_slot
        checks = []
        if self.given_up:
            # Either side of recovery (see Choices): the sealed tail, or the
            # tail moved on by one good slot; anything else is held to the latter.
            moved = next_slot(h.tail_slot, self.bad, meta.ring_slots)
            if (meta.tail_segment_id, meta.tail_slot) != (tail, tail_slot):
                tail, tail_slot = tail + 1, moved
        checks += [(56, "ring_slots", meta.ring_slots, h.ring_slots, "eq"),
                   (124, "wrap_count", meta.wrap_count, h.wrap_count, "eq"),
                   (128, "tail_segment_id", meta.tail_segment_id, tail, "eq"),
                   (136, "tail_slot", meta.tail_slot, tail_slot, "eq"),
                   (140, "unexp_rst", meta.unexp_rst, h.unexp_rst, "ge"),
                   (144, "rollback_ctr", meta.rollback_ctr, h.rollback_ctr, "ge"),
                   (152, "mono_hwm", meta.mono_hwm, st.mono_hwm, "eq"),
                   (160, "records_total", meta.records_total, st.records_total, "eq"),
                   (168, "lost_total", meta.lost_total, st.lost_total, "eq"),
                   (176, "dropped_total", meta.dropped_total, st.dropped_total, "eq"),
                   (184, "uplink_cursor", meta.uplink_cursor, st.uplink_cursor, "ge"),
                   (192, "bo_event", meta.bo_event, st.bo_event, "eq"),
                   (196, "ecc_err_cnt", meta.ecc_err_cnt, st.ecc_err_cnt, "ge"),
                   (200, "clock_steps", meta.clock_steps, st.clock_steps, "eq"),
                   (204, "boot_seq", meta.boot_seq, h.boot_seq, "ge")]
        raw = self.store.read_upto(self.meta_base + 512, meta.tables_len)
        checks.append((512, "tables_hash", hashlib.sha256(raw).hexdigest(),
                       ref.frame.statement[280:312].hex(), "eq"))
        for offset, name, have, sealed, rule in checks:
            bad = (have != sealed) if rule == "eq" else (have < sealed)
            if bad:
                rel = "is not" if rule == "eq" else "is below"
                rep.finding("metadata_mismatch", self.meta_base + offset,
                            f"metadata slot {meta.slot_name} {name} {have} {rel} the sealed "
                            f"{sealed} of frame {ref.frame.frame_id} (segment "
                            f"{ref.segment_id}), the frame it names")

    # -- item 6 --------------------------------------------------------------------

    def power_cuts(self) -> list[Note]:
        meta, H = self.meta, self.H
        torn_walk = False
        if H and self.s_H is not None:
            v = self.view(self.s_H)
            torn_walk = (v.walk is not None and v.header_ok and v.hdr.segment_id == H
                         and v.walk.end_reason in BEFORE_CRC
                         and v.walk.end_reason not in ("blank", "slot_end"))
            ns = next_slot(self.s_H, self.bad, meta.ring_slots)
        else:
            ns = self.scan_start
        torn_next = None
        if ns is not None:
            nv = self.view(ns)
            if (fits(nv, meta) and nv.hdr.segment_id == H + 1
                    and nv.hdr.first_frame_id == self.F_H + 1
                    and nv.hdr.prev_hash == self.hash_FH and not nv.walk.frames):
                torn_next = nv
        notes = []
        if meta.clean_flag == 0:
            if (torn_walk or torn_next is not None) and not self.found_after_h:
                seg = H + 1 if torn_next is not None else H
                notes.append(Note(
                    "torn_tail_power_cut", seg, self.F_H + 1,
                    f"frame {self.F_H + 1} (segment {seg}) after the head is torn and the "
                    "image was taken before recovery: a commit cut by a power cut, or "
                    "sectors an older lap of the ring left after the segment's last frame; "
                    "neither was acknowledged"))
        elif torn_next is not None:
            self.report.finding("truncated_tail", torn_next.base,
                                f"slot {torn_next.slot} holds segment {H + 1}'s header without "
                                "a valid frame, but the store was closed cleanly: no commit "
                                "was in flight")
        return notes

    # -- item 7 --------------------------------------------------------------------

    def check_anchor(self) -> None:
        rep, meta, a = self.report, self.meta, self.anchor
        if isinstance(a, str):
            rep.finding("anchor_malformed", 0, f"anchor: {a}")
            return
        st = a.fields
        if st.sig_alg == 0:
            if not self.allow_unsigned:
                rep.finding("anchor_bad_signature", 0, "anchor is unsigned")
                return
        else:
            entry = self.trust.ever.get(st.key_id)
            if not (entry is not None and st.key_epoch in entry[1]
                    and entry[0].alg == st.sig_alg
                    and ver.signature_verifies(entry[0], st.sig_alg, a.statement,
                                               a.signature)):
                rep.finding("anchor_bad_signature", 0,
                            f"anchor signature does not verify with a key trusted at its "
                            f"epoch {st.key_epoch} (key_id {st.key_id.hex()})")
                return
        if st.device_id != meta.device_id or st.store_uuid != meta.store_uuid:
            rep.finding("foreign_segment", 0, "anchor device_id or store_uuid is not this "
                        "store's")
            return
        A, AS = st.frame_id, st.segment_id
        si = self.start_info
        F0 = si.ffid if si is not None and si.past_s4 else None
        if self.P is not None and self.P.hdr.rollback_ctr < st.rollback_ctr:
            rep.finding("rollback", 0, f"rollback_ctr {self.P.hdr.rollback_ctr} of the newest "
                        f"passing frame {self.P.frame.frame_id} is below the anchor's "
                        f"{st.rollback_ctr}")
            return
        if self.F_H < A or self.H < AS:
            rep.finding("truncated_tail", 0, f"the history's head is frame {self.F_H} of "
                        f"segment {self.H}; the anchor's is frame {A} of segment {AS}")
            return
        if self.anchor_held is not None:
            seg, statement = self.anchor_held
            if seg != AS:
                rep.finding("fork", 0, f"frame {A} is in segment {seg}, the anchor's in "
                            f"segment {AS}")
                return
            if statement != a.statement:
                rep.finding("fork", 0, f"frame {A}'s rebuilt statement differs from the "
                            "anchor's")
                return
        elif F0 is not None and A == F0 - 1:
            if AS != self.start - 1:
                rep.finding("fork", 0, f"frame {A}, the chain point of segment {self.start}, "
                            f"is the anchor's in segment {AS}, not {self.start - 1}")
                return
            sv = self.view(si.slot)
            if self.start_first_passed and sv.hdr.prev_hash != st.frame_hash:
                rep.finding("fork", 0, f"segment {self.start}'s prev_hash is not the anchor's "
                            f"hash_head (frame {A})")
                return
        elif (F0 is not None and A < F0 - 1) or (F0 is None and AS < self.start):
            rep.finding("anchor_not_retained", 0,
                        f"the anchored frame {A} (segment {AS}) is no longer in the ring: "
                        "nothing shows that this history continues it; verify against a "
                        "newer head")
            return
        ref = self.first_above_anchor
        if ref is None:
            return
        fs = statement_fields(ref.frame.statement)
        problem = None
        if ref.frame.records and fs.first_mono <= st.mono_hwm:
            problem = f"first mono_ctr {fs.first_mono} is not above the anchor's {st.mono_hwm}"
        else:
            for name in ("records_total", "lost_total", "dropped_total", "uplink_cursor",
                         "bo_event", "ecc_err_cnt", "clock_steps", "wrap_count", "unexp_rst",
                         "boot_seq", "tail_segment_id"):
                if getattr(fs, name) < getattr(st, name):
                    problem = (f"{name} {getattr(fs, name)} is below the anchor's "
                               f"{getattr(st, name)}")
                    break
            else:
                if fs.ring_slots != st.ring_slots:
                    problem = f"ring_slots {fs.ring_slots} is not the anchor's {st.ring_slots}"
        if problem is not None:
            rep.finding("sequence_regression", 0,
                        f"frame {ref.frame.frame_id}, the first after the anchor that passed, "
                        f"goes backward against what the anchor sealed: {problem}")

    # -- all items -----------------------------------------------------------------

    def anchor_signed_by_given_key(self) -> bool:
        a = self.anchor
        if not isinstance(a, Anchor3) or a.fields.sig_alg == 0:
            return False
        st = a.fields
        return any(k.key_id == st.key_id and k.epoch == st.key_epoch and k.alg == st.sig_alg
                   and ver.signature_verifies(k, st.sig_alg, a.statement, a.signature)
                   for k in self.keys)

    def verify(self) -> Report:
        rep, store = self.report, self.store
        for name, off in META_OFFSETS.items():
            version = _version_at(store, off)
            if version is not None and version > dec.META6_FORMAT_VERSION:
                rep.finding("not_a_store", 0, f"newer format: metadata slot {name} has "
                            f"format_version {version}")
                return rep
        valid, rejected = dec.read_metadata6(store)
        if not valid:
            for name, exc in rejected.items():
                rep.finding("crc_mismatch", META_OFFSETS[name],
                            f"metadata slot {name} is not valid: {exc.reason}")
            rep.finding("not_a_store", 0, "no valid metadata slot")
            return rep
        if self.anchor_data is not None:
            self.anchor = parse_anchor3(self.anchor_data)
        self.signed_anchor = self.anchor_signed_by_given_key()
        self.scan(valid)
        meta = self.meta
        notes_first: list[Note] = []
        # Item 1.
        for name in ("A", "B"):
            if name not in rejected:
                continue
            off = META_OFFSETS[name]
            wiped = not any(store.read_upto(off, META_SLOT))
            if (name == "B" and wiped and any(m.slot_name == "A" and m.generation == 0
                                              and m.head_frame_id == 0 for m in valid)):
                continue
            if not wiped:
                # A.11 item 1: the write that marks a clean store open again (at open, after a
                # safe-commit window) lands beside a chosen slot still saying clean, so a cut one
                # is a note whatever clean_flag says.
                notes_first.append(Note(
                    "torn_metadata_write", 0, 0,
                    f"metadata slot {name} (offset {off}) is not valid "
                    f"({rejected[name].reason}): a cut metadata write "
                    "cannot be told from an edit of an unsigned slot"))
            else:
                rep.finding("crc_mismatch", off, f"metadata slot {name} is not valid: "
                            f"{rejected[name].reason}" + (" (all zero)" if wiped else ""))
        # Item 2.
        self.plan_range()
        # Item 3.
        self.run_range()
        if self.start > 1:
            si = self.start_info
            f0 = si.ffid - 1 if si is not None and si.past_s4 else 0
            last = self.start - 1
            notes_first.append(Note("not_retained", last, f0,
                                    ("segment 1 is" if last == 1 else
                                     f"segments 1 to {last} are") + " no longer in the ring"))
        if self.given_up:
            # Item 2: a reclaim cut short, or an erasure (nothing signed tells them apart).
            notes_first.append(Note("tail_given_up", self.T, 0,
                                    f"segment {self.T} is given up: its slot no longer holds it in a "
                                    "store left open with a full ring, as a reclaim cut by a power "
                                    "cut leaves it; an erasure of the oldest segment looks the same "
                                    "(not verified)"))
        # Item 4.
        self.check_metadata()
        # Item 5.
        self.beyond_the_head()
        for offset, reason, detail in sorted(self.item5, key=lambda x: x[0]):
            rep.finding(reason, offset, detail)
        # Item 6.
        torn_notes = self.power_cuts()
        # Item 7.
        last_notes = []
        if self.anchor_data is not None:
            self.check_anchor()
        else:
            last_notes.append(Note("truncation_not_excluded", self.H, self.F_H,
                                   "no --anchor: a shorter copy of this history (an older "
                                   "image, or one whose newest segments or frames were "
                                   "erased with the metadata rewritten) cannot be excluded"))
        record_notes = [n for _, n in sorted(self.record_notes, key=lambda x: x[0])]
        rep.notes = notes_first + record_notes + torn_notes + last_notes
        return rep


def verify(store: dec.Store, keys: list, anchor: bytes | None, allow_fw: set[bytes] | None,
           allow_unsigned: bool) -> Report:
    return Verifier(store, keys, anchor, allow_fw, allow_unsigned).verify()


# ---------------------------------------------------------------------------
# Output (A.11.3)
# ---------------------------------------------------------------------------

dumps = ver.dumps
escape_text = ver.escape_text


def render_json(report: Report) -> str:
    lines = []
    for s in report.segments:
        lines.append(dumps({"kind": "segment", "segment_id": s.segment_id, "slot": s.slot,
                            "offset": s.offset, "first_frame_id": s.first_frame_id,
                            "frames": s.frames, "passed": s.passed,
                            "sig_verify": "PASS" if s.reason is None else "FAIL",
                            "reason": s.reason, "key_epoch": s.key_epoch}))
        for f in s.frame_lines:
            lines.append(dumps({"kind": "frame", "segment_id": f.segment_id,
                                "frame_id": f.frame_id, "frames": f.frames,
                                "offset": f.offset, "reason": f.reason,
                                "key_epoch": f.key_epoch}))
    for f in report.findings:
        lines.append(dumps({"kind": "finding", "reason": f.reason, "offset": f.offset,
                            "detail": f.detail}))
    for n in report.notes:
        lines.append(dumps({"kind": "note", "note": n.note, "segment_id": n.segment_id,
                            "frame_id": n.frame_id, "detail": n.detail}))
    failed = sum(1 for s in report.segments if s.reason is not None)
    frames, passed = report.frames, report.frames_passed
    lines.append(dumps({"kind": "summary", "verdict": report.verdict,
                        "segments": len(report.segments),
                        "passed": len(report.segments) - failed, "failed": failed,
                        "frames": frames, "frames_passed": passed,
                        "frames_failed": frames - passed, "signed": report.signed,
                        "sig_alg": report.sig_alg, "reasons": report.reasons}))
    return "".join(line + "\n" for line in lines)


def render_text(report: Report, image: str) -> str:
    out = [f"edgelog verify {escape_text(image)} (format 6)",
           f"{'segment':>10} {'slot':>6} {'offset':>12} {'first_frame':>12} {'frames':>7} "
           f"{'passed':>7} {'sig':>5} {'epoch':>6}  result"]
    for s in report.segments:
        first = "-" if s.first_frame_id is None else str(s.first_frame_id)
        frames = "-" if s.frames is None else str(s.frames)
        result = "PASS" if s.reason is None else s.reason
        out.append(f"{s.segment_id:>10} {s.slot:>6} {s.offset:>12} {first:>12} {frames:>7} "
                   f"{s.passed:>7} {'PASS' if s.reason is None else 'FAIL':>5} "
                   f"{s.key_epoch:>6}  {result}"
                   + (f": {escape_text(s.detail)}" if s.detail else ""))
        for f in s.frame_lines:
            count = "" if f.frames == 1 else f" ({f.frames} frames)"
            out.append(f"{'':>10} frame {f.frame_id}{count} at offset {f.offset}: {f.reason}"
                       + (f": {escape_text(f.detail)}" if f.detail else ""))
    for f in report.findings:
        out.append(f"finding {f.reason} at offset {f.offset}: {escape_text(f.detail)}")
    for n in report.notes:
        out.append(f"note {n.note} (segment {n.segment_id}, frame {n.frame_id}): "
                   f"{escape_text(n.detail)}")
    failed = sum(1 for s in report.segments if s.reason is not None)
    frames, passed = report.frames, report.frames_passed
    signed = (f"signed with {report.sig_alg}" if report.signed
              else "not signed throughout" + (f" (last signature verified: {report.sig_alg})"
                                              if report.verified_algs else ""))
    out.append(f"verdict {report.verdict}: {len(report.segments)} segments, "
               f"{len(report.segments) - failed} passed, {failed} failed; {frames} frames, "
               f"{passed} passed, {frames - passed} failed; {signed}"
               + (f"; reasons: {', '.join(report.reasons)}" if report.reasons else ""))
    if report.sig_alg == "hmac-sha256":
        out.append("note: HMAC-SHA256 proves integrity only to holders of the secret, "
                   "not origin")
    return "".join(line + "\n" for line in out)


def run(store: dec.Store, keys: list, anchor: bytes | None, allow_fw: set[bytes] | None,
        allow_unsigned: bool, as_json: bool, image: str, out) -> int:
    """Verify a format 6 image and print the report; the exit status."""
    report = verify(store, keys, anchor, allow_fw, allow_unsigned)
    out.write(render_json(report) if as_json else render_text(report, image))
    out.flush()
    return EXIT_PASS if report.verdict == "PASS" else EXIT_FAIL


def main(argv: list[str] | None = None, out=None, err=None) -> int:
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    args = ver.parse_args(argv)  # exits 2 on usage errors
    try:
        keys = [ver.load_trust_key(path) for path in args.trust]
        allow_fw = None
        if args.allow_fw is not None:
            for value in args.allow_fw:
                if not ver.HEX64.fullmatch(value):
                    raise ver.UsageError(f"--allow-fw {value!r} is not 64 hex digits")
            allow_fw = {bytes.fromhex(value) for value in args.allow_fw}
        anchor = None if args.anchor is None else ver.read_anchor(args.anchor)
        try:
            fh = open(args.device, "rb")
        except OSError as exc:
            raise ver.UsageError(f"cannot read {args.device}: {exc.strerror}") from exc
    except ver.UsageError as exc:
        err.write(f"edgelog_verify6: {exc}\n")
        return EXIT_USAGE
    with fh:
        try:
            return run(dec.Store(fh), keys, anchor, allow_fw, args.allow_unsigned, args.json,
                       args.device, out)
        except OSError as exc:
            err.write(f"edgelog_verify6: cannot read {args.device}: {exc.strerror}\n")
            return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
