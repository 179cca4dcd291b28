"""Self-test for scripts/edgelog_decode.py.

Run: python3 -m pytest scripts/test_edgelog_decode.py

The store images are built in memory by the minimal encoder below, written
from docs/FORMAT.md (it has its own bitwise CRC so that a table bug in the
decoder cannot hide behind the same table here).  Segments carry an unsigned
seal (sig_alg 0, sig_len 0, seal_len 320; format version 5) with every
statement field the decoder checks filled,
their segment_hash computed and prev_hash chained: the decoder checks the
seal's form and the hash chain, not signatures (scripts/test_edgelog_verify.py
covers those).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "edgelog_decode.py"

_spec = importlib.util.spec_from_file_location("edgelog_decode", SCRIPT)
dec = importlib.util.module_from_spec(_spec)
sys.modules["edgelog_decode"] = dec  # dataclasses look the module up by name
_spec.loader.exec_module(dec)

UUID = bytes(range(16))
DEVICE_ID = bytes(range(0xA0, 0xB0))
FW = hashlib.sha256(b"edgelog test build").digest()
SEG = 4096          # segment_size
SLOTS = 4           # ring_slots
STORE = 8192 + SLOTS * SEG
# The sync sample every record() carries unless told otherwise (format
# version 4): real values, none of them null, all different, so a field read
# from the wrong offset or printed under the wrong null rule shows.
MAXERR = 16_000
ESTERR = 500
LAST_SYNC = 1_699_999_999_000_000_000


# ---------------------------------------------------------------------------
# Minimal encoder (FORMAT.md sections 2, 3)
# ---------------------------------------------------------------------------

def crc(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF


def record(seq, mono, payload, source=b"temp", rtype=1, wall=1_700_000_000_000_000_000,
           boot=5_000, time_flags=0, boot_seq=0, maxerror_us=MAXERR, esterror_us=ESTERR,
           last_sync_ns=LAST_SYNC):
    length = 60 + len(source) + len(payload) + 8
    body = struct.pack("<IHHQQqqHHIIq", length, rtype, time_flags, seq, mono, wall, boot,
                       len(source), boot_seq, maxerror_us, esterror_us,
                       last_sync_ns) + source + payload
    return body + struct.pack("<I", crc(body)) + b"RECE"


def seg_crc(data):
    """body_crc from an encoded segment's commit marker (what head_crc must hold)."""
    payload_len = struct.unpack_from("<I", data, 60)[0]
    return struct.unpack_from("<I", data, 128 + payload_len + 32)[0]


def seg_hash(data):
    """segment_hash from an encoded segment's seal (what hash_head and the
    next segment's prev_hash must hold)."""
    payload_len = struct.unpack_from("<I", data, 60)[0]
    return data[128 + payload_len + 40 + 152:128 + payload_len + 40 + 184]


STATEMENT_FIELDS = ("magic", "device_id", "segment_id", "commit_id", "first_mono",
                    "last_mono", "record_count", "key_epoch", "key_id", "rollback_ctr",
                    "fw_ver_hash", "prev_hash", "segment_hash", "sig_alg", "key_src",
                    "sig_len", "store_uuid", "tail_segment_id", "mono_hwm", "records_total",
                    "lost_total", "dropped_total", "uplink_cursor", "wrap_count", "unexp_rst",
                    "bo_event", "ecc_err_cnt", "clock_steps", "boot_seq", "tables_hash",
                    "tail_slot", "ring_slots")


def statement(seg_id, commit_id, first, last, count, prev_hash, segment_hash, *,
              device_id=DEVICE_ID, rollback_ctr=1, fw=FW, uuid=UUID, tail=1, state=None):
    """The 320-byte statement of section 3.5, unsigned (key_epoch, key_id,
    sig_alg, key_src, sig_len all zero), with the store_uuid and a sealed
    state (tail_segment_id, mono_hwm = last, tail_slot 0, ring_slots SLOTS;
    the decoder does not compare the rest).  state: statement fields to
    seal instead (by name)."""
    fields = dict(magic=b"EDGESIG2", device_id=device_id, segment_id=seg_id,
                  commit_id=commit_id, first_mono=first, last_mono=last, record_count=count,
                  key_epoch=0, key_id=bytes(16), rollback_ctr=rollback_ctr, fw_ver_hash=fw,
                  prev_hash=prev_hash, segment_hash=segment_hash, sig_alg=0, key_src=0,
                  sig_len=0, store_uuid=uuid, tail_segment_id=tail, mono_hwm=last,
                  records_total=0, lost_total=0, dropped_total=0, uplink_cursor=1,
                  wrap_count=0, unexp_rst=0, bo_event=0, ecc_err_cnt=0, clock_steps=0,
                  boot_seq=0, tables_hash=bytes(32), tail_slot=0, ring_slots=SLOTS)
    fields.update(state or {})
    return struct.pack("<8s16sQQQQII16sQ32s32s32sBBH4x16sQQQQQQIIIIII32sII",
                       *(fields[name] for name in STATEMENT_FIELDS))


def segment(seg_id, slot, recs, monos, *, uuid=UUID, commit_id=None, break_body=False,
            sector=512, prev=None, prev_crc=None, prev_hash=None, seal_hash=None,
            seal=None, seal_len=320, version=5, lost=0, dropped=0, state=None):
    """recs: list of encoded records; monos: their mono_ctr values.

    prev: the encoded segment committed just before (sets prev_crc and
    prev_hash; zero for the first segment); prev_crc/prev_hash override it.
    seal_hash: a wrong segment_hash to put in the seal; seal: a function that
    may rewrite the 384 seal bytes (a malformed seal), marker CRC refitted.
    lost / dropped: the header's lost_records / dropped_records; state:
    statement fields to seal instead (statement()).
    """
    commit_id = seg_id if commit_id is None else commit_id
    if prev_crc is None:
        prev_crc = seg_crc(prev) if prev is not None else 0
    if prev_hash is None:
        prev_hash = seg_hash(prev) if prev is not None else bytes(32)
    payload = b"".join(recs)
    first, last = (monos[0], monos[-1]) if monos else (0, 0)
    head = struct.pack("<8sHHI16sQQIIIIQQ32sIII", b"EDGELOGS", version, 128, 0, uuid, seg_id,
                       commit_id, slot, 0, len(recs), len(payload), first, last,
                       prev_hash, lost, dropped, prev_crc)
    head += struct.pack("<I", crc(head))
    body_crc = crc(head + payload)
    digest = hashlib.sha256(head + payload).digest() if seal_hash is None else seal_hash
    seal_area = statement(seg_id, commit_id, first, last, len(recs), prev_hash,
                          digest, uuid=uuid, state=state) + bytes(384 - 320)
    if seal is not None:
        seal_area = seal(bytearray(seal_area))
    marker = struct.pack("<8sQQIIII", b"EDGELOGC", seg_id, commit_id, len(recs),
                         len(payload), body_crc, seal_len) + bytes(seal_area) + bytes(4)
    marker += struct.pack("<I", crc(marker))
    assert len(marker) == 432
    data = bytearray(head + payload + marker)
    if break_body:  # torn write: header good, records not
        data[128] ^= 0xFF
    data += bytes(-len(data) % sector)
    return bytes(data)


def meta(generation, *, head_id, head_slot, tail_slot, tail_id, head=None, head_crc=None,
         hash_head=None, version=5, incompat=0, bad_blocks=(), sources=(("temp", 0),),
         commit_id=None, uuid=UUID, sector_size=512, segment_size=SEG, ring_slots=SLOTS,
         store_size=STORE, time=None):
    """head: the encoded head segment (sets head_crc and hash_head; both zero
    without one); head_crc/hash_head override it.

    time: the time fields at 2896 (boot_id, boot_seq, clock_steps,
    largest_step_ns, unsync_ns, last_sync_wall_ns, rtc_offset_ns, rtc_state);
    all zero without it.

    sources: (name, last_seq) or (name, last_seq, name_len) to force a length.
    """
    commit_id = head_id if commit_id is None else commit_id
    if head_crc is None:
        head_crc = seg_crc(head) if head is not None else 0
    if hash_head is None:
        hash_head = seg_hash(head) if head is not None else bytes(32)
    buf = bytearray(4096)
    struct.pack_into("<8sHHII4x16sQQIIQI4xQQIIQIIIIIIQQQQQIIq", buf, 0,
                     b"EDGELOGM", version, 4096, incompat, 0, uuid, generation, store_size,
                     sector_size, segment_size, 8192, ring_slots, commit_id, head_id,
                     head_slot, tail_slot, tail_id, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
                     len(bad_blocks), len(sources), 0)
    struct.pack_into("<32sI", buf, 192, hash_head, head_crc)
    # Trust fields: device_id, rollback_ctr, fw_ver_hash; unsigned (key_id,
    # key_epoch, sig_alg, key_src zero).
    struct.pack_into("<16sQ32s", buf, 2816, DEVICE_ID, 1, FW)
    if time is not None:
        struct.pack_into("<16sIIQQqqB", buf, 2896, *time)
    for i, (slot, reason, seg_id) in enumerate(bad_blocks):
        struct.pack_into("<IHHQ", buf, 256 + 16 * i, slot, reason, 0, seg_id)
    for i, (name, last_seq, *name_len) in enumerate(sources):
        raw = name.encode("latin-1")
        struct.pack_into("<B39sQ", buf, 1280 + 48 * i, name_len[0] if name_len else len(raw),
                         raw, last_seq)
    struct.pack_into("<I", buf, 4092, crc(bytes(buf[:4092])))
    return bytes(buf)


class Image:
    def __init__(self):
        self.buf = bytearray(STORE)

    def slot_a(self, data):
        self.buf[0:4096] = data
        return self

    def slot_b(self, data):
        self.buf[4096:8192] = data
        return self

    def seg(self, slot, data):
        off = 8192 + slot * SEG
        self.buf[off:off + len(data)] = data
        return self

    def write(self, tmp_path, name="store.img"):
        p = tmp_path / name
        p.write_bytes(bytes(self.buf))
        return p


def run(path, *args):
    out, err = io.BytesIO(), io.BytesIO()
    code = dec.main([str(path), *args], out=out, err=err)
    return code, out.getvalue(), err.getvalue().decode()


# What record()'s defaults print after boot_ns: boot_seq 0, time_flags 0 and
# the default sync sample.
TIME_JSON = ('"boot_seq":0,"time_flags":0,"maxerror_us":16000,"esterror_us":500,'
             '"last_sync_ns":1699999999000000000')
TIME_CSV = b"0,0,16000,500,1699999999000000000"


def line(seg_id, seq, mono, payload, source="temp", rtype='"data"'):
    return ('{"segment_id":%d,"commit_id":%d,"type":%s,"source":"%s","seq":%d,'
            '"mono_ctr":%d,"wall_ns":1700000000000000000,"boot_ns":5000,%s,"payload":%s}\n'
            % (seg_id, seg_id, rtype, source, seq, mono, TIME_JSON, payload)).encode()


S1 = segment(1, 0, [record(1, 10, b'{"t":1}'), record(2, 11, b'{"t":"a\\"b"}')], [10, 11])
S2 = segment(2, 1, [record(3, 12, b'{"t":3}')], [12], prev=S1)


def chain(n, slot0=0):
    """Segments 1..n, one empty-object record each (mono 10, 11, ...), in
    slots slot0.., each chained onto the one before."""
    segs = []
    for i in range(n):
        segs.append(segment(i + 1, slot0 + i, [record(i + 1, 10 + i, b"{}")], [10 + i],
                            prev=segs[-1] if segs else None))
    return segs


def two_segment_image():
    """Segments 1 (slot 0) and 2 (slot 1) committed; metadata in slot B (gen 1)."""
    return (Image()
            .slot_a(meta(0, head_id=0, head_slot=0, tail_slot=0, tail_id=1))
            .slot_b(meta(1, head_id=2, head_slot=1, tail_slot=0, tail_id=1, head=S2))
            .seg(0, S1).seg(1, S2))


TWO_SEGMENT_LINES = (line(1, 1, 10, '{"t":1}') + line(1, 2, 11, '{"t":"a\\"b"}')
                     + line(2, 3, 12, '{"t":3}'))


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

def test_crc_check_value():
    assert dec.crc32c(b"123456789") == 0xE3069283
    assert crc(b"123456789") == 0xE3069283
    assert dec.crc32c(b"") == 0


def test_empty_store_exports_nothing(tmp_path):
    p = Image().slot_a(meta(0, head_id=0, head_slot=0, tail_slot=0, tail_id=1)).write(tmp_path)
    assert run(p) == (0, b"", "")
    assert run(p, "--format", "csv") == (0, dec.CSV_HEADER, "")
    info = json.loads(run(p, "--inspect")[1])
    assert info["chosen_slot"] == "A" and info["segments"] == 0
    assert info["adopted_segments"] == 0


def test_two_segments_in_order(tmp_path):
    p = two_segment_image().write(tmp_path)
    assert run(p) == (0, TWO_SEGMENT_LINES, "")


def test_csv_and_since_commit(tmp_path):
    p = two_segment_image().write(tmp_path)
    code, out, _ = run(p, "--format", "csv")
    assert code == 0
    assert dec.CSV_HEADER == (b"segment_id,commit_id,type,source,seq,mono_ctr,wall_ns,"
                              b"boot_ns,boot_seq,time_flags,maxerror_us,esterror_us,"
                              b"last_sync_ns,payload\n")
    t = TIME_CSV
    assert out == (dec.CSV_HEADER
                   + b'1,1,data,"temp",1,10,1700000000000000000,5000,' + t + b',"{""t"":1}"\n'
                   + b'1,1,data,"temp",2,11,1700000000000000000,5000,' + t
                   + b',"{""t"":""a\\""b""}"\n'
                   + b'2,2,data,"temp",3,12,1700000000000000000,5000,' + t + b',"{""t"":3}"\n')
    assert run(p, "--since-commit", "1") == (0, line(2, 3, 12, '{"t":3}'), "")


def test_torn_segment_after_head_not_exported(tmp_path):
    torn = segment(3, 2, [record(4, 13, b'{"t":4}')], [13], break_body=True, prev=S2)
    p = two_segment_image().seg(2, torn).write(tmp_path)
    assert run(p) == (0, TWO_SEGMENT_LINES, "")
    assert json.loads(run(p, "--inspect")[1])["adopted_segments"] == 0


def test_newer_format_version_exit_5(tmp_path):
    p = two_segment_image().slot_a(
        meta(2, head_id=2, head_slot=1, tail_slot=0, tail_id=1, version=6)).write(tmp_path)
    # Through the real executable, to check the shebang, mode and exit code.
    proc = subprocess.run([str(SCRIPT), str(p)], capture_output=True)
    assert proc.returncode == 5
    assert proc.stdout == b""
    assert b"newer format" in proc.stderr


@pytest.mark.parametrize("other", ["valid_newer_gen", "valid_older_gen", "zeros", "bad_crc"])
@pytest.mark.parametrize("newer_in", ["A", "B"])
def test_newer_format_in_either_slot_exit_5_whatever_the_other(tmp_path, newer_in, other):
    newer = meta(1, head_id=2, head_slot=1, tail_slot=0, tail_id=1, version=6)
    good = meta(5 if other == "valid_newer_gen" else 0, head_id=2, head_slot=1,
                tail_slot=0, tail_id=1, head=S2)
    if other == "zeros":
        good = bytes(4096)
    elif other == "bad_crc":
        good = good[:4092] + bytes(4)
    img = two_segment_image()
    if newer_in == "A":
        img.slot_a(newer).slot_b(good)
    else:
        img.slot_a(good).slot_b(newer)
    code, out, err = run(img.write(tmp_path))
    assert (code, out) == (5, b"")
    assert "newer format" in err


def test_newer_format_checked_before_crc(tmp_path):
    # A newer layout may move the crc: magic + version alone decide.
    newer = bytearray(meta(1, head_id=2, head_slot=1, tail_slot=0, tail_id=1, version=7))
    newer[4092:4096] = b"\xde\xad\xbe\xef"
    assert run(two_segment_image().slot_b(bytes(newer)).write(tmp_path))[0] == 5


def test_unknown_incompat_flag_refuses_slot(tmp_path):
    # Newest slot (A, gen 2) has an unknown incompat bit: it is refused and
    # the older slot B is used.
    p = two_segment_image().slot_a(
        meta(2, head_id=2, head_slot=1, tail_slot=0, tail_id=1, incompat=1,
             head=S2)).write(tmp_path)
    assert json.loads(run(p, "--inspect")[1])["chosen_slot"] == "B"


def test_only_incompat_slots_is_not_a_store_exit_2(tmp_path):
    # A slot with an unknown incompat bit is simply not valid (section 2);
    # with no valid slot the reader stops: exit 2, not 5 (that is for
    # format_version only).
    img = two_segment_image()
    img.slot_a(meta(0, head_id=0, head_slot=0, tail_slot=0, tail_id=1, incompat=4))
    img.slot_b(meta(1, head_id=2, head_slot=1, tail_slot=0, tail_id=1, incompat=1,
                    head=S2))
    code, out, err = run(img.write(tmp_path))
    assert (code, out) == (2, b"")
    assert "not an edgelog store" in err


def _good_a(**kw):
    """Slot A, generation 2, naming the same committed state as slot B."""
    args = dict(head_id=2, head_slot=1, tail_slot=0, tail_id=1, head=S2)
    args.update(kw)
    return meta(args.pop("generation", 2), **args)


@pytest.mark.parametrize("kw", [
    dict(sector_size=1024),
    dict(sector_size=0),
    dict(segment_size=6000),
    dict(segment_size=0),
    dict(segment_size=32 * 1024 * 1024, store_size=8192 + 4 * 32 * 1024 * 1024),
    dict(tail_id=0),
    dict(tail_id=4),                           # head_segment_id + 2
    dict(head_id=0, head_slot=0, tail_id=2, head=None),
    dict(bad_blocks=[(SLOTS, 1, 2)]),          # slot not below ring_slots
    dict(bad_blocks=[(3, 0, 2)]),              # reason 0
    dict(bad_blocks=[(3, 4, 2)]),              # reason 4
    dict(sources=[("temp", 0), ("", 0)]),      # name_len 0
    dict(sources=[("x" * 39, 0, 40)]),         # name_len 40: invalid, not clamped
    dict(sources=[("te mp", 0)]),
    dict(sources=[("t\xe9mp", 0)]),
    dict(sources=[("temp", 0, 5)]),            # length takes in a padding zero
    dict(store_size=STORE + 1),                # more than the device holds: "truncated"
    dict(store_size=STORE + 4096),
    # Format version 5: the bad-block table names no slot twice and leaves
    # at least two good slots; source names start with a letter or digit and
    # appear once.
    dict(bad_blocks=[(3, 1, 2), (3, 2, 2)]),
    dict(head_id=0, head_slot=0, head=None, bad_blocks=[(1, 1, 0), (2, 1, 0), (3, 1, 0)]),
    dict(head_id=0, head_slot=0, head=None,
         bad_blocks=[(0, 1, 0), (1, 1, 0), (2, 1, 0), (3, 1, 0)]),
    # The ring is empty only while head_segment_id is 0 (format version 5).
    dict(tail_id=3, tail_slot=2),              # tail = head + 1
    dict(sources=[("temp", 2**62)]),           # last_seq not below 2^62
    dict(sources=[("temp", 2**64 - 1)]),
    dict(sources=[("-temp", 0)]),
    dict(sources=[(".temp", 0)]),
    dict(sources=[("_temp", 0)]),
    dict(sources=[("temp", 0), ("temp", 9)]),
    # A non-empty ring holds at most ring_slots - bad_block_count segments.
    dict(head_id=5, head_slot=0, tail_id=1),
    dict(bad_blocks=[(3, 1, 0)], head_id=4, head_slot=0, tail_id=1),
    # ... in consecutive good slots from tail_slot to head_slot (third review).
    dict(tail_slot=3),                         # 3 -> 0, not head_slot 1
    dict(tail_slot=1),                         # two segments in one slot
    dict(bad_blocks=[(0, 1, 0)]),              # tail_slot in bad_block_tbl
    dict(bad_blocks=[(1, 1, 0)]),              # head_slot in bad_block_tbl
])
def test_slot_validity_rules(tmp_path, kw):
    # Slot A (newest) breaks one rule of section 2: it is not valid and the
    # older slot B is chosen.
    p = two_segment_image().slot_a(_good_a(**kw)).write(tmp_path)
    code, out, _ = run(p, "--inspect")
    assert code == 0
    assert json.loads(out)["chosen_slot"] == "B"


@pytest.mark.parametrize("kw", [
    dict(sector_size=4096),
    dict(bad_blocks=[(3, 1, 0), (2, 2, 0)]),  # two good slots left, two segments
    dict(sources=[("0temp", 1), ("temp", 2), ("Temp", 3)]),  # a digit first; case counts
    dict(sources=[("A-Za-z0-9._", 7), ("y" * 39, 1)]),
])
def test_slot_validity_edges_accepted(tmp_path, kw):
    p = two_segment_image().slot_a(_good_a(**kw)).write(tmp_path)
    code, out, _ = run(p, "--inspect")
    assert code == 0
    assert json.loads(out)["chosen_slot"] == "A"


BELOW = 2**62 - 1


@pytest.mark.parametrize("kw, ok", [
    (dict(generation=BELOW), True),
    (dict(generation=2**62), False),
    (dict(generation=2**64 - 1), False),
    (dict(head_id=BELOW, tail_id=BELOW - 2, commit_id=BELOW), True),
    (dict(commit_id=2**62), False),
    (dict(head_id=BELOW, tail_id=BELOW - 2), True),
    (dict(head_id=2**62, tail_id=2**62 - 2), False),
    (dict(head_id=2**64 - 1, tail_id=2**62 - 1, commit_id=0), False),
    (dict(head_id=BELOW - 1, tail_id=BELOW), False),         # empty with a head
    (dict(head_id=0, tail_id=1), True),                       # empty: nothing committed
    (dict(head_id=0, tail_id=2), False),
    (dict(head_id=BELOW, tail_id=2**62), False),
    (dict(head_id=4, tail_id=1), True),                       # 4 segments, 4 good slots
    (dict(head_id=5, tail_id=2), True),
    (dict(head_id=5, tail_id=1), False),
    (dict(head_id=2**61, tail_id=1), False),                  # a huge head/tail distance
    (dict(head_id=3, tail_id=1, bad_blocks=[(0, 1, 0)]), True),
    (dict(head_id=3, tail_id=1, bad_blocks=[(0, 1, 0), (1, 1, 0)]), False),
    (dict(head_id=2, tail_id=1, bad_blocks=[(0, 1, 0), (1, 1, 0)]), True),
    (dict(head_id=2, tail_id=1, bad_blocks=[(0, 1, 0), (1, 1, 0), (2, 1, 0)]), False),
])
def test_metadata_bounds(kw, ok):
    # Section 2 (format version 5): generation, head_segment_id, commit_id
    # and tail_segment_id below 2^62; a non-empty ring holds at most
    # ring_slots - bad_block_count segments; at least two good slots.  The
    # segments fill consecutive good slots from the first good slot on (so
    # only the rule each case is about can make it invalid).
    args = dict(head_id=2, head_slot=1, tail_slot=0, tail_id=1)
    args.update(kw)
    bad = {b[0] for b in args.get("bad_blocks", ())}
    good = [s for s in range(SLOTS) if s not in bad]
    if good and 0 <= args["head_id"] - args["tail_id"] < 64:
        args["tail_slot"] = good[0]
        args["head_slot"] = good[(args["head_id"] - args["tail_id"]) % len(good)]
    buf = meta(args.pop("generation", 2), **args)
    if ok:
        assert dec.parse_metadata(buf, "A", 0, STORE).head_segment_id == args["head_id"]
    else:
        with pytest.raises(dec.DecodeError):
            dec.parse_metadata(buf, "A", 0, STORE)


@pytest.mark.parametrize("off, value, ok", [
    (136, BELOW, True), (136, 2**62, False), (136, 2**64 - 1, False),   # mono_hwm
    (1280 + 40, BELOW, True), (1280 + 40, 2**62, False),               # a source's last_seq
])
def test_metadata_bounds_of_mono_hwm_and_last_seq(off, value, ok):
    buf = bytearray(meta(2, head_id=2, head_slot=1, tail_slot=0, tail_id=1))
    struct.pack_into("<Q", buf, off, value)
    struct.pack_into("<I", buf, 4092, crc(bytes(buf[:4092])))
    if ok:
        dec.parse_metadata(bytes(buf), "A", 0, STORE)
    else:
        with pytest.raises(dec.DecodeError, match="2\\^62"):
            dec.parse_metadata(bytes(buf), "A", 0, STORE)


@pytest.mark.parametrize("seq, mono, reason", [
    (2**62, 11, "seq"), (2**64 - 1, 11, "seq"), (3, 2**62, "mono_ctr"),
])
def test_record_seq_and_mono_ctr_below_2_62(tmp_path, seq, mono, reason):
    # Section 3.4 (format version 5): each record's seq and mono_ctr are
    # below 2^62, or the segment is not valid.
    assert_middle_segment_refused(tmp_path, [record(seq, mono, b"{}")], [mono], (4, 2**62 - 1),
                                  f"{reason} ")
    s1 = segment(1, 0, [record(BELOW, BELOW, b"{}")], [BELOW])
    p = (Image().slot_a(meta(2, head_id=1, head_slot=0, tail_slot=0, tail_id=1, head=s1))
         .seg(0, s1).write(tmp_path))
    assert run(p)[0] == 0


def test_every_bad_block_table_is_bounded(tmp_path):
    # Every table of 0 to 64 entries over a 66-slot ring (the head and the
    # tail's slots always good) reads back or is refused, without a crash,
    # and the reader never loops: next_slot and prev_slot skip at most the
    # ring.
    slots = 66
    store = 8192 + slots * SEG
    s1 = segment(1, 0, [record(1, 10, b"{}")], [10])
    for count in (0, 1, 2, 63, 64):
        bad = [(65 - i, 1 + i % 3, 0) for i in range(count)]
        img = Image()
        img.buf = bytearray(store)
        img.slot_a(meta(2, head_id=1, head_slot=0, tail_slot=0, tail_id=1, head=s1,
                        ring_slots=slots, store_size=store, bad_blocks=bad)).seg(0, s1)
        assert run(img.write(tmp_path), "--inspect")[0] == 0
        m = dec.parse_metadata(bytes(img.buf[:4096]), "A", 0, store)
        good = [i for i in range(slots) if i not in m.bad_slots]
        assert dec.next_slot(m, good[-1]) == good[0] and dec.prev_slot(m, good[0]) == good[-1]


def test_fake_segment_header_in_payload_is_not_a_segment(tmp_path):
    # A payload carrying a perfect segment header (id 2, slot 1), a record
    # and a commit marker, placed so the fake header sits on a sector
    # boundary.  None of it may be read as structure.
    fake_seg = segment(2, 1, [record(9, 99, b'{"fake":1}')], [99])
    pad = 512 - 128 - 60 - len(b"temp") - len(b'{"x":"')
    payload = b'{"x":"' + b"." * pad + fake_seg[:1024] + b'"}'
    real = segment(1, 0, [record(1, 10, payload)], [10], sector=512)
    assert real[512:520] == b"EDGELOGS"
    p = (Image()
         .slot_a(meta(2, head_id=1, head_slot=0, tail_slot=0, tail_id=1, head=real))
         .seg(0, real).write(tmp_path))
    code, out, err = run(p)
    assert (code, err) == (0, "")
    # The payload holds the raw bytes of a segment (zeros and all): not a
    # printable payload, so it is printed in hex (section 7).
    assert out == (b'{"segment_id":1,"commit_id":1,"type":"data","source":"temp","seq":1,'
                   b'"mono_ctr":10,"wall_ns":1700000000000000000,"boot_ns":5000,'
                   + TIME_JSON.encode() + b',"payload":null,"payload_hex":"'
                   + payload.hex().encode() + b'"}\n')
    info = json.loads(run(p, "--inspect")[1])
    assert info["segments"] == 1 and info["adopted_segments"] == 0


def test_newest_slot_with_invalid_head_falls_back(tmp_path):
    # Slot A (gen 2) says head is segment 3 in slot 2, but slot 2 is torn.
    # Slot B (gen 1) has head 2 in slot 1, which is valid: B is chosen, and
    # the forward scan does not adopt the torn segment.
    torn = segment(3, 2, [record(4, 13, b'{"t":4}')], [13], break_body=True, prev=S2)
    p = (two_segment_image()
         .slot_a(meta(2, head_id=3, head_slot=2, tail_slot=0, tail_id=1, head=torn))
         .seg(2, torn).write(tmp_path))
    assert run(p) == (0, TWO_SEGMENT_LINES, "")
    info = json.loads(run(p, "--inspect")[1])
    assert (info["chosen_slot"], info["generation"], info["head_segment_id"]) == ("B", 1, 2)


def test_head_crc_mismatch_passes_slot_over(tmp_path):
    # Slot A (gen 2) committed segment 3 = `cut` in slot 2, but the store
    # later holds a different, valid segment 3 (`reused`) in that slot: the
    # same id and slot, not the segment A names.  A's head is valid, but its
    # body_crc is not A's head_crc, so A is passed over; B (head 2) is
    # chosen and its forward scan adopts `reused` as segment 3.
    cut = segment(3, 2, [record(4, 13, b'{"t":"cut"}')], [13], prev=S2)
    reused = segment(3, 2, [record(4, 13, b'{"t":"reused"}')], [13], prev=S2)
    assert seg_crc(cut) != seg_crc(reused)
    p = (two_segment_image()
         .slot_a(meta(2, head_id=3, head_slot=2, tail_slot=0, tail_id=1, head=cut))
         .seg(2, reused).write(tmp_path))
    assert run(p) == (0, TWO_SEGMENT_LINES + line(3, 4, 13, '{"t":"reused"}'), "")
    info = json.loads(run(p, "--inspect")[1])
    assert (info["chosen_slot"], info["generation"], info["head_segment_id"]) == ("B", 1, 2)
    assert info["adopted_segments"] == 1 and info["head_crc"] == seg_crc(S2)


def test_head_crc_match_chooses_newest_slot(tmp_path):
    s3 = segment(3, 2, [record(4, 13, b'{"t":4}')], [13], prev=S2)
    p = (two_segment_image()
         .slot_a(meta(2, head_id=3, head_slot=2, tail_slot=0, tail_id=1, head=s3))
         .seg(2, s3).write(tmp_path))
    assert run(p) == (0, TWO_SEGMENT_LINES + line(3, 4, 13, '{"t":4}'), "")
    info = json.loads(run(p, "--inspect")[1])
    assert (info["chosen_slot"], info["adopted_segments"]) == ("A", 0)


def test_head_crc_mismatch_in_both_slots_falls_back_to_newest(tmp_path):
    # Neither slot's head is bound by head_crc: the newest valid slot (B,
    # gen 1) is chosen anyway and the mismatch is reported (exit 3).  Its
    # head segment itself is valid, so it is still exported.
    img = two_segment_image()
    img.slot_b(meta(1, head_id=2, head_slot=1, tail_slot=0, tail_id=1, head=S2,
                    head_crc=seg_crc(S2) ^ 1))
    img.slot_a(meta(0, head_id=1, head_slot=0, tail_slot=0, tail_id=1, head=S1,
                    head_crc=seg_crc(S1) ^ 1))
    code, out, err = run(img.write(tmp_path))
    assert (code, out) == (3, TWO_SEGMENT_LINES)
    assert "head_crc" in err and "using slot B" in err
    assert json.loads(run(img.write(tmp_path), "--inspect")[1])["chosen_slot"] == "B"


def test_older_slot_with_no_head_is_chosen_as_it_is(tmp_path):
    # Section 5 step 2: slot B's head (2) is torn, slot A (gen 0) has
    # head_segment_id 0 and is chosen as it is; its forward scan then adopts
    # segment 1 and stops at the torn segment 2.
    torn = segment(2, 1, [record(3, 12, b'{"t":3}')], [12], break_body=True, prev=S1)
    p = two_segment_image().seg(1, torn).write(tmp_path)
    assert run(p) == (0, line(1, 1, 10, '{"t":1}') + line(1, 2, 11, '{"t":"a\\"b"}'), "")
    info = json.loads(run(p, "--inspect")[1])
    assert (info["chosen_slot"], info["adopted_segments"]) == ("A", 1)


def test_neither_head_valid_reports_and_exits_3(tmp_path):
    torn = segment(2, 1, [record(3, 12, b'{"t":3}')], [12], break_body=True, prev=S1)
    p = two_segment_image().slot_a(bytes(4096)).seg(1, torn).write(tmp_path)
    code, out, err = run(p)
    assert code == 3
    assert out == line(1, 1, 10, '{"t":1}') + line(1, 2, 11, '{"t":"a\\"b"}')
    # The torn write broke the first record's record_len: the records are
    # checked before the marker (byte order), so that is what is reported.
    assert "segment 2 in slot 1 at offset" in err and "record_len" in err


def test_adoption_of_valid_segment_after_head(tmp_path):
    # Metadata says head is 2, but segment 3 landed in slot 2 (its metadata
    # write did not): it is adopted and exported.
    s3 = segment(3, 2, [record(4, 13, b'{"t":4}')], [13], prev=S2)
    p = two_segment_image().seg(2, s3).write(tmp_path)
    assert run(p) == (0, TWO_SEGMENT_LINES + line(3, 4, 13, '{"t":4}'), "")
    info = json.loads(run(p, "--inspect")[1])
    assert (info["adopted_segments"], info["segments"], info["head_segment_id"]) == (1, 3, 2)


def test_adoption_into_empty_ring(tmp_path):
    s1 = segment(1, 0, [record(1, 10, b"{}")], [10])
    p = (Image().slot_a(meta(0, head_id=0, head_slot=0, tail_slot=0, tail_id=1))
         .seg(0, s1).write(tmp_path))
    assert run(p) == (0, line(1, 1, 10, "{}"), "")


def test_adoption_overwriting_tail_moves_tail(tmp_path):
    # Full ring: segments 1..4 in slots 0..3, then segment 5 overwrote slot 0
    # without a metadata write.  Committed: 2, 3, 4, 5.
    segs = chain(4)
    img = Image().slot_b(meta(1, head_id=4, head_slot=3, tail_slot=0, tail_id=1,
                              head=segs[3]))
    for i in range(4):
        img.seg(i, segs[i])
    img.seg(0, segment(5, 0, [record(5, 14, b"{}")], [14], prev=segs[3]))
    code, out, err = run(img.write(tmp_path))
    assert (code, err) == (0, "")
    assert out == b"".join(line(i, i, 9 + i, "{}") for i in (2, 3, 4, 5))


def test_valid_segment_not_chaining_onto_head_is_not_adopted(tmp_path):
    # Segment 3 is valid for id 3 in slot 2, but it followed another segment 2
    # (its prev_crc is not the head's body_crc): stale, so not adopted.
    s3 = segment(3, 2, [record(4, 13, b'{"t":4}')], [13], prev=S2, prev_crc=seg_crc(S2) ^ 1)
    p = two_segment_image().seg(2, s3).write(tmp_path)
    assert run(p) == (0, TWO_SEGMENT_LINES, "")
    info = json.loads(run(p, "--inspect")[1])
    assert info["adopted_segments"] == 0


def test_bad_segment_inside_range_is_skipped_exit_3(tmp_path):
    segs = chain(3)
    img = Image().slot_a(meta(2, head_id=3, head_slot=2, tail_slot=0, tail_id=1,
                              head=segs[2]))
    for i in range(3):
        img.seg(i, segs[i])
    img.buf[8192 + SEG + 124] ^= 1  # header_crc of segment 2 in slot 1
    code, out, err = run(img.write(tmp_path))
    assert code == 3
    assert out == line(1, 1, 10, "{}") + line(3, 3, 12, "{}")
    assert err.count("\n") == 1
    assert f"segment 2 in slot 1 at offset {8192 + SEG + 124}: header_crc" in err


def test_bad_block_slot_is_skipped_by_next(tmp_path):
    # Slot 1 is in bad_block_tbl: segment 2 was written to slot 2.
    s1 = segment(1, 0, [record(1, 10, b"{}")], [10])
    s2 = segment(2, 2, [record(2, 11, b"{}")], [11], prev=s1)
    img = Image().slot_a(meta(2, head_id=2, head_slot=2, tail_slot=0, tail_id=1,
                              bad_blocks=[(1, 1, 2)], head=s2))
    img.seg(0, s1)
    img.seg(1, segment(2, 1, [record(9, 90, b'{"stale":1}')], [90]))  # must be ignored
    img.seg(2, s2)
    p = img.write(tmp_path)
    assert run(p) == (0, line(1, 1, 10, "{}") + line(2, 2, 11, "{}"), "")
    info = json.loads(run(p, "--inspect")[1])
    assert info["bad_blocks"] == [{"reason": 1, "segment_id": 2, "slot": 1}]


def test_unknown_type_and_evidence_names(tmp_path):
    recs = [record(1, 10, b'{"reason":"backpressure"}', source=b"edgelog", rtype=4),
            record(2, 11, b"{}", rtype=6),
            record(3, 12, b"{}", rtype=7),
            record(4, 13, b"{}", rtype=9),
            record(5, 14, b"{}", rtype=0),
            record(6, 15, b'{"new_epoch":2}', source=b"edgelog", rtype=8),
            record(7, 16, b"{}", rtype=99),
            record(8, 17, b'{"failures":1}', rtype=10)]
    s1 = segment(1, 0, recs, [10, 11, 12, 13, 14, 15, 16, 17])
    img = (Image().slot_a(meta(2, head_id=1, head_slot=0, tail_slot=0, tail_id=1, head=s1))
           .seg(0, s1))
    p = img.write(tmp_path)
    code, out, _ = run(p)
    assert code == 0
    assert out == (line(1, 1, 10, '{"reason":"backpressure"}', "edgelog", '"drop"')
                   + line(1, 2, 11, "{}", rtype='"boot"')
                   + line(1, 3, 12, "{}", rtype='"clock_step"')
                   + line(1, 4, 13, "{}", rtype='"time_state"')
                   + line(1, 5, 14, "{}", rtype="0")
                   + line(1, 6, 15, '{"new_epoch":2}', "edgelog", '"key_rotation"')
                   + line(1, 7, 16, "{}", rtype="99")
                   + line(1, 8, 17, '{"failures":1}', rtype='"source_fault"'))
    code, out, _ = run(p, "--format", "csv")
    assert code == 0
    assert [row.split(b",")[2] for row in out.splitlines()[1:]] == [
        b"drop", b"boot", b"clock_step", b"time_state", b"0", b"key_rotation", b"99", b"source_fault"]


def test_no_valid_slot_exit_2(tmp_path):
    p = Image().write(tmp_path)
    code, out, err = run(p)
    assert (code, out) == (2, b"")
    assert "not an edgelog store" in err


@pytest.mark.parametrize("cut", [8192 + 2 * SEG,          # inside the ring, after the head
                                 8192 + SEG + 200,        # inside the head segment
                                 STORE - 1])              # one byte short
def test_truncated_image_is_refused_exit_2(tmp_path, cut):
    # Section 2: a slot whose store_size is more than the device holds is
    # "refused as truncated, exit 2".  Both slots describe the whole store,
    # so an image cut short has no valid slot: nothing is printed, even
    # when every committed segment lies before the cut (CLI.md: exit 2, "the
    # file is shorter than its store").
    p = two_segment_image().write(tmp_path)
    p.write_bytes(p.read_bytes()[:cut])
    for args in ((), ("--format", "csv"), ("--inspect",)):
        code, out, err = run(p, *args)
        assert (code, out) == (2, b"")
        assert "not an edgelog store" in err and "truncated" in err
    # Through the real executable, for the exit code.
    proc = subprocess.run([str(SCRIPT), str(p)], capture_output=True)
    assert (proc.returncode, proc.stdout) == (2, b"")
    assert b"truncated" in proc.stderr


def test_store_size_is_bounded_by_the_device_not_the_ring(tmp_path):
    # store_size equal to the device, or below it (bytes after the store),
    # is valid; one byte more than the device is not: the older slot B is
    # chosen, and with B too big as well the store is refused.
    assert run(two_segment_image().write(tmp_path)) == (0, TWO_SEGMENT_LINES, "")
    img = two_segment_image()
    img.buf += bytes(SEG)
    assert run(img.write(tmp_path)) == (0, TWO_SEGMENT_LINES, "")
    img = two_segment_image().slot_a(_good_a(store_size=STORE + 1))
    p = img.write(tmp_path)
    assert run(p) == (0, TWO_SEGMENT_LINES, "")
    assert json.loads(run(p, "--inspect")[1])["chosen_slot"] == "B"
    img.slot_b(meta(1, head_id=2, head_slot=1, tail_slot=0, tail_id=1, head=S2,
                    store_size=STORE + 1))
    code, out, err = run(img.write(tmp_path))
    assert (code, out) == (2, b"")
    assert err.count("truncated") == 2


def test_inspect_reports_chosen_slot_fields(tmp_path):
    p = two_segment_image().write(tmp_path)
    code, out, _ = run(p, "--inspect")
    assert code == 0
    info = json.loads(out)
    assert out.decode() == json.dumps(info, sort_keys=True) + "\n"
    assert info["chosen_slot"] == "B"
    assert info["sources"] == [{"last_seq": 0, "name": "temp"}]
    assert (info["ring_slots"], info["segment_size"], info["store_size"]) == (SLOTS, SEG, STORE)
    assert (info["tail_segment_id"], info["tail_slot"], info["segments"]) == (1, 0, 2)


@pytest.mark.parametrize("mutate, reason", [
    (lambda rec: rec[:-1] + b"X", "end marker"),
    (lambda rec: rec[:50] + bytes([rec[50] ^ 1]) + rec[51:], "record crc"),
    (lambda rec: rec + record(3, 11, b"{}"), "does not increase"),
])
def test_bad_record_makes_segment_invalid(tmp_path, mutate, reason):
    # The segment is sealed around the damaged record (good header, marker
    # and body crc), so only the record checks can catch it.  Segment 2 is
    # in the middle of the committed range 1..3.
    s1 = segment(1, 0, [record(1, 10, b"{}")], [10])
    s2 = segment(2, 1, [mutate(record(2, 11, b'{"t":2}'))], [11], prev=s1)
    s3 = segment(3, 2, [record(3, 12, b"{}")], [12], prev=s2)
    img = Image().slot_a(meta(2, head_id=3, head_slot=2, tail_slot=0, tail_id=1, head=s3))
    img.seg(0, s1).seg(1, s2).seg(2, s3)
    code, out, err = run(img.write(tmp_path))
    assert code == 3
    assert out == line(1, 1, 10, "{}") + line(3, 3, 12, "{}")
    assert "segment 2 in slot 1" in err and reason in err


# ---------------------------------------------------------------------------
# Format version 2: the seal and the hash chain
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("old", [1, 2, 3, 4])
def test_older_version_store_is_not_a_store_exit_2(tmp_path, old):
    # A version 1 to 4 store is "not a store this version reads": neither
    # slot is valid (format_version must be 5), and an older version is not
    # newer, so exit 2, not 5.
    img = two_segment_image()
    img.slot_a(meta(0, head_id=1, head_slot=0, tail_slot=0, tail_id=1, head=S1, version=old))
    img.slot_b(meta(1, head_id=2, head_slot=1, tail_slot=0, tail_id=1, head=S2, version=old))
    code, out, err = run(img.write(tmp_path))
    assert (code, out) == (2, b"")
    assert "not an edgelog store" in err and f"format_version {old}" in err


@pytest.mark.parametrize("old", [2, 3, 4])
def test_older_version_slot_beside_a_version_5_slot_is_passed_over(tmp_path, old):
    # Newest slot A says an older format_version (CRC good): not valid, B is
    # chosen.
    p = two_segment_image().slot_a(_good_a(version=old)).write(tmp_path)
    assert json.loads(run(p, "--inspect")[1])["chosen_slot"] == "B"
    assert run(p) == (0, TWO_SEGMENT_LINES, "")


@pytest.mark.parametrize("old", [1, 2, 3, 4, 6])
def test_older_version_segment_is_not_valid(tmp_path, old):
    # Segment 2 written with a header format_version other than 5 (section
    # 3.1; CRCs refitted): not valid, whatever the metadata says.
    s2 = segment(2, 1, [record(3, 12, b'{"t":3}')], [12], prev=S1, version=old)
    s3 = segment(3, 2, [record(4, 13, b"{}")], [13], prev=s2)
    img = two_segment_image().slot_a(meta(2, head_id=3, head_slot=2, tail_slot=0, tail_id=1,
                                          head=s3))
    code, out, err = run(img.seg(1, s2).seg(2, s3).write(tmp_path))
    assert code == 3
    assert "segment 2 in slot 1" in err and f"format_version {old}" in err


def test_adoption_needs_the_seal_hash_to_match(tmp_path):
    # Segment 3 is valid (3.4 does not check the hash) and chains by prev_crc
    # and prev_hash, but its seal claims another segment_hash: not adopted.
    s3 = segment(3, 2, [record(4, 13, b'{"t":4}')], [13], prev=S2, seal_hash=b"\x5a" * 32)
    p = two_segment_image().seg(2, s3).write(tmp_path)
    assert run(p) == (0, TWO_SEGMENT_LINES, "")
    assert json.loads(run(p, "--inspect")[1])["adopted_segments"] == 0


def test_adoption_needs_prev_hash_to_chain(tmp_path):
    # prev_crc chains onto the head but prev_hash does not: not adopted.
    s3 = segment(3, 2, [record(4, 13, b'{"t":4}')], [13], prev=S2, prev_hash=b"\x01" * 32)
    p = two_segment_image().seg(2, s3).write(tmp_path)
    assert run(p) == (0, TWO_SEGMENT_LINES, "")
    assert json.loads(run(p, "--inspect")[1])["adopted_segments"] == 0


def test_adoption_hash_chain_starts_at_slot_hash_head(tmp_path):
    # The first adopted segment must chain onto the chosen slot's hash_head:
    # with a slot whose hash_head is not S2's, segment 3 is not adopted.
    s3 = segment(3, 2, [record(4, 13, b'{"t":4}')], [13], prev=S2)
    img = two_segment_image().seg(2, s3)
    img.slot_b(meta(1, head_id=2, head_slot=1, tail_slot=0, tail_id=1, head=S2,
                    hash_head=b"\x33" * 32))
    assert run(img.write(tmp_path)) == (0, TWO_SEGMENT_LINES, "")


def test_adoption_moves_the_head_hash(tmp_path):
    # Segments 3 and 4 both adopted: 4 chains onto 3's segment_hash, not the
    # slot's hash_head.  A segment 5 chained onto the slot's head is not.
    s3 = segment(3, 2, [record(4, 13, b'{"t":4}')], [13], prev=S2)
    s4 = segment(4, 3, [record(5, 14, b'{"t":5}')], [14], prev=s3)
    s5 = segment(5, 0, [record(6, 15, b'{"t":6}')], [15], prev=S2)  # overwrites slot 0
    p = two_segment_image().seg(2, s3).seg(3, s4).write(tmp_path)
    assert run(p) == (0, TWO_SEGMENT_LINES + line(3, 4, 13, '{"t":4}')
                      + line(4, 5, 14, '{"t":5}'), "")
    assert json.loads(run(p, "--inspect")[1])["adopted_segments"] == 2
    p = two_segment_image().seg(2, s3).seg(3, s4).seg(0, s5).write(tmp_path)
    assert json.loads(run(p, "--inspect")[1])["adopted_segments"] == 2


# -- section 5 step 3: what adopting a segment applies to the metadata --

def edited(slot: bytes, *edits) -> bytes:
    """A metadata slot with (offset, struct format, value) edits, CRC refitted."""
    buf = bytearray(slot)
    for off, fmt, value in edits:
        struct.pack_into(fmt, buf, off, value)
    struct.pack_into("<I", buf, 4092, crc(bytes(buf[:4092])))
    return bytes(buf)


def scan_of(path):
    with open(path, "rb") as fh:
        return dec.scan(dec.Store(fh))


def source_entries(*entries):
    return b"".join(struct.pack("<B39sQ", len(name), name, seq) for name, seq in entries)


def test_adopting_applies_each_segment_as_its_metadata_write_would_have(tmp_path):
    # Slot B (head 2) with counters of its own; segments 3 and 4 adopted.
    slot = edited(meta(1, head_id=2, head_slot=1, tail_slot=0, tail_id=1, head=S2),
                  (120, "<I", 2), (124, "<I", 1), (128, "<I", 9), (136, "<Q", 12),
                  (144, "<Q", 4), (152, "<Q", 3), (2832, "<Q", 1), (2912, "<I", 3),
                  (2916, "<I", 6))
    state = dict(unexp_rst=5, ecc_err_cnt=1, boot_seq=3, uplink_cursor=7, rollback_ctr=4,
                 clock_steps=2, bo_event=8, key_epoch=3, key_id=b"\x07" * 16, key_src=2,
                 records_total=99, mono_hwm=99, wrap_count=99)
    s3 = segment(3, 2, [record(4, 13, b"{}"), record(7, 14, b"{}", source=b"newsrc", rtype=9),
                        record(2, 15, b"{}", source=b"edgelog", rtype=4)],
                 [13, 14, 15], prev=S2, lost=3, dropped=2, state=state)
    s4 = segment(4, 3, [record(2, 16, b"{}"), record(1, 17, b"{}", source=b"edgelog", rtype=2),
                        record(5, 18, b"{}", rtype=1, source=b"newsrc")],
                 [16, 17, 18], prev=s3, lost=1, state=dict(unexp_rst=1, clock_steps=3))
    p = two_segment_image().slot_b(slot).seg(2, s3).seg(3, s4).write(tmp_path)
    result = scan_of(p)
    assert result.adopted == 2
    m = dec.applied_metadata(result)
    assert (m.head_segment_id, m.head_slot, m.commit_id) == (4, 3, 4)
    assert (m.head_crc, m.hash_head) == (seg_crc(s4), seg_hash(s4))
    # key fields from the statement (s4's: unsigned, key_src 0)
    assert (m.key_id, m.key_epoch, m.sig_alg, m.key_src) == (bytes(16), 0, 0, 0)
    assert m.mono_hwm == 18                          # the larger of 12 and last_mono
    assert (m.lost_total, m.dropped_total) == (4, 2)  # header lost/dropped_records
    assert m.records_total == 3 + 1 + 2              # data records (type 1) only
    assert m.wrap_count == 0 and m.clock_steps == 3  # the last adopted seal's
    assert (m.unexp_rst, m.ecc_err_cnt, m.boot_seq, m.uplink_cursor, m.rollback_ctr) == (
        5, 9, 3, 7, 4)                               # the larger of theirs and the seal's
    assert m.bo_event == 0                           # the last adopted seal's, as clock_steps
    assert (m.tail_segment_id, m.tail_slot) == (1, 0)
    # Each record raises its source's last_seq; new sources appended in
    # record order.
    assert [(x.name, x.last_seq) for x in m.sources] == [("temp", 4), ("newsrc", 7),
                                                         ("edgelog", 2)]
    assert m.source_count == 3
    assert m.tables_hash() == hashlib.sha256(
        struct.pack("<II", 0, 3)
        + source_entries((b"temp", 4), (b"newsrc", 7), (b"edgelog", 2))).digest()
    # The chosen slot itself is unchanged, and nothing adopted: nothing applied.
    assert result.meta.head_segment_id == 2 and result.meta.source_count == 1
    plain = scan_of(two_segment_image().write(tmp_path))
    assert dec.applied_metadata(plain) == plain.meta
    # Only s3 adopted (s4 does not chain): s3's key fields.
    s4b = segment(4, 3, [record(2, 16, b"{}")], [16], prev=s3, prev_crc=1)
    p = two_segment_image().slot_b(slot).seg(2, s3).seg(3, s4b).write(tmp_path)
    m = dec.applied_metadata(scan_of(p))
    assert (m.head_segment_id, m.key_id, m.key_epoch, m.key_src) == (3, b"\x07" * 16, 3, 2)
    assert (m.clock_steps, m.unexp_rst, m.mono_hwm, m.records_total) == (2, 5, 15, 4)


def test_adopting_past_the_last_slot_wraps_and_moves_the_tail(tmp_path):
    # A full 4-slot ring (1..4, head in slot 3); segment 5 adopted in slot 0,
    # below head_slot: wrap_count + 1, and it overwrote the tail (now 2).
    segs = chain(4)
    s5 = segment(5, 0, [record(5, 14, b"{}")], [14], prev=segs[3])
    img = Image().slot_a(meta(2, head_id=4, head_slot=3, tail_slot=0, tail_id=1, head=segs[3]))
    for i, sg in enumerate(segs):
        img.seg(i, sg)
    img.seg(0, s5)
    m = dec.applied_metadata(scan_of(img.write(tmp_path)))
    assert (m.wrap_count, m.head_slot, m.tail_segment_id, m.tail_slot) == (1, 0, 2, 1)
    # Adopting in a higher slot does not wrap.
    img = Image().slot_a(meta(2, head_id=2, head_slot=1, tail_slot=0, tail_id=1, head=segs[1]))
    for i, sg in enumerate(segs):
        img.seg(i, sg)
    m = dec.applied_metadata(scan_of(img.write(tmp_path)))
    assert (m.head_segment_id, m.wrap_count, m.tail_segment_id) == (4, 0, 1)


def test_adopting_appends_sources_only_while_the_table_has_room(tmp_path):
    names = [("s%d" % i, i) for i in range(32)]
    s3 = segment(3, 2, [record(40, 13, b"{}", source=b"new"), record(50, 14, b"{}",
                                                                     source=b"s5")],
                 [13, 14], prev=S2)
    img = two_segment_image().slot_b(meta(1, head_id=2, head_slot=1, tail_slot=0, tail_id=1,
                                          head=S2, sources=names)).seg(2, s3)
    m = dec.applied_metadata(scan_of(img.write(tmp_path)))
    assert m.source_count == 32 and [x.name for x in m.sources] == [n for n, _ in names]
    assert m.sources[5].last_seq == 50
    assert m.tables_hash() == hashlib.sha256(
        struct.pack("<II", 0, 32)
        + source_entries(*((n.encode(), 50 if n == "s5" else q) for n, q in names))).digest()
    # With room for one more: "new" is appended (at 32 entries the table is full).
    img.slot_b(meta(1, head_id=2, head_slot=1, tail_slot=0, tail_id=1, head=S2,
                    sources=names[:31]))
    m = dec.applied_metadata(scan_of(img.write(tmp_path)))
    assert m.source_count == 32 and (m.sources[31].name, m.sources[31].last_seq) == ("new", 40)


def test_torn_after_head_needs_a_header_chaining_onto_the_head(tmp_path):
    # Sections 5 and 9 item 6: the slot where the forward scan stopped holds
    # a header valid for the expected id and slot whose prev_crc equals the
    # head's body_crc, and the segment is not valid.
    cases = {
        "torn": (segment(3, 2, [record(4, 13, b"{}")], [13], prev=S2, break_body=True), True),
        "other prev_crc": (segment(3, 2, [record(4, 13, b"{}")], [13], prev=S2,
                                   prev_crc=seg_crc(S2) ^ 1, break_body=True), False),
        "other id": (segment(4, 2, [record(4, 13, b"{}")], [13], prev=S2,
                             break_body=True), False),
        "other slot": (segment(3, 1, [record(4, 13, b"{}")], [13], prev=S2,
                               break_body=True), False),
        "valid, not adopted": (segment(3, 2, [record(4, 13, b"{}")], [13], prev=S2,
                                       seal_hash=b"\x5a" * 32), False),
        "nothing": (bytes(SEG), False),
    }
    for name, (s3, torn) in cases.items():
        with open(two_segment_image().seg(2, s3).write(tmp_path), "rb") as fh:
            store = dec.Store(fh)
            result = dec.scan(store)
            assert (result.stop_slot, result.stop_segment_id) == (2, 3), name
            assert dec.torn_after_head(store, result) is torn, name


def _poke(off, fmt, value):
    def change(seal):
        struct.pack_into(fmt, seal, off, value)
        return seal
    return change


def assert_middle_segment_refused(tmp_path, middle, monos, after, reason, **kw):
    """Segments 1 to 3 with `middle` (records at `monos`) in segment 2, built
    with `kw`, and one record (seq, mono) `after` in segment 3: export skips
    segment 2 alone, names it and the reason, and exits 3."""
    seq, mono = after
    s1 = segment(1, 0, [record(1, 10, b"{}")], [10])
    s2 = segment(2, 1, middle, monos, prev=s1, **kw)
    s3 = segment(3, 2, [record(seq, mono, b"{}")], [mono], prev=s2)
    img = Image().slot_a(meta(2, head_id=3, head_slot=2, tail_slot=0, tail_id=1, head=s3))
    code, out, err = run(img.seg(0, s1).seg(1, s2).seg(2, s3).write(tmp_path))
    assert code == 3
    assert out == line(1, 1, 10, "{}") + line(3, seq, mono, "{}")
    assert "segment 2 in slot 1" in err and reason in err


def _signed_seal(alg, sig_len):
    def change(seal):
        struct.pack_into("<BBH", seal, 184, alg, 1, sig_len)
        seal[320:320 + sig_len] = b"\xee" * sig_len
        return seal
    return change


@pytest.mark.parametrize("kw, reason", [
    (dict(seal=_poke(0, "<8s", b"EDGESIG1")), "EDGESIG2"),   # format 4's statement magic
    (dict(seal_len=0), "seal_len 0"),
    (dict(seal_len=192), "seal_len 192"),                    # format 4's seal_len
    (dict(seal_len=384), "seal_len 384"),                    # sig_len is 0
    (dict(seal=_poke(186, "<H", 65), seal_len=385), "sig_len 65"),
    (dict(seal=_poke(184, "<B", 4)), "sig_alg 4"),           # no such algorithm
    (dict(seal=_poke(184, "<B", 255)), "sig_alg 255"),
    (dict(seal=_signed_seal(1, 32), seal_len=352), "sig_len 32"),    # Ed25519 is 64
    (dict(seal=_signed_seal(3, 64), seal_len=384), "sig_len 64"),    # HMAC is 32
    (dict(seal=_signed_seal(2, 0)), "sig_len 0"),                    # ECDSA is 64
    (dict(seal=_poke(186, "<H", 64), seal_len=384), "sig_len 64"),   # unsigned is 0
    (dict(seal=_signed_seal(1, 64), seal_len=320), "seal_len 320"),
    (dict(seal=_poke(192, "<16s", bytes(16))), "statement store_uuid"),
    (dict(seal=_poke(24, "<Q", 9)), "statement segment_id"),
    (dict(seal=_poke(32, "<Q", 9)), "statement commit_id"),
    (dict(seal=_poke(40, "<Q", 9)), "statement first_mono"),
    (dict(seal=_poke(48, "<Q", 9)), "statement last_mono"),
    (dict(seal=_poke(56, "<I", 9)), "statement record_count"),
    (dict(seal=_poke(120, "<32s", b"\x07" * 32)), "statement prev_hash"),
    (dict(seal=_poke(200, "<B", 0xFF)), "statement store_uuid"),
])
def test_malformed_seal_makes_segment_invalid(tmp_path, kw, reason):
    assert_middle_segment_refused(tmp_path, [record(2, 11, b"{}")], [11], (3, 12), reason, **kw)


def test_signed_seal_is_well_formed_without_checking_the_signature(tmp_path):
    # sig_alg 1 or 2 with sig_len 64 and seal_len 384, sig_alg 3 with 32 and
    # 352: well formed.  The decoder does not verify signatures (that is the
    # verifier's job), so it exports them.
    for alg, sig_len in ((1, 64), (2, 64), (3, 32)):
        s1 = segment(1, 0, [record(1, 10, b"{}")], [10], seal=_signed_seal(alg, sig_len),
                     seal_len=320 + sig_len)
        p = Image().slot_a(meta(2, head_id=1, head_slot=0, tail_slot=0, tail_id=1,
                                head=s1)).seg(0, s1).write(tmp_path)
        assert run(p) == (0, line(1, 1, 10, "{}"), "")


def test_inspect_reports_trust_fields(tmp_path):
    info = json.loads(run(two_segment_image().write(tmp_path), "--inspect")[1])
    assert info["hash_head"] == seg_hash(S2).hex()
    assert info["device_id"] == DEVICE_ID.hex() and info["fw_ver_hash"] == FW.hex()
    assert (info["rollback_ctr"], info["key_epoch"], info["sig_alg"]) == (1, 0, "unsigned")
    assert info["key_id"] == "00" * 16 and info["key_src"] == "none"


# ---------------------------------------------------------------------------
# Format version 3: the time path
# ---------------------------------------------------------------------------

SYNCED, UNTRUSTED, AFTER_STEP = 1, 2, 4
W = 1_700_000_000_000_000_000   # a wall time known good
HOUR = 3_600_000_000_000


def time_store(tmp_path, *segments_recs):
    """One committed segment per argument, slots 0.., chained; each argument
    a list of record kwargs (seq, mono, payload, ... as for record()).
    Returns the image path."""
    segs = []
    for i, recs in enumerate(segments_recs):
        encoded = [record(**r) for r in recs]
        segs.append(segment(i + 1, i, encoded, [r["mono"] for r in recs],
                            prev=segs[-1] if segs else None))
    img = Image().slot_a(meta(2, head_id=len(segs), head_slot=len(segs) - 1, tail_slot=0,
                              tail_id=1, head=segs[-1]))
    for i, data in enumerate(segs):
        img.seg(i, data)
    return img.write(tmp_path)


def r(mono, boot, wall, flags=0, boot_seq=1, rtype=1, source=b"temp", payload=b"{}",
      **sample):
    """Record kwargs for record() and tline(); sample: maxerror_us,
    esterror_us, last_sync_ns when not record()'s defaults."""
    return dict(seq=mono, mono=mono, payload=payload, source=source, rtype=rtype, wall=wall,
                boot=boot, time_flags=flags, boot_seq=boot_seq, **sample)


# The names section 7 prints for the types these tests write (spelled out
# here, not taken from the decoder).
TYPE_JSON = {1: '"data"', 6: '"boot"', 7: '"clock_step"', 9: '"time_state"'}


def tline(seg_id, rec, corrected=None):
    """The jsonl line of section 7 for record kwargs `rec` (as r() returns
    them) in segment seg_id; corrected: the wall_corrected_ns expected."""
    extra = "" if corrected is None else ',"wall_corrected_ns":%d' % corrected
    maxerr = rec.get("maxerror_us", MAXERR)
    esterr = rec.get("esterror_us", ESTERR)
    last_sync = rec.get("last_sync_ns", LAST_SYNC)
    return ('{"segment_id":%d,"commit_id":%d,"type":%s,"source":"%s","seq":%d,'
            '"mono_ctr":%d,"wall_ns":%d%s,"boot_ns":%d,"boot_seq":%d,"time_flags":%d,'
            '"maxerror_us":%s,"esterror_us":%s,"last_sync_ns":%s,"payload":%s}\n'
            % (seg_id, seg_id, TYPE_JSON[rec["rtype"]], rec["source"].decode(), rec["seq"],
               rec["mono"], rec["wall"], extra, rec["boot"], rec["boot_seq"],
               rec["time_flags"],
               "null" if maxerr == 0xFFFFFFFF else maxerr,
               "null" if esterr == 0xFFFFFFFF else esterr,
               "null" if last_sync == 0 else last_sync,
               rec["payload"].decode())).encode()


STEP_PAYLOAD = (b'{"direction":"forward","magnitude_ns":3600000000000,'
                b'"wall_before_ns":1700000000000002000,"boot_before_ns":2000,'
                b'"wall_after_ns":1700003600000003000,"boot_after_ns":3000,"source":"manual"}')

# Boot 1: synced, then someone sets the clock an hour ahead (the kernel
# drops its synced status); the clock_step record comes right before the
# first record after the step.
FORWARD = [r(10, 1_000, W + 1_000, SYNCED),
           r(11, 2_000, W + 2_000, SYNCED),
           r(12, 3_000, W + HOUR + 3_000, AFTER_STEP, rtype=7, source=b"edgelog.time",
             payload=STEP_PAYLOAD),
           r(13, 4_000, W + HOUR + 4_000, AFTER_STEP),
           r(14, 5_000, W + HOUR + 5_000, 0)]


def test_time_flags_and_boot_seq_are_printed_as_stored(tmp_path):
    # Any time_flags (even bits FORMAT.md does not define) and any boot_seq
    # are valid; section 7 prints both as the stored numbers after boot_ns
    # (time_flags "the number": undefined bits are not masked off).  The
    # rest of each line is what it was for the same records without them.
    recs = [record(1, 10, b'{"t":1}', time_flags=SYNCED | AFTER_STEP, boot_seq=1),
            record(2, 11, b'{"t":"a\\"b"}', time_flags=0xFFFF, boot_seq=0xFFFF)]
    s1 = segment(1, 0, recs, [10, 11])
    s2 = segment(2, 1, [record(3, 12, b'{"t":3}', time_flags=UNTRUSTED, boot_seq=7)],
                 [12], prev=s1)
    img = (Image().slot_a(meta(0, head_id=0, head_slot=0, tail_slot=0, tail_id=1))
           .slot_b(meta(1, head_id=2, head_slot=1, tail_slot=0, tail_id=1, head=s2))
           .seg(0, s1).seg(1, s2))
    p = img.write(tmp_path)
    stored = [b'"boot_seq":1,"time_flags":5,', b'"boot_seq":65535,"time_flags":65535,',
              b'"boot_seq":7,"time_flags":2,']
    expected = b"".join(
        plain.replace(b'"boot_seq":0,"time_flags":0,', flags) + b"\n"
        for plain, flags in zip(TWO_SEGMENT_LINES.splitlines(), stored))
    assert run(p) == (0, expected, "")
    assert run(p, "--wall", "raw") == (0, expected, "")
    code, out, _ = run(p, "--format", "csv")
    assert code == 0
    plain = run(two_segment_image().write(tmp_path, "v.img"), "--format", "csv")[1]
    stored_csv = [b",1,5,", b",65535,65535,", b",7,2,"]
    assert out.splitlines() == plain.splitlines()[:1] + [
        row.replace(b",5000,0,0,", b",5000" + flags) for row, flags in
        zip(plain.splitlines()[1:], stored_csv)]


def test_time_records_are_named_and_exported_as_stored(tmp_path):
    boot = (b'{"boot_id":"0123456789abcdef0123456789abcdef","boot_seq":2,'
            b'"unexpected_reset":false,"mono_resume":9,"reason":"start","synced":true}')
    state = b'{"reason":"periodic","synced":true,"maxerror_us":16000}'
    recs = [r(10, 1_000, W + 1_000, SYNCED, boot_seq=2, rtype=6, source=b"edgelog.time",
              payload=boot),
            r(11, 2_000, W + 2_000, SYNCED, boot_seq=2, rtype=9, source=b"edgelog.time",
              payload=state)]
    p = time_store(tmp_path, recs)
    assert run(p) == (0, tline(1, recs[0]) + tline(1, recs[1]), "")
    assert tline(1, recs[0]).startswith(
        b'{"segment_id":1,"commit_id":1,"type":"boot","source":"edgelog.time","seq":10,')


def test_wall_corrected_forward_step(tmp_path):
    # The reference is the last synced, trusted record of the boot (mono 11):
    # offset W.  The hour the clock jumped is mapped away.
    p = time_store(tmp_path, FORWARD[:2], FORWARD[2:])
    code, out, err = run(p, "--wall", "corrected")
    assert (code, err) == (0, "")
    assert out == (tline(1, FORWARD[0], W + 1_000)
                   + tline(1, FORWARD[1], W + 2_000)
                   + tline(2, FORWARD[2], W + 3_000)
                   + tline(2, FORWARD[3], W + 4_000)
                   + tline(2, FORWARD[4], W + 5_000))
    # Without --wall corrected the same store prints the stored wall_ns only.
    assert b"wall_corrected_ns" not in run(p)[1]
    assert run(p)[1] == b"".join(tline(1 + (i >= 2), rec) for i, rec in enumerate(FORWARD))


def test_wall_corrected_backward_step(tmp_path):
    # The clock starts an hour ahead, unsynchronized; the sync steps it back.
    # The reference is the last record with synced set and wall_untrusted
    # clear (mono 14), not a later synced one whose wall is untrusted (mono 15).
    recs = [r(11, 1_000, W + HOUR + 1_000, UNTRUSTED),
            r(12, 2_000, W + HOUR + 2_000, 0),
            r(13, 3_000, W + 3_000, SYNCED | AFTER_STEP, rtype=7, source=b"edgelog.time"),
            r(14, 4_000, W + 4_000, SYNCED),
            r(15, 5_000, W + 7_777 + 5_000, SYNCED | UNTRUSTED)]
    p = time_store(tmp_path, recs)
    code, out, _ = run(p, "--wall", "corrected")
    assert code == 0
    assert out == (tline(1, recs[0], W + 1_000)
                   + tline(1, recs[1], W + 2_000)
                   + tline(1, recs[2], W + 3_000)
                   + tline(1, recs[3], W + 4_000)
                   + tline(1, recs[4], W + 5_000))


def test_wall_corrected_boot_without_a_good_record_uses_its_last_record(tmp_path):
    # No record of the boot has synced set with wall_untrusted clear (mono
    # 10 is synced but untrusted): the reference is the last record, mono 12.
    d = 42 * HOUR + 17
    recs = [r(10, 1_000, W + 1_000, SYNCED | UNTRUSTED),
            r(11, 2_000, W + d + 2_000, AFTER_STEP),
            r(12, 3_000, W + d + 3_000, 0)]
    p = time_store(tmp_path, recs[:2], recs[2:])
    code, out, _ = run(p, "--wall", "corrected")
    assert code == 0
    assert out == (tline(1, recs[0], W + d + 1_000)
                   + tline(1, recs[1], W + d + 2_000)
                   + tline(2, recs[2], W + d + 3_000))


def test_wall_corrected_two_boots_are_not_remapped_across(tmp_path):
    # Boot 1 (boot_seq 1) has no good record: its reference is its own last
    # record (mono 11), not a good record of boot 2.  Boot 2 (boot_seq 2,
    # boot_ns starting again) maps onto its own last good record (mono 13),
    # even though the last record of the store (mono 14) is untrusted.
    b1 = 5 * HOUR
    boot = b'{"boot_id":"00112233445566778899aabbccddeeff","boot_seq":2}'
    first = [r(10, 1_000, W - b1 + 1_000, UNTRUSTED),
             r(11, 900_000, W - b1 + 9 + 900_000, UNTRUSTED)]
    second = [r(12, 500, W + 500, SYNCED, boot_seq=2, rtype=6, source=b"edgelog.time",
                payload=boot),
              r(13, 1_500, W + 1_500, SYNCED, boot_seq=2),
              r(14, 2_500, W + HOUR + 2_500, UNTRUSTED | AFTER_STEP, boot_seq=2)]
    p = time_store(tmp_path, first, second)
    code, out, _ = run(p, "--wall", "corrected")
    assert code == 0
    assert out == (tline(1, first[0], W - b1 + 9 + 1_000)
                   + tline(1, first[1], W - b1 + 9 + 900_000)
                   + tline(2, second[0], W + 500)
                   + tline(2, second[1], W + 1_500)
                   + tline(2, second[2], W + 2_500))


def test_wall_corrected_boots_are_boot_seq_values_not_runs(tmp_path):
    # A boot is its boot_seq: records of boot_seq 3 after one of boot_seq 4
    # (salvaged or evidence records keep theirs) still take boot 3's
    # reference (mono 10), and boot 4's is its own (mono 11).
    recs = [r(10, 100, W + 100, SYNCED, boot_seq=3),
            r(11, 50, W + HOUR + 50, SYNCED, boot_seq=4),
            r(12, 200, W + 7 + 200, 0, boot_seq=3)]
    p = time_store(tmp_path, recs)
    out = run(p, "--wall", "corrected")[1]
    assert out == (tline(1, recs[0], W + 100)
                   + tline(1, recs[1], W + HOUR + 50)
                   + tline(1, recs[2], W + 200))


def test_wall_corrected_csv(tmp_path):
    p = time_store(tmp_path, FORWARD[:2], FORWARD[2:])
    code, out, err = run(p, "--format", "csv", "--wall", "corrected")
    assert (code, err) == (0, "")
    step = STEP_PAYLOAD.replace(b'"', b'""')
    sample = b"16000,500,1699999999000000000"
    assert out == (b"segment_id,commit_id,type,source,seq,mono_ctr,wall_ns,wall_corrected_ns,"
                   b"boot_ns,boot_seq,time_flags,maxerror_us,esterror_us,last_sync_ns,"
                   b"payload\n"
                   b"1,1,data,\"temp\",10,10,1700000000000001000,1700000000000001000,1000,1,1,"
                   + sample + b',"{}"\n'
                   b"1,1,data,\"temp\",11,11,1700000000000002000,1700000000000002000,2000,1,1,"
                   + sample + b',"{}"\n'
                   b"2,2,clock_step,\"edgelog.time\",12,12,1700003600000003000,1700000000000003000,"
                   b"3000,1,4," + sample + b',"' + step + b'"\n'
                   b"2,2,data,\"temp\",13,13,1700003600000004000,1700000000000004000,4000,1,4,"
                   + sample + b',"{}"\n'
                   b"2,2,data,\"temp\",14,14,1700003600000005000,1700000000000005000,5000,1,0,"
                   + sample + b',"{}"\n')
    assert out.startswith(dec.CSV_HEADER_CORRECTED)
    # Raw CSV keeps the raw header and columns.
    raw = run(p, "--format", "csv")[1]
    assert raw.startswith(dec.CSV_HEADER)
    assert raw.splitlines()[1] == (b"1,1,data,\"temp\",10,10,1700000000000001000,1000,1,1,"
                                   + sample + b',"{}"')


def test_wall_corrected_empty_store(tmp_path):
    p = Image().slot_a(meta(0, head_id=0, head_slot=0, tail_slot=0, tail_id=1)).write(tmp_path)
    assert run(p, "--wall", "corrected") == (0, b"", "")
    assert run(p, "--wall", "corrected", "--format", "csv") == (
        0, b"segment_id,commit_id,type,source,seq,mono_ctr,wall_ns,wall_corrected_ns,"
           b"boot_ns,boot_seq,time_flags,maxerror_us,esterror_us,last_sync_ns,payload\n", "")


def test_wall_corrected_since_commit_keeps_the_reference(tmp_path):
    # The decoder's reading: the reference comes from all committed records,
    # so --since-commit drops lines but does not change a corrected value.
    p = time_store(tmp_path, FORWARD[:2], FORWARD[2:])
    code, out, _ = run(p, "--wall", "corrected", "--since-commit", "1")
    assert code == 0
    assert out.splitlines()[1:] == [
        tline(2, FORWARD[3], W + 4_000).rstrip(b"\n"),
        tline(2, FORWARD[4], W + 5_000).rstrip(b"\n")]
    assert len(out.splitlines()) == 3


def test_wall_corrected_skips_an_invalid_segment(tmp_path):
    # Segment 2 holds the last good record (mono 11, offset W + 5) but fails
    # validation: it is not printed and does not count, so the reference is
    # the good record before it (mono 10, offset W).  Exit 3 as for any bad
    # segment.
    recs = [r(10, 1_000, W + 1_000, SYNCED), r(11, 2_000, W + 5 + 2_000, SYNCED),
            r(12, 3_000, W + HOUR + 3_000, 0)]
    s1 = segment(1, 0, [record(**recs[0])], [10])
    s2 = segment(2, 1, [record(**recs[1])], [11], prev=s1)
    s3 = segment(3, 2, [record(**recs[2])], [12], prev=s2)
    img = Image().slot_a(meta(2, head_id=3, head_slot=2, tail_slot=0, tail_id=1, head=s3))
    img.seg(0, s1).seg(1, s2).seg(2, s3)
    good = img.write(tmp_path, "good.img")
    assert run(good, "--wall", "corrected")[1].splitlines()[-1] == tline(
        3, recs[2], W + 5 + 3_000).rstrip(b"\n")
    img.buf[8192 + SEG + 124] ^= 1  # header_crc of segment 2
    code, out, err = run(img.write(tmp_path), "--wall", "corrected")
    assert code == 3 and "segment 2 in slot 1" in err
    assert out == tline(1, recs[0], W + 1_000) + tline(3, recs[2], W + 3_000)


def test_wall_corrected_wraps_at_64_bits(tmp_path):
    # "The arithmetic wraps at 64 bits" (section 7); wall_ns and boot_ns are
    # i64, so the result is a signed 64-bit value.  The reference (mono 11,
    # synced) has wall_ns - boot_ns = 2^63 - 1 - (-1) = 2^63, one past
    # INT64_MAX: mono 10 (boot_ns 0) maps to -2^63, mono 11 back to its own
    # wall_ns, and mono 12 (boot_ns 5) to -2^63 + 5.
    top = 2**63 - 1
    recs = [r(10, 0, W, 0), r(11, -1, top, SYNCED), r(12, 5, W + 5, 0)]
    p = time_store(tmp_path, recs)
    code, out, _ = run(p, "--wall", "corrected")
    assert code == 0
    assert out == (tline(1, recs[0], -2**63) + tline(1, recs[1], top)
                   + tline(1, recs[2], -2**63 + 5))


def test_wall_option_rejects_other_values(tmp_path):
    p = two_segment_image().write(tmp_path)
    with pytest.raises(SystemExit) as exc:
        run(p, "--wall", "fixed")
    assert exc.value.code == 2


def test_inspect_reports_time_fields(tmp_path):
    boot_id = bytes.fromhex("0123456789abcdef0123456789abcdef")
    p = two_segment_image().slot_b(meta(
        1, head_id=2, head_slot=1, tail_slot=0, tail_id=1, head=S2,
        time=(boot_id, 7, 3, HOUR, 12_345, W, -250_000_000, 1))).write(tmp_path)
    info = json.loads(run(p, "--inspect")[1])
    assert info["boot_id"] == boot_id.hex()
    assert (info["boot_seq"], info["clock_steps"], info["largest_step_ns"]) == (7, 3, HOUR)
    assert (info["unsync_ns"], info["last_sync_wall_ns"]) == (12_345, W)
    assert (info["rtc_offset_ns"], info["rtc_state"]) == (-250_000_000, "read")
    # A freshly formatted slot: never synced, RTC never read.
    info = json.loads(run(two_segment_image().write(tmp_path, "z.img"), "--inspect")[1])
    assert (info["boot_id"], info["boot_seq"], info["last_sync_wall_ns"],
            info["rtc_state"]) == ("00" * 16, 0, 0, "never_read")


@pytest.mark.parametrize("state, name", [(0, "never_read"), (1, "read"), (2, "no_rtc"),
                                         (9, "9")])
def test_inspect_rtc_state_names(tmp_path, state, name):
    p = two_segment_image().slot_b(meta(
        1, head_id=2, head_slot=1, tail_slot=0, tail_id=1, head=S2,
        time=(bytes(16), 1, 0, 0, 0, 0, 0, state))).write(tmp_path)
    assert json.loads(run(p, "--inspect")[1])["rtc_state"] == name


# ---------------------------------------------------------------------------
# Format version 4: the sync sample (maxerror_us, esterror_us, last_sync_ns)
# ---------------------------------------------------------------------------

def test_record_layout_is_the_documented_one():
    # The encoder above, the decoder and FORMAT.md section 3.2 agree byte for
    # byte: a record laid out field by field at the documented offsets (not
    # with the encoder's struct string) is what record() writes, and the
    # decoder reads each field back from its own offset.
    source, payload = b"src", b'{"v":1}'
    raw = bytearray(60 + len(source) + len(payload) + 8)
    struct.pack_into("<I", raw, 0, len(raw))               # record_len
    struct.pack_into("<H", raw, 4, 1)                      # type
    struct.pack_into("<H", raw, 6, 0x0003)                 # time_flags
    struct.pack_into("<Q", raw, 8, 0x0102)                 # seq
    struct.pack_into("<Q", raw, 16, 0x0304)                # mono_ctr
    struct.pack_into("<q", raw, 24, W)                     # wall_ns
    struct.pack_into("<q", raw, 32, -7)                    # boot_ns
    struct.pack_into("<H", raw, 40, len(source))           # source_len
    struct.pack_into("<H", raw, 42, 0x0506)                # boot_seq
    struct.pack_into("<I", raw, 44, 0x11223344)            # maxerror_us
    struct.pack_into("<I", raw, 48, 0x55667788)            # esterror_us
    struct.pack_into("<q", raw, 52, -0x0A0B0C0D0E0F1011)   # last_sync_ns
    raw[60:60 + len(source)] = source
    raw[60 + len(source):-8] = payload
    struct.pack_into("<I", raw, len(raw) - 8, crc(bytes(raw[:-8])))
    raw[-4:] = b"RECE"
    assert bytes(raw) == record(0x0102, 0x0304, payload, source, 1, W, -7, 3, 0x0506,
                                0x11223344, 0x55667788, -0x0A0B0C0D0E0F1011)
    [rec] = dec.parse_records(bytes(raw), 0, len(raw), 1, 0x0304, 0x0304)
    assert (rec.record_len, rec.type, rec.time_flags, rec.seq, rec.mono_ctr, rec.wall_ns,
            rec.boot_ns, rec.source, rec.boot_seq, rec.maxerror_us, rec.esterror_us,
            rec.last_sync_ns, rec.payload) == (
        len(raw), 1, 3, 0x0102, 0x0304, W, -7, source, 0x0506, 0x11223344, 0x55667788,
        -0x0A0B0C0D0E0F1011, payload)


def sample_store(tmp_path, *samples):
    """One segment, one data record per (maxerror_us, esterror_us,
    last_sync_ns), mono 10.., boot_seq 1, synced."""
    recs = [r(10 + i, 1_000 * (i + 1), W + 1_000 * (i + 1), SYNCED, maxerror_us=m,
              esterror_us=e, last_sync_ns=s) for i, (m, e, s) in enumerate(samples)]
    return time_store(tmp_path, recs), recs


def test_sync_sample_fields_each_from_their_own_offset(tmp_path):
    # Three values that differ in every byte: a field read from another
    # field's offset, or the three in another order, prints another number.
    p, recs = sample_store(tmp_path, (0x11223344, 0x55667788, 0x0A0B0C0D0E0F1011))
    code, out, err = run(p)
    assert (code, err) == (0, "")
    assert out == (b'{"segment_id":1,"commit_id":1,"type":"data","source":"temp","seq":10,'
                   b'"mono_ctr":10,"wall_ns":1700000000000001000,"boot_ns":1000,"boot_seq":1,'
                   b'"time_flags":1,"maxerror_us":287454020,"esterror_us":1432778632,'
                   b'"last_sync_ns":723685415333072913,"payload":{}}\n')
    assert out == tline(1, recs[0])
    code, out, _ = run(p, "--format", "csv")
    assert out.splitlines()[1] == (b"1,1,data,\"temp\",10,10,1700000000000001000,1000,1,1,"
                                   b'287454020,1432778632,723685415333072913,"{}"')


# (maxerror_us, esterror_us, last_sync_ns) as stored -> as printed in jsonl.
# The error fields are null only at 0xFFFFFFFF (0 and 0xFFFFFFFE are values),
# last_sync_ns only at 0 (negative values and 0xFFFFFFFF are values).
NULL_CASES = [
    ((0xFFFFFFFF, 0xFFFFFFFE, 0), ("null", "4294967294", "null")),
    ((0xFFFFFFFE, 0xFFFFFFFF, -1), ("4294967294", "null", "-1")),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0), ("null", "null", "null")),
    ((0, 0, 0xFFFFFFFF), ("0", "0", "4294967295")),
    ((1, 0x7FFFFFFF, -W), ("1", "2147483647", "-1700000000000000000")),
    ((0x80000000, 2, -2**63), ("2147483648", "2", "-9223372036854775808")),
    ((3, 4, 2**63 - 1), ("3", "4", "9223372036854775807")),
]


@pytest.mark.parametrize("stored, printed", NULL_CASES)
def test_sync_sample_null_rules_jsonl(tmp_path, stored, printed):
    p, recs = sample_store(tmp_path, stored)
    code, out, err = run(p)
    assert (code, err) == (0, "")
    assert out == (b'{"segment_id":1,"commit_id":1,"type":"data","source":"temp","seq":10,'
                   b'"mono_ctr":10,"wall_ns":1700000000000001000,"boot_ns":1000,"boot_seq":1,'
                   b'"time_flags":1,"maxerror_us":%s,"esterror_us":%s,"last_sync_ns":%s,'
                   b'"payload":{}}\n' % tuple(v.encode() for v in printed))
    # The output is JSON, null and all.
    obj = json.loads(out)
    assert [obj["maxerror_us"], obj["esterror_us"], obj["last_sync_ns"]] == [
        None if v == "null" else int(v) for v in printed]


@pytest.mark.parametrize("stored, printed", NULL_CASES)
def test_sync_sample_null_rules_csv(tmp_path, stored, printed):
    # "A null of the JSON form is an empty field."
    p, _ = sample_store(tmp_path, stored)
    code, out, err = run(p, "--format", "csv")
    assert (code, err) == (0, "")
    fields = [b"" if v == "null" else v.encode() for v in printed]
    assert out == dec.CSV_HEADER + (b"1,1,data,\"temp\",10,10,1700000000000001000,1000,1,1,"
                                    + b",".join(fields) + b',"{}"\n')


def test_sync_sample_nulls_with_wall_corrected(tmp_path):
    # The corrected forms carry the same fields, with the same null rules,
    # after boot_ns; wall_corrected_ns stays right after wall_ns.
    p, recs = sample_store(tmp_path, (0xFFFFFFFF, 0xFFFFFFFE, 0), (0, 0xFFFFFFFF, -5))
    code, out, err = run(p, "--wall", "corrected")
    assert (code, err) == (0, "")
    assert out == (b'{"segment_id":1,"commit_id":1,"type":"data","source":"temp","seq":10,'
                   b'"mono_ctr":10,"wall_ns":1700000000000001000,'
                   b'"wall_corrected_ns":1700000000000001000,"boot_ns":1000,"boot_seq":1,'
                   b'"time_flags":1,"maxerror_us":null,"esterror_us":4294967294,'
                   b'"last_sync_ns":null,"payload":{}}\n'
                   b'{"segment_id":1,"commit_id":1,"type":"data","source":"temp","seq":11,'
                   b'"mono_ctr":11,"wall_ns":1700000000000002000,'
                   b'"wall_corrected_ns":1700000000000002000,"boot_ns":2000,"boot_seq":1,'
                   b'"time_flags":1,"maxerror_us":0,"esterror_us":null,'
                   b'"last_sync_ns":-5,"payload":{}}\n')
    assert out == tline(1, recs[0], W + 1_000) + tline(1, recs[1], W + 2_000)
    code, out, err = run(p, "--format", "csv", "--wall", "corrected")
    assert (code, err) == (0, "")
    assert out == (dec.CSV_HEADER_CORRECTED
                   + b"1,1,data,\"temp\",10,10,1700000000000001000,1700000000000001000,1000,1,1,"
                     b',4294967294,,"{}"\n'
                   + b"1,1,data,\"temp\",11,11,1700000000000002000,1700000000000002000,2000,1,1,"
                     b'0,,-5,"{}"\n')


def short_record(record_len):
    """A record whose record_len field says `record_len` (below 69): the
    60-byte header (source_len 1), then whatever source fits, the CRC and
    the end marker at record_len - 8 and record_len - 4, all consistent."""
    body = bytearray(struct.pack("<IHHQQqqHHIIq", record_len, 1, 0, 2, 11, W, 5_000, 1, 0,
                                 MAXERR, ESTERR, LAST_SYNC))
    body += b"t" * (record_len - 8 - len(body))
    body = bytes(body[:record_len - 8])
    return body + struct.pack("<I", crc(body)) + b"RECE"


def test_record_len_69_is_the_shortest_record(tmp_path):
    # 60 header bytes, a 1-byte source, an empty payload, CRC and end marker.
    rec = record(1, 10, b"", source=b"t")
    assert len(rec) == 69
    s1 = segment(1, 0, [rec, record(2, 11, b"{}")], [10, 11])
    p = (Image().slot_a(meta(2, head_id=1, head_slot=0, tail_slot=0, tail_id=1, head=s1))
         .seg(0, s1).write(tmp_path))
    code, out, err = run(p, "--format", "csv")
    assert (code, err) == (0, "")
    assert out.splitlines()[1:] == [
        b"1,1,data,\"t\",1,10,1700000000000000000,5000," + TIME_CSV + b',"hex:"',
        b"1,1,data,\"temp\",2,11,1700000000000000000,5000," + TIME_CSV + b',"{}"']


@pytest.mark.parametrize("followed, reason", [
    (True, "record_len 68 below 69"),               # more bytes after it
    (False, "68 trailing bytes, shorter than a record"),  # the last 68 bytes
])
def test_record_len_68_is_refused(tmp_path, followed, reason):
    # A 68-byte record (CRC and end marker where its record_len puts them)
    # makes segment 2 invalid however it sits: the minimum is 69.
    recs = [short_record(68)] + ([record(3, 12, b"{}")] if followed else [])
    assert len(recs[0]) == 68
    assert_middle_segment_refused(tmp_path, recs, [11, 12][:len(recs)], (4, 13), reason)


# ---------------------------------------------------------------------------
# Format version 5: export prints only hash-checked, chained segments
# (section 5 step 4), printable payloads (section 7), safe CSV
# ---------------------------------------------------------------------------

def three_segment_image(s2, s3=None):
    """Segments 1, s2 and s3 (default: chained onto s2) in slots 0..2, head 3
    in slot A."""
    s1 = chain(1)[0]
    s3 = s3 if s3 is not None else segment(3, 2, [record(3, 12, b"{}")], [12], prev=s2)
    return (Image().slot_a(meta(2, head_id=3, head_slot=2, tail_slot=0, tail_id=1, head=s3))
            .seg(0, s1).seg(1, s2).seg(2, s3))


def test_export_skips_a_segment_whose_hash_is_not_its_seals(tmp_path):
    # Segment 2 is valid (3.4 does not check the hash) but its seal claims
    # another segment_hash: damaged, reported at the seal's segment_hash, and
    # segment 3 (chained onto 2's real hash) is printed: the segment before
    # it was not printed, so its prev_hash is not checked.
    s1 = chain(1)[0]
    s2 = segment(2, 1, [record(2, 11, b'{"x":1}')], [11], prev=s1, seal_hash=b"\x5a" * 32)
    img = three_segment_image(s2)
    code, out, err = run(img.write(tmp_path))
    assert code == 3
    assert out == line(1, 1, 10, "{}") + line(3, 3, 12, "{}")
    marker = 8192 + SEG + 128 + len(record(2, 11, b'{"x":1}'))
    assert f"segment 2 in slot 1 at offset {marker + 40 + 152}:" in err
    assert "segment_hash" in err and err.count("\n") == 1


def test_export_skips_a_segment_that_does_not_chain_onto_a_printed_one(tmp_path):
    s1 = chain(1)[0]
    s2 = segment(2, 1, [record(2, 11, b"{}")], [11], prev=s1, prev_hash=b"\x01" * 32)
    code, out, err = run(three_segment_image(s2).write(tmp_path))
    assert code == 3
    # Segment 3 chains onto 2, which was not printed: no check, printed.
    assert out == line(1, 1, 10, "{}") + line(3, 3, 12, "{}")
    assert f"segment 2 in slot 1 at offset {8192 + SEG + 80}: prev_hash" in err
    # A segment 3 that does not chain onto a printed segment 2 is skipped.
    s2 = segment(2, 1, [record(2, 11, b"{}")], [11], prev=s1)
    s3 = segment(3, 2, [record(3, 12, b"{}")], [12], prev=s2, prev_hash=b"\x02" * 32)
    code, out, err = run(three_segment_image(s2, s3).write(tmp_path))
    assert code == 3 and out == line(1, 1, 10, "{}") + line(2, 2, 11, "{}")
    assert "segment 3 in slot 2" in err and "prev_hash" in err


def test_export_segment_1_needs_a_zero_prev_hash(tmp_path):
    s1 = segment(1, 0, [record(1, 10, b"{}")], [10], prev_hash=b"\x03" * 32)
    s2 = segment(2, 1, [record(2, 11, b"{}")], [11], prev=s1)
    p = (Image().slot_a(meta(2, head_id=2, head_slot=1, tail_slot=0, tail_id=1, head=s2))
         .seg(0, s1).seg(1, s2).write(tmp_path))
    code, out, err = run(p)
    assert (code, out) == (3, line(2, 2, 11, "{}"))
    assert "segment 1 in slot 0" in err and "non-zero prev_hash" in err


def test_export_tail_above_1_is_not_chain_checked(tmp_path):
    # The ring wrapped: the tail is segment 3, whose predecessor is not
    # retained; its prev_hash is whatever it was, and it is printed.
    segs = {3: segment(3, 2, [record(3, 12, b"{}")], [12], prev_hash=b"\x09" * 32,
                       prev_crc=7)}
    for i in (4, 5, 6):
        segs[i] = segment(i, (i - 1) % 4, [record(i, 9 + i, b"{}")], [9 + i], prev=segs[i - 1])
    img = Image().slot_a(meta(2, head_id=6, head_slot=1, tail_slot=2, tail_id=3,
                              head=segs[6]))
    for i, data in segs.items():
        img.seg((i - 1) % 4, data)
    code, out, err = run(img.write(tmp_path))
    assert (code, err) == (0, "")
    assert out == b"".join(line(i, i, 9 + i, "{}") for i in (3, 4, 5, 6))


def test_wall_corrected_skips_a_segment_whose_hash_fails(tmp_path):
    # A segment export does not print does not take part in --wall
    # corrected either: segment 2 (the last good record, offset W + 5)
    # claims another hash.
    recs = [r(10, 1_000, W + 1_000, SYNCED), r(11, 2_000, W + 5 + 2_000, SYNCED),
            r(12, 3_000, W + HOUR + 3_000, 0)]
    s1 = segment(1, 0, [record(**recs[0])], [10])
    s2 = segment(2, 1, [record(**recs[1])], [11], prev=s1, seal_hash=b"\x77" * 32)
    s3 = segment(3, 2, [record(**recs[2])], [12], prev=s2)
    img = Image().slot_a(meta(2, head_id=3, head_slot=2, tail_slot=0, tail_id=1, head=s3))
    code, out, err = run(img.seg(0, s1).seg(1, s2).seg(2, s3).write(tmp_path),
                         "--wall", "corrected")
    assert code == 3 and "segment 2 in slot 1" in err
    assert out == tline(1, recs[0], W + 1_000) + tline(3, recs[2], W + 3_000)


NOT_PRINTABLE = [
    b'{"t":"a\nb"}',                       # a newline would split the JSON line
    b'{"t":1}\n',
    b'{"t":"\r"}',
    b'{"t":"\x1b[2J"}',                    # a terminal escape
    b'{"t":"\x7f"}',
    b'{"t":"\xc2\x85"}',                   # C1 NEL
    b'{"t":"\xc2\x9b2J"}',                 # C1 CSI
    b'{"t":"\xff"}',                       # not UTF-8
    b'{"t":"\xed\xa0\x80"}',               # a UTF-8 encoded surrogate
    b'{"t":NaN}',
    b'{"t":-Infinity}',
    b'{"t":01}',
    b'{"t":1,}',
    b' {"t":1}',                           # something before the object
    b'{"t":1} ',
    b'{"t":1}{"t":2}',
    b'["t"]',                              # not an object
    b'"t"',
    b'42',
    b'',
    b'{"t":' * 65 + b'1' + b'}' * 65,      # a value inside 65 objects
    b'{"t":' * 64 + b'1' + b'}' * 64,      # a value inside 64 objects
    b'{"t":' * 64 + b'{}' + b'}' * 64,     # an empty object inside 64
    b'{"t":' + b'[' * 63 + b'1' + b']' * 63 + b'}',   # 1 inside 64 containers
    b'{"t":' + b'[' * 63 + b'[]' + b']' * 63 + b'}',  # [] inside 64 containers
    b'{"t":' * 63 + b'{"u":1,"v":{}}' + b'}' * 63,    # 1 inside 64 objects
    b'\t{"t":1}',                          # not even a space (nor a tab) around it
    b'{"t":1}\t',
    b'\xef\xbb\xbf{"t":1}',                 # nor a byte order mark
    b'{"t":' + b'[' * 1100 + b']' * 1100 + b'}',
    b'{"":' * 600 + b'{}' + b'}' * 600,
    b'=HYPERLINK("http://x")',
    b'-1+2',
    b'@SUM(A1)',
    b'+1',
]
PRINTABLE = [
    b'{}',
    b'{"t":"a\\nb","u":"\\u001b"}',       # escaped controls are fine
    b'{"t":"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"}',
    b'{"a" : [1, -2.5e+3, true, false, null, {"b": {}}], "c": "\\"="}',
    # "every value inside at most 63 objects or arrays, the outer object
    # counting as one": a scalar inside 63 objects (or the outer one and 62
    # arrays) ...
    b'{"t":' * 63 + b'1' + b'}' * 63,
    b'{"t":' + b'[' * 62 + b'1,"x",null' + b']' * 62 + b'}',
    # ... and an empty object or array inside 63 (a value with no value in it).
    b'{"t":' * 63 + b'{}' + b'}' * 63,
    b'{"t":' * 63 + b'[ ]' + b'}' * 63,
    b'{"a":1,"a":{"b":2,"b":3}}',          # duplicate keys are accepted
    b'{"t":"\\ud800","u":"\\udfff\\ud800x","\\udc00":1}',  # lone surrogate escapes
    b'{"t" :1 , "u":[ 1 ,2 ]}',            # spaces inside the object are fine
]


@pytest.mark.parametrize("payload", NOT_PRINTABLE, ids=range(len(NOT_PRINTABLE)))
def test_payload_that_is_not_printable_is_printed_in_hex(tmp_path, payload):
    s1 = segment(1, 0, [record(1, 10, payload)], [10])
    p = (Image().slot_a(meta(2, head_id=1, head_slot=0, tail_slot=0, tail_id=1, head=s1))
         .seg(0, s1).write(tmp_path))
    code, out, err = run(p)
    assert (code, err) == (0, "")
    assert out == (b'{"segment_id":1,"commit_id":1,"type":"data","source":"temp","seq":1,'
                   b'"mono_ctr":10,"wall_ns":1700000000000000000,"boot_ns":5000,'
                   + TIME_JSON.encode() + b',"payload":null,"payload_hex":"'
                   + payload.hex().encode() + b'"}\n')
    assert out.count(b"\n") == 1 and json.loads(out)["payload_hex"] == payload.hex()
    code, out, err = run(p, "--format", "csv")
    assert (code, err) == (0, "")
    assert out == dec.CSV_HEADER + (b'1,1,data,"temp",1,10,1700000000000000000,5000,'
                                    + TIME_CSV + b',"hex:' + payload.hex().encode() + b'"\n')
    code, out, _ = run(p, "--wall", "corrected")
    assert out.endswith(b',"payload":null,"payload_hex":"' + payload.hex().encode() + b'"}\n')


@pytest.mark.parametrize("payload", PRINTABLE, ids=range(len(PRINTABLE)))
def test_printable_payload_is_printed_as_stored(tmp_path, payload):
    assert dec.is_printable_payload(payload)
    s1 = segment(1, 0, [record(1, 10, payload)], [10])
    p = (Image().slot_a(meta(2, head_id=1, head_slot=0, tail_slot=0, tail_id=1, head=s1))
         .seg(0, s1).write(tmp_path))
    code, out, _ = run(p)
    assert code == 0 and out.endswith(b',"payload":' + payload + b"}\n")
    json.loads(out)
    code, out, _ = run(p, "--format", "csv")
    assert out.splitlines()[1].endswith(b',"' + payload.replace(b'"', b'""') + b'"')


def test_printable_payload_rules():
    for payload in NOT_PRINTABLE:
        assert not dec.is_printable_payload(payload), payload
    for payload in PRINTABLE:
        assert dec.is_printable_payload(payload), payload


def test_csv_quoted_cells_never_start_a_formula():
    # Section 7: a quoted cell whose first character is = + - @ tab or CR
    # gets a ' before it, inside the quotes; quotes are doubled first.
    assert dec.csv_quoted(b"temp") == b'"temp"'
    assert dec.csv_quoted(b'{"a":1}') == b'"{""a"":1}"'
    for first in (b"=", b"+", b"-", b"@", b"\t", b"\r"):
        assert dec.csv_quoted(first + b'1"') == b"\"'" + first + b'1"""'
    assert dec.csv_quoted(b"hex:3d") == b'"hex:3d"'
    assert dec.csv_quoted(b"'=1") == b"\"'=1\""
    assert dec.csv_quoted(b"") == b'""'


def test_csv_formula_payloads_and_sources_never_reach_a_cell(tmp_path):
    # A payload that is a formula is not printable (hex:...), and a source
    # that starts with a formula sign is not a valid source name (the
    # segment is invalid and skipped): what a card can be made to hold
    # never becomes a spreadsheet formula.
    payload = b'=HYPERLINK("http://example.invalid","x")'
    s1 = segment(1, 0, [record(1, 10, payload, source=b"temp")], [10])
    p = (Image().slot_a(meta(2, head_id=1, head_slot=0, tail_slot=0, tail_id=1, head=s1))
         .seg(0, s1).write(tmp_path))
    code, out, _ = run(p, "--format", "csv")
    assert code == 0
    row = out.splitlines()[1]
    assert row.endswith(b',"hex:' + payload.hex().encode() + b'"')
    assert b',"temp",' in row and b'"=' not in row
    for cell in row.split(b","):
        assert cell[:1] not in (b"=", b"+", b"-", b"@") and cell[1:2] not in (b"=", b"@")


@pytest.mark.parametrize("source", [b"-temp", b"+temp", b"=temp", b"@temp", b".temp",
                                    b"_temp", b"te mp", b"te\"mp"])
def test_record_with_invalid_source_name_makes_segment_invalid(tmp_path, source):
    # Section 3.2: a valid source name starts with a letter or a digit.
    assert_middle_segment_refused(tmp_path, [record(2, 11, b"{}", source=source)], [11],
                                  (3, 12), "valid source name")


def test_source_name_starting_with_a_digit_is_valid(tmp_path):
    s1 = segment(1, 0, [record(1, 10, b"{}", source=b"9lives")], [10])
    p = (Image().slot_a(meta(2, head_id=1, head_slot=0, tail_slot=0, tail_id=1, head=s1))
         .seg(0, s1).write(tmp_path))
    assert run(p) == (0, line(1, 1, 10, "{}", source="9lives"), "")


def test_format_5_evidence_payloads_are_exported_as_stored(tmp_path):
    # Section 4: the incomplete record counts records_readable (none are
    # kept), the recovery record has no records_salvaged but a
    # refused_segment_id, and a gap may be uplink_acked.  The decoder prints
    # them as any printable payload.
    incomplete = (b'{"reason":"torn_segment","segment_id":3,"slot":2,"records_readable":2,'
                  b'"bytes_quarantined":300}')
    # (refused_segment_id: a segment a signing writer did not adopt.)
    recovery = (b'{"unclean_shutdown":true,"metadata_slot":"A","generation":4,'
                b'"rejected_slots":[],"segments_adopted":0,"torn_segment_id":3,'
                b'"refused_segment_id":null,"tail_advanced":false}')
    gap = (b'{"reason":"uplink_acked","lost_segment_id":1,"lost_records":0,"first_mono":1,'
           b'"last_mono":1}')
    recs = [record(1, 10, incomplete, source=b"edgelog", rtype=3),
            record(2, 11, recovery, source=b"edgelog", rtype=5),
            record(3, 12, gap, source=b"edgelog", rtype=2)]
    s1 = segment(1, 0, recs, [10, 11, 12])
    p = (Image().slot_a(meta(2, head_id=1, head_slot=0, tail_slot=0, tail_id=1, head=s1))
         .seg(0, s1).write(tmp_path))
    assert run(p) == (0, line(1, 1, 10, incomplete.decode(), "edgelog", '"incomplete"')
                      + line(1, 2, 11, recovery.decode(), "edgelog", '"recovery"')
                      + line(1, 3, 12, gap.decode(), "edgelog", '"gap"'), "")


def test_inspect_labels_what_it_prints_unchecked(tmp_path):
    # Section 2: "one that a reader prints unchecked is labelled so".  Fields
    # no seal carries are always unchecked; a sealed one is unchecked when it
    # differs from the head's seal (here mono_hwm, 11 in the slot, 12 in S2's
    # seal; the slot's tables are not the seal's zero tables_hash either).
    info = json.loads(run(two_segment_image().write(tmp_path), "--inspect")[1])
    unchecked = info["unchecked"]
    assert unchecked == sorted(unchecked)
    for name in ("generation", "clean_flag", "verify_stat", "fw_ver_hash", "boot_id",
                 "format_wall_ns", "mono_hwm", "bad_blocks", "sources"):
        assert name in unchecked
    for name in ("head_segment_id", "commit_id", "hash_head", "device_id", "key_id",
                 "sig_alg", "tail_segment_id", "wrap_count"):
        assert name not in unchecked
    # Without a valid head every printed number is unchecked.
    p = two_segment_image().slot_a(bytes(4096)).seg(1, bytes(SEG)).write(tmp_path)
    info = json.loads(run(p, "--inspect")[1])
    assert {"head_segment_id", "records_total", "tail_segment_id"} <= set(info["unchecked"])


def test_hostile_headers_do_not_crash(tmp_path):
    # Ids near 2^64, a payload_len near 2^32, a record_count of 2^32 - 1: the
    # segment is simply not valid; export reports it and goes on.
    for edit in ((32, "<Q", 2**64 - 1), (40, "<Q", 2**64 - 1), (60, "<I", 2**32 - 1),
                 (56, "<I", 2**32 - 1), (48, "<I", 2**32 - 1), (64, "<Q", 2**64 - 1)):
        good = segment(2, 1, [record(2, 11, b"{}")], [11], prev=chain(1)[0])
        s3 = segment(3, 2, [record(3, 12, b"{}")], [12], prev=good)
        s2 = bytearray(good)
        struct.pack_into(edit[1], s2, edit[0], edit[2])
        struct.pack_into("<I", s2, 124, crc(bytes(s2[:124])))
        code, out, err = run(three_segment_image(bytes(s2), s3).write(tmp_path))
        assert code == 3 and "segment 2 in slot 1" in err and "Traceback" not in err
        assert out == line(1, 1, 10, "{}") + line(3, 3, 12, "{}")


def test_deeply_nested_payload_does_not_crash(tmp_path):
    payload = b'{"t":' + b"[" * 1100 + b"]" * 1100 + b"}"
    s1 = segment(1, 0, [record(1, 10, payload)], [10])
    p = (Image().slot_a(meta(2, head_id=1, head_slot=0, tail_slot=0, tail_id=1, head=s1))
         .seg(0, s1).write(tmp_path))
    proc = subprocess.run([str(SCRIPT), str(p), "--format", "csv"], capture_output=True)
    assert proc.returncode == 0 and proc.stderr == b""
    assert proc.stdout.splitlines()[1].endswith(b'"hex:' + payload.hex().encode() + b'"')


# ---------------------------------------------------------------------------
# Second review of format 5
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("clean_flag, ok", [(0, True), (1, True), (2, False), (3, False),
                                            (0x100, False), (2**32 - 1, False)])
def test_clean_flag_other_than_0_or_1_makes_the_slot_invalid(tmp_path, clean_flag, ok):
    # Section 2: clean_flag is 0 or 1; any other value makes the slot
    # invalid (slot A, the newest, is then passed over for slot B).
    buf = bytearray(_good_a())
    struct.pack_into("<I", buf, 116, clean_flag)
    struct.pack_into("<I", buf, 4092, crc(bytes(buf[:4092])))
    if ok:
        assert dec.parse_metadata(bytes(buf), "A", 0, STORE).clean_flag == clean_flag
    else:
        with pytest.raises(dec.DecodeError, match="clean_flag") as exc:
            dec.parse_metadata(bytes(buf), "A", 0, STORE)
        assert exc.value.offset == 116
    p = two_segment_image().slot_a(bytes(buf)).write(tmp_path)
    code, out, _ = run(p, "--inspect")
    assert code == 0 and json.loads(out)["chosen_slot"] == ("A" if ok else "B")


@pytest.mark.parametrize("commit_id, ok", [(2, True), (0, False), (1, False), (3, False),
                                           (2**62 - 1, False)])
def test_commit_id_other_than_head_segment_id_makes_the_slot_invalid(tmp_path, commit_id,
                                                                     ok):
    # Section 2: commit_id equals head_segment_id (one segment per commit).
    buf = _good_a(commit_id=commit_id)
    if ok:
        dec.parse_metadata(buf, "A", 0, STORE)
    else:
        with pytest.raises(dec.DecodeError, match="commit_id") as exc:
            dec.parse_metadata(buf, "A", 0, STORE)
        assert exc.value.offset == 80
    p = two_segment_image().slot_a(buf).write(tmp_path)
    code, out, _ = run(p, "--inspect")
    assert code == 0 and json.loads(out)["chosen_slot"] == ("A" if ok else "B")


def test_empty_store_commit_id_must_be_0():
    # head_segment_id 0 (nothing committed): commit_id 0 too.
    dec.parse_metadata(meta(0, head_id=0, head_slot=0, tail_slot=0, tail_id=1), "A", 0, STORE)
    with pytest.raises(dec.DecodeError, match="commit_id"):
        dec.parse_metadata(meta(0, head_id=0, head_slot=0, tail_slot=0, tail_id=1,
                                commit_id=1), "A", 0, STORE)


@pytest.mark.parametrize("value, ok", [(BELOW, True), (2**62, False), (2**64 - 1, False)])
def test_metadata_rollback_ctr_below_2_62(tmp_path, value, ok):
    # Section 2: rollback_ctr is below 2^62 as well.
    buf = bytearray(_good_a())
    struct.pack_into("<Q", buf, 2832, value)
    struct.pack_into("<I", buf, 4092, crc(bytes(buf[:4092])))
    if ok:
        assert dec.parse_metadata(bytes(buf), "A", 0, STORE).rollback_ctr == value
    else:
        with pytest.raises(dec.DecodeError, match="rollback_ctr .*2\\^62") as exc:
            dec.parse_metadata(bytes(buf), "A", 0, STORE)
        assert exc.value.offset == 2832
    p = two_segment_image().slot_a(bytes(buf)).write(tmp_path)
    assert json.loads(run(p, "--inspect")[1])["chosen_slot"] == ("A" if ok else "B")


@pytest.mark.parametrize("commit_id", [0, 1, 3, 2**64 - 1])
def test_segment_commit_id_other_than_segment_id_is_not_valid(tmp_path, commit_id):
    # Section 3.4: commit_id equals segment_id.  Header, marker and
    # statement all say the same other commit_id: still not valid.
    assert_middle_segment_refused(tmp_path, [record(2, 11, b"{}")], [11], (3, 12),
                                  f"commit_id {commit_id} is not segment_id 2",
                                  commit_id=commit_id)


def test_segment_commit_id_other_than_segment_id_is_not_adopted(tmp_path):
    # The forward scan adopts only a valid segment (section 5 step 3).
    good = segment(3, 2, [record(4, 13, b'{"t":4}')], [13], prev=S2)
    bad = segment(3, 2, [record(4, 13, b'{"t":4}')], [13], prev=S2, commit_id=4)
    p = two_segment_image().seg(2, good).write(tmp_path)
    assert json.loads(run(p, "--inspect")[1])["adopted_segments"] == 1
    p = two_segment_image().seg(2, bad).write(tmp_path)
    assert run(p) == (0, TWO_SEGMENT_LINES, "")
    assert json.loads(run(p, "--inspect")[1])["adopted_segments"] == 0


@pytest.mark.parametrize("case", ["commit_id", "record_count", "first_mono", "last_mono"])
def test_marker_level_failures_name_the_commit_marker(case):
    # Section 9 item 3: commit_id, or the header's record_count, first_mono
    # or last_mono disagreeing with the records, fail at the commit marker's
    # start (the records themselves parse).
    recs = [record(1, 10, b"{}"), record(2, 11, b"{}")]
    kw = {"commit_id": dict(commit_id=9)}.get(case, {})
    data = bytearray(segment(1, 0, recs, [10, 11], **kw))
    if case == "record_count":
        struct.pack_into("<I", data, 56, 3)
    elif case == "first_mono":
        struct.pack_into("<Q", data, 64, 9)
    elif case == "last_mono":
        struct.pack_into("<Q", data, 72, 12)
    if case != "commit_id":  # refit header_crc, body_crc (and marker fields, CRC)
        payload_len = struct.unpack_from("<I", data, 60)[0]
        struct.pack_into("<I", data, 124, crc(bytes(data[:124])))
        mbase = 128 + payload_len
        struct.pack_into("<I", data, mbase + 24, struct.unpack_from("<I", data, 56)[0])
        struct.pack_into("<I", data, mbase + 32, crc(bytes(data[:mbase])))
        struct.pack_into("<I", data, mbase + 428, crc(bytes(data[mbase:mbase + 428])))
    img = (Image().slot_a(meta(0, head_id=0, head_slot=0, tail_slot=0, tail_id=1))
           .seg(0, bytes(data)))
    m = dec.parse_metadata(bytes(img.buf[:4096]), "A", 0, STORE)
    store = dec.Store(io.BytesIO(bytes(img.buf)))
    with pytest.raises(dec.DecodeError) as exc:
        dec.read_segment(store, m, 0)
    payload_len = struct.unpack_from("<I", data, 60)[0]
    assert exc.value.range_start == 8192 + 128 + payload_len


@pytest.mark.parametrize("case, at", [
    ("magic", 0), ("format_version", 0), ("header_size", 0), ("header_crc", 0),
    ("payload_len", 60), ("payload_len_max", 60),
    ("record_len", "rec2"), ("record_crc", "rec2"), ("record_end", "rec2"),
    ("record_source", "rec2"), ("record_seq", "rec2"), ("record_mono", "rec2"),
    ("record_mono_order", "rec2"), ("body_crc", "marker"), ("marker_crc", "marker"),
])
def test_read_segment_range_start_follows_section_9(case, at):
    # The crc_mismatch offset rule of section 9 item 3, as read_segment's
    # range_start: the slot's start for the header, slot offset 60 for a
    # payload_len that overruns the segment, the first failing record, else
    # the commit marker's start.
    r1, r2, r3 = record(1, 10, b"{}"), record(2, 11, b"{}"), record(3, 12, b"{}")
    data = bytearray(segment(1, 0, [r1, r2, r3], [10, 11, 12]))
    rec2 = 128 + len(r1)
    payload_len = struct.unpack_from("<I", data, 60)[0]
    mbase = 128 + payload_len

    def refit_record(pos):
        length = struct.unpack_from("<I", data, pos)[0]
        struct.pack_into("<I", data, pos + length - 8, crc(bytes(data[pos:pos + length - 8])))

    edits = {
        "magic": lambda: data.__setitem__(slice(0, 1), b"X"),
        "format_version": lambda: struct.pack_into("<H", data, 8, 4),
        "header_size": lambda: struct.pack_into("<H", data, 10, 129),
        "header_crc": lambda: data.__setitem__(124, data[124] ^ 1),
        "payload_len": lambda: struct.pack_into("<I", data, 60, SEG - 128 - 432 + 1),
        "payload_len_max": lambda: struct.pack_into("<I", data, 60, 2**32 - 1),
        "record_len": lambda: struct.pack_into("<I", data, rec2, 68),
        "record_crc": lambda: data.__setitem__(rec2 + 60 + 4, ord("[")),
        "record_end": lambda: data.__setitem__(rec2 + len(r2) - 1, ord("F")),
        "record_source": lambda: (data.__setitem__(rec2 + 60, ord("-")), refit_record(rec2)),
        "record_seq": lambda: (struct.pack_into("<Q", data, rec2 + 8, 2**62),
                               refit_record(rec2)),
        "record_mono": lambda: (struct.pack_into("<Q", data, rec2 + 16, 2**62),
                                refit_record(rec2)),
        "record_mono_order": lambda: (struct.pack_into("<Q", data, rec2 + 16, 10),
                                      refit_record(rec2)),
        "body_crc": lambda: (data.__setitem__(mbase + 32, data[mbase + 32] ^ 1),
                             struct.pack_into("<I", data, mbase + 428,
                                              crc(bytes(data[mbase:mbase + 428])))),
        "marker_crc": lambda: data.__setitem__(mbase + 428, data[mbase + 428] ^ 1),
    }
    edits[case]()
    if case not in ("magic", "header_crc"):
        struct.pack_into("<I", data, 124, crc(bytes(data[:124])))
    img = (Image().slot_a(meta(0, head_id=0, head_slot=0, tail_slot=0, tail_id=1))
           .seg(0, bytes(data)))
    m = dec.parse_metadata(bytes(img.buf[:4096]), "A", 0, STORE)
    store = dec.Store(io.BytesIO(bytes(img.buf)))
    with pytest.raises(dec.DecodeError) as exc:
        dec.read_segment(store, m, 0)
    expected = {"rec2": rec2, "marker": mbase}.get(at, at)
    assert exc.value.range_start == 8192 + expected


BIDI_AND_SEPARATORS = ["\u2028", "\u2029", "\u061c", "\u200e", "\u200f", "\u202a", "\u202b",
                       "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"]


@pytest.mark.parametrize("char", BIDI_AND_SEPARATORS)
@pytest.mark.parametrize("where", ["value", "key"])
def test_raw_separator_or_bidi_control_is_not_printable(tmp_path, char, where):
    # Section 7: no raw U+2028, U+2029 and no bidirectional control (U+061C,
    # U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069): such a payload is
    # printed in hex.
    text = '{"a":"x%sy"}' % char if where == "value" else '{"%s":1}' % char
    payload = text.encode("utf-8")
    assert not dec.is_printable_payload(payload)
    s1 = segment(1, 0, [record(1, 10, payload)], [10])
    img = Image().slot_a(meta(2, head_id=1, head_slot=0, tail_slot=0, tail_id=1, head=s1))
    p = img.seg(0, s1).write(tmp_path)
    code, out, err = run(p)
    assert (code, err) == (0, "")
    assert out.endswith(b'"payload":null,"payload_hex":"' + payload.hex().encode() + b'"}\n')
    code, out, _ = run(p, "--format", "csv")
    assert out.splitlines()[1].endswith(b',"hex:' + payload.hex().encode() + b'"')


@pytest.mark.parametrize("char", BIDI_AND_SEPARATORS)
def test_escaped_separator_or_bidi_control_is_printable(tmp_path, char):
    # "a \u escape of one is plain text": printed as stored.
    payload = b'{"a":"x\\u%04xy","\\u%04X":2}' % (ord(char), ord(char))
    assert dec.is_printable_payload(payload)
    s1 = segment(1, 0, [record(1, 10, payload)], [10])
    img = Image().slot_a(meta(2, head_id=1, head_slot=0, tail_slot=0, tail_id=1, head=s1))
    assert run(img.seg(0, s1).write(tmp_path)) == (0, line(1, 1, 10, payload.decode()), "")


@pytest.mark.parametrize("char", ["\u061b", "\u061d", "\u200b", "\u200d", "\u2010", "\u2027",
                                  "\u202f", "\u2065", "\u206a", "\u00e9", "\u05d0"])
def test_neighbours_of_the_excluded_characters_stay_printable(char):
    assert dec.is_printable_payload(('{"a":"%s"}' % char).encode("utf-8"))


@pytest.mark.parametrize("counts", [b'"lost_records":null,"first_mono":null,"last_mono":null',
                                    b'"lost_records":3,"first_mono":20,"last_mono":22'])
def test_gap_record_with_null_counts_is_exported_as_stored(tmp_path, counts):
    # Section 4: a gap's lost_records, first_mono and last_mono are null
    # when the writer cannot show the lost segment is its own: the payload
    # is printed as stored, never interpreted.
    gap = b'{"reason":"ring_overwrite","lost_segment_id":1,' + counts + b'}'
    s1 = segment(1, 0, [record(1, 10, gap, source=b"edgelog", rtype=2)], [10], lost=0)
    p = (Image().slot_a(meta(2, head_id=1, head_slot=0, tail_slot=0, tail_id=1, head=s1))
         .seg(0, s1).write(tmp_path))
    assert run(p) == (0, line(1, 1, 10, gap.decode(), "edgelog", '"gap"'), "")


def test_statement_carries_tail_slot_and_ring_slots():
    # Section 3.5: statement offsets 312 (tail_slot) and 316 (ring_slots).
    st = statement(1, 1, 10, 10, 1, bytes(32), bytes(32),
                   state={"tail_slot": 0x01020304, "ring_slots": 0x0A0B0C0D})
    assert st[312:320] == bytes.fromhex("040302010d0c0b0a")
    seal = dec.parse_seal(st + bytes(64))
    assert (seal.tail_slot, seal.ring_slots) == (0x01020304, 0x0A0B0C0D)


def test_inspect_labels_tail_slot_and_ring_slots_unchecked_when_the_seal_differs(tmp_path):
    # tail_slot and ring_slots are sealed now: unchecked only when they
    # differ from the head's seal (or there is no valid head).
    info = json.loads(run(two_segment_image().write(tmp_path), "--inspect")[1])
    assert "tail_slot" not in info["unchecked"] and "ring_slots" not in info["unchecked"]
    s2 = segment(2, 1, [record(3, 12, b'{"t":3}')], [12], prev=S1,
                 state={"tail_slot": 1, "ring_slots": 5})
    p = (two_segment_image()
         .slot_b(meta(1, head_id=2, head_slot=1, tail_slot=0, tail_id=1, head=s2))
         .seg(1, s2).write(tmp_path))
    unchecked = json.loads(run(p, "--inspect")[1])["unchecked"]
    assert "tail_slot" in unchecked and "ring_slots" in unchecked
    p = two_segment_image().slot_a(bytes(4096)).seg(1, bytes(SEG)).write(tmp_path)
    unchecked = json.loads(run(p, "--inspect")[1])["unchecked"]
    assert "tail_slot" in unchecked and "ring_slots" in unchecked


# -- third review of format 5: the ring fills consecutive good slots --

@pytest.mark.parametrize("kw, ok", [
    (dict(head_id=2, tail_id=1, tail_slot=0, head_slot=1), True),
    (dict(head_id=2, tail_id=1, tail_slot=0, head_slot=2), False),   # a slot skipped
    (dict(head_id=2, tail_id=1, tail_slot=1, head_slot=1), False),   # two in one slot
    (dict(head_id=2, tail_id=1, tail_slot=1, head_slot=0), False),   # backward
    (dict(head_id=2, tail_id=1, tail_slot=3, head_slot=0), True),    # wraps
    (dict(head_id=1, tail_id=1, tail_slot=2, head_slot=2), True),
    (dict(head_id=1, tail_id=1, tail_slot=2, head_slot=3), False),
    (dict(head_id=4, tail_id=1, tail_slot=2, head_slot=1), True),    # a full ring
    (dict(head_id=4, tail_id=1, tail_slot=2, head_slot=2), False),
    (dict(head_id=BELOW, tail_id=BELOW - 1, tail_slot=3, head_slot=0, commit_id=BELOW), True),
    # next() skips bad_block_tbl slots ...
    (dict(head_id=2, tail_id=1, tail_slot=0, head_slot=2, bad_blocks=[(1, 1, 0)]), True),
    (dict(head_id=2, tail_id=1, tail_slot=2, head_slot=1, bad_blocks=[(3, 1, 0), (0, 2, 0)]),
     True),
    (dict(head_id=2, tail_id=1, tail_slot=0, head_slot=3, bad_blocks=[(1, 1, 0)]), False),
    # ... and neither end is one.
    (dict(head_id=2, tail_id=1, tail_slot=0, head_slot=1, bad_blocks=[(1, 1, 0)]), False),
    (dict(head_id=2, tail_id=1, tail_slot=1, head_slot=2, bad_blocks=[(1, 1, 0)]), False),
    (dict(head_id=1, tail_id=1, tail_slot=3, head_slot=3, bad_blocks=[(3, 3, 1)]), False),
    # An empty ring has no segments to place: its tail_slot is not checked.
    (dict(head_id=0, tail_id=1, tail_slot=1, head_slot=0, bad_blocks=[(1, 1, 0)]), True),
    (dict(head_id=0, tail_id=1, tail_slot=2, head_slot=3), True),
])
def test_ring_fills_consecutive_good_slots(kw, ok):
    # Section 2: a non-empty ring's segments fill consecutive good slots:
    # neither tail_slot nor head_slot is in bad_block_tbl, and next()
    # applied head_segment_id - tail_segment_id times to tail_slot gives
    # head_slot; else the slot is not valid.
    buf = meta(2, **kw)
    if ok:
        assert dec.parse_metadata(buf, "A", 0, STORE).head_slot == kw["head_slot"]
    else:
        with pytest.raises(dec.DecodeError, match="bad_block_tbl|not in head_slot"):
            dec.parse_metadata(buf, "A", 0, STORE)


def test_ring_range_that_does_not_line_up_is_not_a_store(tmp_path):
    # The only slot names tail slot 3 and head slot 1 for segments 1..2: it
    # is not valid (no longer a valid slot with an "inconsistent ring range"
    # exported as far as it goes): exit 2, nothing printed.
    p = (Image().slot_a(meta(2, head_id=2, head_slot=1, tail_slot=3, tail_id=1, head=S2))
         .seg(0, S1).seg(1, S2).write(tmp_path))
    code, out, err = run(p)
    assert (code, out) == (2, b"")
    assert "not an edgelog store" in err and "not in head_slot 1" in err
    assert "inconsistent" not in err
    # Beside a valid older slot, the slot is passed over.
    p = (two_segment_image()
         .slot_a(_good_a(tail_slot=3))
         .write(tmp_path))
    assert run(p) == (0, TWO_SEGMENT_LINES, "")


def test_adoption_keeps_the_committed_range_in_consecutive_good_slots(tmp_path):
    # Adoption round the ring end past a bad slot, the tail moving on as
    # the ring is full: the committed range lines up, every segment printed.
    s1 = segment(1, 0, [record(1, 10, b"{}")], [10])
    s2 = segment(2, 2, [record(2, 11, b"{}")], [11], prev=s1)
    s3 = segment(3, 3, [record(3, 12, b"{}")], [12], prev=s2)
    s4 = segment(4, 0, [record(4, 13, b"{}")], [13], prev=s3)
    # The slot names segments 1..2 in slots 0 and 2 (slot 1 bad); 3 and 4
    # were committed without their metadata writes, 4 over the tail 1.
    p = (Image().slot_a(meta(2, head_id=2, head_slot=2, tail_slot=0, tail_id=1, head=s2,
                             bad_blocks=[(1, 1, 0)]))
         .seg(0, s4).seg(2, s2).seg(3, s3).write(tmp_path))
    with open(p, "rb") as fh:
        result = dec.scan(dec.Store(fh))
    assert result.adopted == 2 and result.committed == [(2, 2), (3, 3), (0, 4)]
    code, out, _ = run(p)
    assert code == 0 and out.count(b"\n") == 3


# ===========================================================================
# Format 6, in progress: the record block (FORMAT.md appendix A)
#
# The encoder below is written from appendix A only, with the writer's
# choices of A.3 (has_type only for a type other than 1, new_source only on
# a source's first record in the segment, has_time_quality only when one of
# the five fields differs from the context).  It shares nothing with the
# decoder.
# ===========================================================================

M64 = 2**64


def enc_varint(value):
    """A.1: unsigned LEB128, shortest form."""
    assert 0 <= value < M64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def enc_zigzag(v, b):
    """A.1: zigzag delta of v against b, both taken mod 2^64."""
    d = (v - b) % M64
    if d >= 2**63:
        d -= M64                       # read as an i64
    u = ((d << 1) ^ (d >> 63)) % M64   # arithmetic shift (Python's >> on a negative int)
    return enc_varint(u)


class Rec:
    def __init__(self, source, seq, mono, wall, boot, payload=b"{}", rtype=1, time_flags=0,
                 boot_seq=0, maxerror_us=0xFFFFFFFF, esterror_us=0xFFFFFFFF, last_sync_ns=0):
        self.source, self.seq, self.mono, self.wall, self.boot = source, seq, mono, wall, boot
        self.payload, self.rtype = payload, rtype
        self.tq = (time_flags, boot_seq, maxerror_us, esterror_us, last_sync_ns)

    def json(self, frame):
        tf, bs, me, ee, ls = self.tq
        return {"frame": frame, "type": self.rtype, "source": self.source.decode(),
                "seq": self.seq, "mono_ctr": self.mono, "wall_ns": self.wall,
                "boot_ns": self.boot, "time_flags": tf, "boot_seq": bs, "maxerror_us": me,
                "esterror_us": ee, "last_sync_ns": ls, "payload_hex": self.payload.hex()}


class Enc:
    """The A.2 context, writer side."""

    def __init__(self):
        self.sources = []
        self.last_seq = {}
        self.mono = self.wall = self.boot = 0
        self.tq = (0, 0, 0xFFFFFFFF, 0xFFFFFFFF, 0)

    def record(self, r):
        head = 0
        out = bytearray()
        if r.rtype != 1:
            head |= 1
            out += enc_varint(r.rtype)
        if r.source not in self.sources:
            head |= 2
            out += bytes([len(r.source)]) + r.source
            self.sources.append(r.source)
            self.last_seq[r.source] = 0
        else:
            out += enc_varint(self.sources.index(r.source))
        out += enc_zigzag(r.seq, self.last_seq[r.source])
        self.last_seq[r.source] = r.seq
        out += enc_varint(r.mono - self.mono - 1)
        out += enc_zigzag(r.wall, self.wall)
        out += enc_zigzag(r.boot, self.boot + r.wall - self.wall)
        if r.tq != self.tq:
            head |= 4
            tf, bs, me, ee, ls = r.tq
            out += enc_varint(tf) + enc_varint(bs) + enc_varint(me) + enc_varint(ee)
            out += enc_zigzag(ls, self.tq[4])
        out += enc_varint(len(r.payload)) + r.payload
        self.mono, self.wall, self.boot, self.tq = r.mono, r.wall, r.boot, r.tq
        return bytes([head]) + bytes(out)

    def block(self, recs):
        return b"".join(self.record(r) for r in recs)


def deflate(block, dictionary=b"", flush=zlib.Z_FINISH):
    c = (zlib.compressobj(9, zlib.DEFLATED, -15, zdict=dictionary) if dictionary
         else zlib.compressobj(9, zlib.DEFLATED, -15))
    return c.compress(block) + c.flush(flush)


def frames_file(*frames):
    """The --frames container: (encoding, record_count, block_len, stored)."""
    out = bytearray(b"EDGEFRM1")
    for encoding, count, block_len, stored in frames:
        out += struct.pack("<B3xIII", encoding, count, block_len, len(stored)) + stored
    return bytes(out)


# Hand-built vector (worked out by hand from A.1 and A.3, checked against the
# encoder above): record 0 is the segment's first, data type, new source
# "temp", seq 1, mono 1, wall 1000, boot 500, the initial time quality, payload
# "{}"; record 1 is type 6, the same source, seq 2, mono 2, wall 990 (delta
# -10), boot 501, time_flags 1, boot_seq 1, maxerror 16000, esterror 500,
# last_sync 5, empty payload.
HAND_BLOCK = bytes([
    0x02, 0x04]) + b"temp" + bytes([
    0x02,               # seq: zigzag(+1) = 2
    0x00,               # mono: 1 - 0 - 1
    0xD0, 0x0F,         # wall: zigzag(1000) = 2000
    0xE7, 0x07,         # boot: against 0 + 1000 - 0, delta -500: zigzag 999
    0x02]) + b"{}" + bytes([
    0x05, 0x06,         # head has_type | has_time_quality, type 6
    0x00,               # source index 0
    0x02,               # seq +1
    0x00,               # mono +1
    0x13,               # wall: zigzag(-10) = 19
    0x16,               # boot: against 500 + 990 - 1000 = 490, delta +11: zigzag 22
    0x01, 0x01,         # time_flags 1, boot_seq 1
    0x80, 0x7D,         # maxerror 16000
    0xF4, 0x03,         # esterror 500
    0x0A,               # last_sync: zigzag(5 - 0) = 10
    0x00])              # payload_len 0
HAND_RECS = [Rec(b"temp", 1, 1, 1000, 500),
             Rec(b"temp", 2, 2, 990, 501, payload=b"", rtype=6, time_flags=1, boot_seq=1,
                 maxerror_us=16000, esterror_us=500, last_sync_ns=5)]


def as_json(rec, frame=0):
    return json.loads(dec.block_record_json(frame, rec))


def decode(block, count, ctx=None):
    return dec.decode_record_block(block, count, ctx if ctx is not None else dec.BlockContext())


def block_error(block, count, ctx=None):
    with pytest.raises(dec.BlockError) as info:
        decode(block, count, ctx)
    return info.value


# --- A.1 varints -----------------------------------------------------------

@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 2**32 - 1, 2**63,
                                   2**64 - 1])
def test_varint_round_trip(value):
    data = enc_varint(value) + b"\xAA"
    assert dec.read_varint(data, 0) == (value, len(data) - 1)


def test_varint_known_bytes():
    assert dec.read_varint(bytes([0x00]), 0) == (0, 1)
    assert dec.read_varint(bytes([0xAC, 0x02]), 0) == (300, 2)
    assert dec.read_varint(bytes([0xFF] * 9 + [0x01]), 0) == (2**64 - 1, 10)
    assert dec.read_varint(bytes([0x80] * 9 + [0x01]), 0) == (2**63, 10)
    assert dec.read_varint(bytes([0x99, 0x05, 0x01]), 1) == (5, 2)


@pytest.mark.parametrize("data, what", [
    ([0x80, 0x00], "shortest"),                       # overlong 0
    ([0x81, 0x80, 0x00], "shortest"),                 # overlong 1
    ([0xFF] * 9 + [0x00], "shortest"),                # 10th byte 0: a last 0 that is not alone
    ([0x80] * 10 + [0x01], "10th byte"),              # 11 bytes (10th has bit 7)
    ([0x80] * 11, "10th byte"),
    ([0xFF] * 9 + [0x02], "10th byte"),               # 10th byte 2: past 64 bits
    ([0xFF] * 9 + [0x7F], "10th byte"),
    ([0x80], "past the end"),                         # truncated
    ([0xFF, 0xFF], "past the end"),
    ([], "past the end"),
])
def test_varint_invalid(data, what):
    with pytest.raises(dec.BlockError) as info:
        dec.read_varint(bytes(data), 0)
    assert what in str(info.value)
    assert info.value.offset == 0


def test_varint_narrow_field_limit():
    assert dec.read_varint(enc_varint(0xFFFF), 0, 0xFFFF) == (0xFFFF, 3)
    with pytest.raises(dec.BlockError, match="does not fit"):
        dec.read_varint(enc_varint(0x10000), 0, 0xFFFF)


# --- A.1 zigzag deltas -----------------------------------------------------

I64_MIN, I64_MAX = -2**63, 2**63 - 1


@pytest.mark.parametrize("u, d", [(0, 0), (1, -1), (2, 1), (3, -2), (4, 2),
                                  (2**64 - 2, I64_MAX), (2**64 - 1, I64_MIN)])
def test_zigzag_decode(u, d):
    assert dec.zigzag_decode(u) == d


@pytest.mark.parametrize("v, b", [
    (0, 0), (1, 0), (0, 1), (I64_MIN, 0), (I64_MAX, 0), (0, I64_MIN), (0, I64_MAX),
    (I64_MAX, I64_MIN), (I64_MIN, I64_MAX), (-1, 0), (0, -1),
    (2**64 - 1, 0), (0, 2**64 - 1), (2**64 - 1, 1), (1, 2**64 - 1), (2**63, 2**63 - 1),
])
def test_zigzag_round_trip_any_pair(v, b):
    u, end = dec.read_varint(enc_zigzag(v, b), 0)
    assert dec.apply_zigzag_delta(b, u) == v % M64


def test_zigzag_extremes_and_wrap_bytes():
    # d = Int64.min stores the largest varint, d = Int64.max one below it.
    assert enc_zigzag(I64_MIN, 0) == bytes([0xFF] * 9 + [0x01])
    assert enc_zigzag(I64_MAX, 0) == bytes([0xFE] + [0xFF] * 8 + [0x01])
    # From Int64.min to Int64.max is 2^64 - 1 = -1 mod 2^64: one byte.
    assert enc_zigzag(I64_MAX, I64_MIN) == bytes([0x01])
    assert dec.apply_zigzag_delta(I64_MIN, 1) == I64_MAX
    # u64 wrap: 2^64 - 1 + 1 is 0.
    assert enc_zigzag(0, 2**64 - 1) == bytes([0x02])
    assert dec.apply_zigzag_delta(2**64 - 1, 2) == 0


def test_i64_fields_wrap_through_the_block():
    recs = [Rec(b"a", 1, 1, I64_MIN, I64_MAX, last_sync_ns=I64_MIN),
            Rec(b"a", 2, 2, I64_MAX, I64_MIN, last_sync_ns=I64_MAX),
            Rec(b"a", 3, 3, -1, 0, last_sync_ns=-1)]
    block = Enc().block(recs)
    got = decode(block, 3)
    assert [as_json(r) for r in got] == [r.json(0) for r in recs]


# --- A.2 / A.3 good blocks ---------------------------------------------------

def test_hand_vector_matches_encoder_and_decodes():
    assert Enc().block(HAND_RECS) == HAND_BLOCK
    ctx = dec.BlockContext()
    got = decode(HAND_BLOCK, 2, ctx)
    assert [as_json(r) for r in got] == [r.json(0) for r in HAND_RECS]
    assert got[0].payload == b"{}" and got[1].payload == b""
    # The context took the last record's fields.
    assert ctx.sources == [b"temp"] and ctx.last_seq == [2]
    assert (ctx.prev_mono, ctx.prev_wall, ctx.prev_boot) == (2, 990, 501)
    assert (ctx.time_flags, ctx.boot_seq, ctx.maxerror_us, ctx.esterror_us,
            ctx.last_sync_ns) == (1, 1, 16000, 500, 5)


def test_initial_context_is_the_table():
    ctx = dec.BlockContext()
    assert (ctx.sources, ctx.last_seq, ctx.prev_mono, ctx.prev_wall, ctx.prev_boot,
            ctx.time_flags, ctx.boot_seq, ctx.maxerror_us, ctx.esterror_us,
            ctx.last_sync_ns) == ([], [], 0, 0, 0, 0, 0, 0xFFFFFFFF, 0xFFFFFFFF, 0)


def test_empty_block_zero_records():
    ctx = dec.BlockContext()
    assert decode(b"", 0, ctx) == []
    assert ctx == dec.BlockContext()


def test_several_sources_and_per_source_seq():
    recs = [Rec(b"a", 10, 5, 100, 50), Rec(b"b", 1, 6, 101, 51),
            Rec(b"a", 11, 7, 102, 52), Rec(b"c.x_y-9", 3, 100, 99, 53),
            Rec(b"b", 2, 101, 104, 54), Rec(b"a", 5, 102, 105, 55)]   # seq may go back
    got = decode(Enc().block(recs), len(recs))
    assert [as_json(r) for r in got] == [r.json(0) for r in recs]


def test_reader_accepts_non_writer_choices():
    # has_type with type 1, has_time_quality repeating the context.
    block = bytes([0x07, 0x01, 0x01]) + b"s" + bytes([0x02, 0x00, 0x00, 0x00,
                                                     0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F,
                                                     0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x00, 0x00])
    (r,) = decode(block, 1)
    assert as_json(r) == Rec(b"s", 1, 1, 0, 0, payload=b"").json(0)


def test_u16_u32_edges_accepted():
    rec = Rec(b"s", 2**62 - 1, 2**62 - 1, 0, 0, rtype=0xFFFF, time_flags=0xFFFF,
              boot_seq=0xFFFF, maxerror_us=0, esterror_us=0xFFFFFFFE)
    (r,) = decode(Enc().block([rec]), 1)
    assert as_json(r) == rec.json(0)


def test_1024_sources_accepted_1025th_refused():
    names = [b"s%d" % i for i in range(1025)]
    enc = Enc()
    block = enc.block([Rec(n, 1, i + 1, 0, 0) for i, n in enumerate(names[:1024])])
    ctx = dec.BlockContext()
    assert len(decode(block, 1024, ctx)) == 1024 and len(ctx.sources) == 1024
    # The index of the last one is 2 bytes.
    assert len(decode(enc.block([Rec(names[1023], 2, 2000, 0, 0)]), 1,
                      ctx)) == 1
    err = block_error(enc.block([Rec(names[1024], 1, 2001, 0, 0)]), 1, ctx)
    assert "1024" in err.reason and err.record == 0


# --- A.3 invalid blocks ------------------------------------------------------

def one(**kw):
    return Rec(**{"source": b"temp", "seq": 1, "mono": 1, "wall": 0, "boot": 0, **kw})


def good_two():
    return Enc().block([one(), one(seq=2, mono=2)])


def test_reserved_head_bits_refused():
    for bit in range(3, 8):
        block = bytearray(good_two())
        second = len(Enc().block([one()]))
        block[second] |= 1 << bit
        err = block_error(bytes(block), 2)
        assert "reserved" in err.reason and err.record == 1 and err.offset == second
        assert str(err).endswith("(record 1, block offset %d)" % second)


@pytest.mark.parametrize("name_len, name, what", [
    (0, b"", "name_len 0"),
    (40, b"a" * 40, "name_len 40"),
    (4, b"-abc", "invalid source name"),
    (4, b"_abc", "invalid source name"),
    (4, b"ab c", "invalid source name"),
    (4, b"ab=c", "invalid source name"),
    (4, b"ab\xC3\xA9"[:4], "invalid source name"),
    (4, b"ab", "past the end"),
])
def test_bad_source_name_refused(name_len, name, what):
    rest = bytes([0x02, 0x00, 0x00, 0x00, 0x00]) if len(name) == name_len else b""
    block = bytes([0x02, name_len]) + name + rest
    err = block_error(block, 1)
    assert what in err.reason and err.record == 0


def test_longest_source_name_accepted():
    rec = one(source=b"A" * 39)
    (r,) = decode(Enc().block([rec]), 1)
    assert r.source == b"A" * 39


def test_redefined_source_refused():
    block = Enc().block([one()])
    again = Enc().block([one(seq=2, mono=2)])      # a fresh writer defines "temp" again
    err = block_error(block + again, 2)
    assert "already defined" in err.reason and err.record == 1
    # Also across frames of the segment.
    ctx = dec.BlockContext()
    decode(block, 1, ctx)
    err = block_error(again, 1, ctx)
    assert "already defined" in err.reason and err.record == 0


def test_unknown_source_index_refused():
    block = Enc().block([one()]) + bytes([0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00])
    err = block_error(block, 2)
    assert "source index 1" in err.reason and err.record == 1
    err = block_error(bytes([0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00]), 1)
    assert "source index 0" in err.reason and err.record == 0 and err.offset == 1


def test_mono_must_increase_and_not_pass_2_64():
    # The encoding cannot say "not above": the delta is mono - prev - 1, so a
    # first record has mono >= 1 and every next one is above the previous.
    (r,) = decode(bytes([0x02, 0x01]) + b"s" + bytes([0x02, 0x00, 0x00, 0x00, 0x00]), 1)
    assert r.mono_ctr == 1
    ctx = dec.BlockContext(prev_mono=2**64 - 2)
    ctx.sources, ctx.last_seq = [b"s"], [0]
    # prev + 1 + 0 is 2^64 - 1: past the 2^62 bound, not past 2^64 - 1.
    err = block_error(bytes([0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00]), 1, ctx)
    assert "2^62" in err.reason
    # prev + 1 + 1 passes 2^64 - 1.
    err = block_error(bytes([0x00, 0x00, 0x02, 0x01, 0x00, 0x00, 0x00]), 1, ctx)
    assert "passes 2^64-1" in err.reason and err.offset == 3
    ctx.prev_mono = 0
    huge = enc_varint(2**64 - 1)
    err = block_error(bytes([0x00, 0x00, 0x02]) + huge + bytes([0x00, 0x00, 0x00]), 1, ctx)
    assert "passes 2^64-1" in err.reason


def test_mono_increases_across_frames():
    enc = Enc()
    ctx = dec.BlockContext()
    decode(enc.block([one(mono=10)]), 1, ctx)
    (r,) = decode(enc.block([one(seq=2, mono=11)]), 1, ctx)
    assert r.mono_ctr == 11 and ctx.prev_mono == 11


@pytest.mark.parametrize("field, value, ok", [
    ("seq", 2**62 - 1, True), ("seq", 2**62, False), ("seq", 2**64 - 1, False),
    ("mono", 2**62 - 1, True), ("mono", 2**62, False), ("mono", 2**64 - 1, False),
])
def test_seq_and_mono_below_2_62(field, value, ok):
    block = Enc().block([one(**{field: value})])
    if ok:
        (r,) = decode(block, 1)
        assert (r.seq if field == "seq" else r.mono_ctr) == value
    else:
        err = block_error(block, 1)
        assert "2^62" in err.reason and err.record == 0


def test_seq_wraps_below_zero_is_out_of_bound():
    # seq delta -1 from last_seq 0 gives 2^64 - 1: refused by the bound.
    err = block_error(bytes([0x02, 0x01]) + b"s" + bytes([0x01, 0x00, 0x00, 0x00, 0x00]), 1)
    assert "seq" in err.reason and "2^62" in err.reason


@pytest.mark.parametrize("head, fields, what", [
    (0x03, [enc_varint(0x10000)], "does not fit"),                     # type u16
    (0x06, [b"", enc_varint(0x10000)], "does not fit"),                # time_flags
    (0x06, [b"", b"\x00", enc_varint(0x10000)], "does not fit"),      # boot_seq
    (0x06, [b"", b"\x00\x00", enc_varint(2**32)], "does not fit"),    # maxerror
    (0x06, [b"", b"\x00\x00\x00", enc_varint(2**32)], "does not fit"),  # esterror
])
def test_narrow_fields_out_of_range(head, fields, what):
    # Lay out: head, [type], new source "s", seq, mono, wall, boot, [time q].
    type_part = fields[0] if head & 1 else b""
    tq = b"".join(fields[1:]) if head & 4 else b""
    block = (bytes([head]) + type_part + b"\x01s" + b"\x02\x00\x00\x00" + tq
             + b"\x00" * 8)
    err = block_error(block, 1)
    assert what in err.reason and err.record == 0


def test_payload_len_within_the_block():
    block = Enc().block([one(payload=b"{}")])
    assert block[-3] == 2
    err = block_error(block[:-1], 1)
    assert "payload_len 2" in err.reason and err.offset == len(block) - 3
    err = block_error(block[:-3] + enc_varint(2**64 - 1) + b"{}", 1)
    assert "payload_len" in err.reason


def test_count_mismatch_and_trailing_bytes():
    block = good_two()
    assert len(decode(block, 2)) == 2
    err = block_error(block, 3)                # fewer records than record_count
    assert "record_count is 3" in err.reason and err.record == 2 and err.offset == len(block)
    err = block_error(block, 1)                # bytes after the last record
    assert "bytes after" in err.reason and err.offset == len(Enc().block([one()]))
    err = block_error(block + b"\x00", 2)      # trailing byte
    assert "1 bytes after" in err.reason and err.offset == len(block)
    err = block_error(block[:-1], 2)           # block ends inside the last record
    assert err.record == 1
    err = block_error(b"", 1)
    assert err.record == 0 and err.offset == 0


def test_truncated_everywhere_is_an_error_never_a_crash():
    block = Enc().block(HAND_RECS)
    for cut in range(len(block)):
        with pytest.raises(dec.BlockError):
            decode(block[:cut], 2)


def test_context_does_not_move_on_a_failed_block():
    enc = Enc()
    ctx = dec.BlockContext()
    decode(enc.block([one()]), 1, ctx)
    before = ctx.copy()
    # New source, new time quality and a good first record; the second one fails.
    bad = Enc()
    bad.sources, bad.last_seq = [b"temp"], {b"temp": 1}
    bad.mono = 1
    good_part = bad.block([one(source=b"other", seq=7, mono=5, wall=9, boot=9,
                               time_flags=3, maxerror_us=1)])
    err = block_error(good_part + b"\x00\x05", 2, ctx)    # unknown index 5
    assert err.record == 1
    assert ctx == before
    assert ctx.sources == [b"temp"] and ctx.last_seq == [1]
    # The same ctx still decodes the segment's next good block.
    (r,) = decode(enc.block([one(seq=2, mono=2)]), 1, ctx)
    assert (r.seq, r.mono_ctr) == (2, 2)


# --- A.4 stored and deflate frames -------------------------------------------

def test_stored_frame_is_the_block():
    assert dec.inflate_frame(0, HAND_BLOCK, len(HAND_BLOCK)) == HAND_BLOCK
    with pytest.raises(dec.BlockError, match="block_len"):
        dec.inflate_frame(0, HAND_BLOCK, len(HAND_BLOCK) + 1)
    with pytest.raises(dec.BlockError, match="block_len"):
        dec.inflate_frame(0, HAND_BLOCK, len(HAND_BLOCK) - 1)


@pytest.mark.parametrize("encoding", [2, 3, 255])
def test_unknown_encoding_refused(encoding):
    with pytest.raises(dec.BlockError, match="unknown frame encoding"):
        dec.inflate_frame(encoding, HAND_BLOCK, len(HAND_BLOCK))


def test_deflate_frame_round_trip_with_and_without_dictionary():
    assert dec.inflate_frame(1, deflate(HAND_BLOCK), len(HAND_BLOCK)) == HAND_BLOCK
    prev = bytes(range(256)) * 200          # over 32 KiB: only its end is used
    stored = deflate(HAND_BLOCK, prev)
    assert dec.inflate_frame(1, stored, len(HAND_BLOCK), prev) == HAND_BLOCK
    assert dec.inflate_frame(1, deflate(b""), 0) == b""
    assert dec.inflate_frame(1, deflate(b"", prev), 0, prev) == b""


def test_deflate_against_a_suffix_of_the_dictionary_reads_with_the_whole_one():
    # A.4: a writer may compress against any suffix of the dictionary, the empty one included;
    # a reader presets the whole dictionary and reads the stream the same way.
    prev = HAND_BLOCK * 40 + bytes(range(256)) * 20
    block = HAND_BLOCK * 3
    for suffix in (b"", prev[-100:], prev[-8192:], prev):
        stored = deflate(block, suffix)
        assert dec.inflate_frame(1, stored, len(block), prev) == block


def test_deflate_too_long_refused():
    big = bytes(100_000)
    stored = deflate(big)
    for block_len in (0, 1, 99_999):
        with pytest.raises(dec.BlockError, match="more than block_len"):
            dec.inflate_frame(1, stored, block_len)


def test_deflate_too_long_stops_at_block_len(monkeypatch):
    # Inflating never produces more than block_len + 1 bytes (the first byte
    # beyond is where it stops), however much the stream holds.
    produced = []
    real = zlib.decompressobj

    class Spy:
        def __init__(self, *a, **kw):
            self.d = real(*a, **kw)

        def decompress(self, data, max_length=0):
            assert max_length > 0
            out = self.d.decompress(data, max_length)
            produced.append(len(out))
            return out

        def __getattr__(self, name):
            return getattr(self.d, name)

    monkeypatch.setattr(dec.zlib, "decompressobj", Spy)
    with pytest.raises(dec.BlockError):
        dec.inflate_frame(1, deflate(bytes(10_000_000)), 10)
    assert sum(produced) <= 11


def test_deflate_too_short_refused():
    with pytest.raises(dec.BlockError, match="inflates to %d bytes" % len(HAND_BLOCK)):
        dec.inflate_frame(1, deflate(HAND_BLOCK), len(HAND_BLOCK) + 1)


def test_deflate_trailing_bytes_refused():
    stored = deflate(HAND_BLOCK)
    for extra in (b"\x00", b"\x03\x00", deflate(b"x")):
        with pytest.raises(dec.BlockError, match="after the end of the deflate stream"):
            dec.inflate_frame(1, stored + extra, len(HAND_BLOCK))


def test_deflate_incomplete_stream_refused():
    # A sync-flushed stream: every byte is there but no final block.
    stored = deflate(HAND_BLOCK, flush=zlib.Z_SYNC_FLUSH)
    with pytest.raises(dec.BlockError, match="incomplete"):
        dec.inflate_frame(1, stored, len(HAND_BLOCK))
    # A stream cut short.
    full = deflate(HAND_BLOCK)
    for cut in range(len(full)):
        with pytest.raises(dec.BlockError):
            dec.inflate_frame(1, full[:cut], len(HAND_BLOCK))


def test_deflate_garbage_refused():
    with pytest.raises(dec.BlockError, match="not valid"):
        dec.inflate_frame(1, b"\xff\xff\xff\xff", 4)


def test_deflate_wrong_dictionary_refused():
    prev = Enc().block([one(payload=b'{"temperature":21.5,"humidity":40}')])
    block = prev * 3
    stored = deflate(block, prev)
    assert dec.inflate_frame(1, stored, len(block), prev) == block
    # No dictionary: the back-references reach before the stream.
    with pytest.raises(dec.BlockError):
        dec.inflate_frame(1, stored, len(block))
    # Another dictionary of the same length: other bytes, not this block.
    other = bytes(len(prev))
    try:
        got = dec.inflate_frame(1, stored, len(block), other)
    except dec.BlockError:
        got = None
    assert got != block


# --- Frames of a segment ------------------------------------------------------

def segment_frames():
    """Three frames of one segment (stored, deflate with the dictionary,
    deflate), the records and the container entries."""
    enc = Enc()
    f0 = [Rec(b"temp", 1, 1, 1_700_000_000_000_000_000, 5_000_000_000,
              payload=b'{"t":21.5}'),
          Rec(b"edgelog", 1, 2, 1_700_000_000_000_100_000, 5_000_100_000, rtype=6,
              payload=b'{"boot_id":"x"}', time_flags=1, boot_seq=1, maxerror_us=16000,
              esterror_us=500, last_sync_ns=1_699_999_999_000_000_000)]
    f1 = [Rec(b"temp", 2, 3, 1_700_000_001_000_000_000, 5_001_000_000, payload=b'{"t":21.5}',
              time_flags=1, boot_seq=1, maxerror_us=16000, esterror_us=500,
              last_sync_ns=1_699_999_999_000_000_000),
          Rec(b"hum", 1, 4, 1_700_000_000_999_000_000, 5_001_000_001, payload=b"\x00\xff",
              time_flags=1, boot_seq=1, maxerror_us=16000, esterror_us=500,
              last_sync_ns=1_699_999_999_000_000_000)]
    f2 = [Rec(b"temp", 3, 10, -5, -6, payload=b"")]
    b0, b1, b2 = enc.block(f0), enc.block(f1), enc.block(f2)
    frames = [(0, 2, len(b0), b0), (1, 2, len(b1), deflate(b1, b0)),
              (1, 1, len(b2), deflate(b2, b1))]
    return [f0, f1, f2], [b0, b1, b2], frames


def test_segment_frames_decode_in_order():
    recs, blocks, frames = segment_frames()
    sf = dec.SegmentFrames()
    for i, (encoding, count, block_len, stored) in enumerate(frames):
        got = sf.decode_frame(encoding, count, block_len, stored)
        assert [as_json(r, i) for r in got] == [r.json(i) for r in recs[i]]
        assert sf.prev_block == blocks[i]


def test_segment_frames_failed_frame_moves_nothing_on():
    recs, blocks, frames = segment_frames()
    sf = dec.SegmentFrames()
    sf.decode_frame(*frames[0])
    ctx, prev = sf.context.copy(), sf.prev_block
    encoding, count, block_len, stored = frames[1]
    with pytest.raises(dec.BlockError):
        sf.decode_frame(encoding, count + 1, block_len, stored)   # block invalid
    with pytest.raises(dec.BlockError):
        sf.decode_frame(encoding, count, block_len + 1, stored)   # does not inflate right
    assert sf.context == ctx and sf.prev_block == prev
    got = sf.decode_frame(*frames[1])
    assert [as_json(r, 1) for r in got] == [r.json(1) for r in recs[1]]


def run_frames(tmp_path, data, name="frames.bin"):
    p = tmp_path / name
    p.write_bytes(data)
    out, err = io.BytesIO(), io.BytesIO()
    code = dec.main(["--frames", str(p)], out=out, err=err)
    return code, [json.loads(x) for x in out.getvalue().splitlines()], out.getvalue()


def test_frames_cli_good_file(tmp_path):
    recs, _, frames = segment_frames()
    code, lines, raw = run_frames(tmp_path, frames_file(*frames))
    assert code == 0
    assert lines == [r.json(i) for i, f in enumerate(recs) for r in f]
    # Key order and compact separators, as the brief fixes them.
    first = raw.splitlines()[0].decode()
    assert first.startswith('{"frame":0,"type":1,"source":"temp","seq":1,"mono_ctr":1,'
                            '"wall_ns":1700000000000000000,"boot_ns":5000000000,'
                            '"time_flags":0,"boot_seq":0,"maxerror_us":4294967295,'
                            '"esterror_us":4294967295,"last_sync_ns":0,"payload_hex":"7b2274'
                            '223a32312e357d"}')
    assert any('"payload_hex":"00ff"' in x for x in raw.decode().splitlines())
    assert lines[-1]["wall_ns"] == -5 and lines[-1]["boot_ns"] == -6


def test_frames_cli_empty_container(tmp_path):
    assert run_frames(tmp_path, b"EDGEFRM1")[:2] == (0, [])


def test_frames_cli_failing_frame(tmp_path):
    recs, blocks, frames = segment_frames()
    bad = list(frames)
    encoding, count, block_len, stored = bad[2]
    bad[2] = (encoding, count, block_len, stored + b"\x00")     # byte after the stream
    code, lines, _ = run_frames(tmp_path, frames_file(*bad))
    assert code == 1
    assert lines[:-1] == [r.json(i) for i, f in enumerate(recs[:2]) for r in f]
    assert list(lines[-1]) == ["frame", "error"] and lines[-1]["frame"] == 2
    assert "after the end of the deflate stream" in lines[-1]["error"]
    # A frame whose block is invalid: none of its records is printed.
    bad = list(frames)
    encoding, count, block_len, stored = bad[1]
    bad[1] = (encoding, count + 1, block_len, stored)
    code, lines, _ = run_frames(tmp_path, frames_file(*bad))
    assert code == 1 and len(lines) == 3 and lines[-1]["frame"] == 1
    assert "record 2" in lines[-1]["error"] and "block offset" in lines[-1]["error"]
    # Frame 1 decoded without frame 0 (no dictionary, no context) fails.
    code, lines, _ = run_frames(tmp_path, frames_file(frames[1]))
    assert code == 1 and lines == [lines[0]] and lines[0]["frame"] == 0


@pytest.mark.parametrize("data, frame, what", [
    (b"EDGEFRM2", 0, "magic"),
    (b"", 0, "magic"),
    (b"EDGEFRM1\x00\x00\x00\x00", 0, "header truncated"),
    (b"EDGEFRM1" + struct.pack("<B3sIII", 0, b"\x00\x01\x00", 0, 0, 0), 0, "reserved"),
    (b"EDGEFRM1" + struct.pack("<B3xIII", 0, 0, 0, 0)
     + struct.pack("<B3xIII", 0, 0, 5, 5) + b"abc", 1, "truncated"),
    (b"EDGEFRM1" + struct.pack("<B3xIII", 0, 0, 0, 0) + b"\x00", 1, "header truncated"),
])
def test_frames_cli_malformed_container(tmp_path, data, frame, what):
    code, lines, _ = run_frames(tmp_path, data)
    assert code == 1
    assert lines[-1]["frame"] == frame and what in lines[-1]["error"]


def test_frames_cli_subprocess_and_usage(tmp_path):
    _, _, frames = segment_frames()
    p = tmp_path / "f.bin"
    p.write_bytes(frames_file(*frames))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--frames", str(p)],
                          capture_output=True)
    assert proc.returncode == 0 and proc.stdout.count(b"\n") == 5 and proc.stderr == b""
    # STORE_PATH is still required without --frames (usage error, exit 2).
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True)
    assert proc.returncode == 2 and b"STORE_PATH" in proc.stderr
    # --frames is used alone.
    proc = subprocess.run([sys.executable, str(SCRIPT), "--frames", str(p), str(p)],
                          capture_output=True)
    assert proc.returncode == 2
    proc = subprocess.run([sys.executable, str(SCRIPT), "--frames", str(tmp_path / "none")],
                          capture_output=True)
    assert proc.returncode == 2 and b"cannot open" in proc.stderr


# ===========================================================================
# Format 6, in progress: one segment (FORMAT.md appendix A.5 to A.7)
#
# A test-only encoder of the segment header, its tables, the frame and the
# EDGESIG3 statement, written from A.5 to A.7 with every field put at its
# documented offset (no shared struct layout with the decoder); the record
# blocks come from Enc above and the CRC from crc() above.
# ===========================================================================

S6_UUID = bytes(range(0x10, 0x20))
S6_KEY_ID = bytes(range(0x30, 0x40))
S6_PREV = bytes([0x11]) * 32
S6_FW = hashlib.sha256(b"edgelog format 6 test build").digest()

# (offset, struct format, name) of A.5's fixed header fields.
S6_HEADER_FIELDS = [
    (0, "8s", "magic"), (8, "<H", "format_version"), (10, "<H", "reserved"),
    (12, "<I", "header_len"), (16, "16s", "store_uuid"), (32, "<Q", "segment_id"),
    (40, "<Q", "first_frame_id"), (48, "<I", "slot_index"), (52, "<I", "wrap_count"),
    (56, "32s", "prev_hash"), (88, "16s", "device_id"), (104, "16s", "key_id"),
    (120, "<I", "key_epoch"), (124, "<B", "sig_alg"), (125, "<B", "key_src"),
    (126, "<H", "sig_len"), (128, "32s", "fw_ver_hash"), (160, "<Q", "rollback_ctr"),
    (168, "<Q", "tail_segment_id"), (176, "<I", "tail_slot"), (180, "<I", "ring_slots"),
    (184, "<Q", "mono_hwm"), (192, "<Q", "records_total"), (200, "<Q", "lost_total"),
    (208, "<Q", "dropped_total"), (216, "<Q", "uplink_cursor"), (224, "<I", "unexp_rst"),
    (228, "<I", "bo_event"), (232, "<I", "ecc_err_cnt"), (236, "<I", "clock_steps"),
    (240, "<I", "boot_seq"), (244, "<I", "tables_len"),
]


def s6_hdr(**kw):
    """The header fields of a test segment (all different, so a field read at
    the wrong offset shows), with `kw` replacing any of them."""
    h = dict(magic=b"EDGELOGS", format_version=6, reserved=0, header_len=512,
             store_uuid=S6_UUID, segment_id=7, first_frame_id=40, slot_index=2,
             wrap_count=3, prev_hash=S6_PREV, device_id=DEVICE_ID, key_id=bytes(16),
             key_epoch=0, sig_alg=0, key_src=0, sig_len=0, fw_ver_hash=S6_FW,
             rollback_ctr=9, tail_segment_id=5, tail_slot=1, ring_slots=6, mono_hwm=0,
             records_total=50, lost_total=4, dropped_total=11, uplink_cursor=6, unexp_rst=12,
             bo_event=13, ecc_err_cnt=14, clock_steps=15, boot_seq=16,
             bad_slots=[(3, 1, 4)], sources=[(b"edgelog", 10)], tables=None,
             tables_len=None, pad=b"", crc=None)
    h.update(kw)
    return h


def s6_tables(bad_slots, sources):
    """A.5's tables: varint count, (varint slot, u8 reason, varint segment_id)
    each; varint count, (u8 name_len, name, varint last_seq) each."""
    out = enc_varint(len(bad_slots))
    for slot, reason, seg in bad_slots:
        out += enc_varint(slot) + bytes([reason]) + enc_varint(seg)
    out += enc_varint(len(sources))
    for name, seq in sources:
        out += bytes([len(name)]) + name + enc_varint(seq)
    return out


def s6_header(h):
    """The header bytes (header_len of them) for the fields `h`."""
    tables = h["tables"] if h["tables"] is not None else s6_tables(h["bad_slots"], h["sources"])
    out = bytearray(h["header_len"])
    vals = dict(h, tables_len=len(tables) if h["tables_len"] is None else h["tables_len"])
    for off, fmt, name in S6_HEADER_FIELDS:
        struct.pack_into(fmt, out, off, vals[name])
    out[248:248 + len(tables)] = tables
    out[248 + len(tables):248 + len(tables) + len(h["pad"])] = h["pad"]
    c = crc(bytes(out[:-4])) if h["crc"] is None else h["crc"]
    struct.pack_into("<I", out, len(out) - 4, c)
    return bytes(out)


def s6_frame(stored, record_count, block_len, *, deflate_=False, state=None, sig=b"",
             uuid=S6_UUID, seg_id=7, magic=b"EF", flags=None, frame_len=None,
             raw_state=None, raw_frame_len=None, raw_counts=None, bad_crc=False):
    """One frame (A.6): magic, flags, varint frame_len, record_count,
    block_len, the state list, stored, signature, frame_crc (over uuid,
    segment_id u64 and magic..signature).  The raw_* arguments put bytes in
    place of an encoded field, to build frames that are not valid."""
    if flags is None:
        flags = (1 if deflate_ else 0) | (2 if state is not None or raw_state is not None else 0)
    if raw_state is not None:
        state_bytes = raw_state
    elif state is not None:
        state_bytes = enc_varint(len(state)) + b"".join(
            bytes([i]) + enc_varint(v) for i, v in state)
    else:
        state_bytes = b""
    counts = (enc_varint(record_count) + enc_varint(block_len)
              if raw_counts is None else raw_counts)
    rest = counts + state_bytes + stored + sig
    if frame_len is None:
        n = 3 + len(rest) + 4 + 1
        while 3 + len(enc_varint(n)) + len(rest) + 4 != n:
            n = 3 + len(enc_varint(n)) + len(rest) + 4
        frame_len = n
    flen = enc_varint(frame_len) if raw_frame_len is None else raw_frame_len
    body = magic + bytes([flags]) + flen + rest
    c = crc(uuid + struct.pack("<Q", seg_id) + body)
    if bad_crc:
        c ^= 1
    return body + struct.pack("<I", c)


def s6_slot(header, frames, sector=512, size=4096, start=None, base=None):
    """A slot's bytes: `header` at 0, the frames from header_len (or
    `start`), each at the first sector boundary at or after the end of the
    one before; `base` is what the slot held before (an older lap)."""
    out = bytearray(size) if base is None else bytearray(base)
    out[:len(header)] = header
    pos = len(header) if start is None else start
    offsets = []
    for f in frames:
        offsets.append(pos)
        out[pos:pos + len(f)] = f
        pos = -(-(pos + len(f)) // sector) * sector
    return bytes(out), offsets


def s6_statement(h, frame_id, first, last, count, prev_hash, frame_hash, after,
                 header_bytes):
    """A.7's 352 bytes, each field at its documented offset; `after` is the
    sealed state after the frame (the counters and the tables)."""
    st = bytearray(352)
    for off, fmt, val in [
            (0, "8s", b"EDGESIG3"), (8, "16s", h["device_id"]), (24, "<Q", h["segment_id"]),
            (32, "<Q", frame_id), (40, "<Q", first), (48, "<Q", last), (56, "<I", count),
            (60, "<I", h["key_epoch"]), (64, "16s", h["key_id"]),
            (80, "<Q", h["rollback_ctr"]), (88, "32s", h["fw_ver_hash"]),
            (120, "32s", prev_hash), (152, "32s", frame_hash), (184, "<B", h["sig_alg"]),
            (185, "<B", h["key_src"]), (186, "<H", h["sig_len"]), (188, "4s", bytes(4)),
            (192, "16s", h["store_uuid"]), (208, "<Q", h["tail_segment_id"]),
            (216, "<Q", after["mono_hwm"]), (224, "<Q", after["records_total"]),
            (232, "<Q", after["lost_total"]), (240, "<Q", after["dropped_total"]),
            (248, "<Q", after["uplink_cursor"]), (256, "<I", h["wrap_count"]),
            (260, "<I", h["unexp_rst"]), (264, "<I", after["bo_event"]),
            (268, "<I", after["ecc_err_cnt"]), (272, "<I", after["clock_steps"]),
            (276, "<I", h["boot_seq"]),
            (280, "32s", hashlib.sha256(s6_tables(after["bad_slots"],
                                                  after["sources"])).digest()),
            (312, "<I", h["tail_slot"]), (316, "<I", h["ring_slots"]),
            (320, "32s", hashlib.sha256(header_bytes[:-4]).digest())]:
        struct.pack_into(fmt, st, off, val)
    return bytes(st)


def s6_walk(slot, sector=512, uuid=None):
    return dec.walk_segment(slot, sector, uuid)


def s6_ends(slot, sector=512):
    w = s6_walk(slot, sector)
    return len(w.frames), w.end_offset, w.end_reason


# The hand-computable segment: frame 0 is HAND_BLOCK stored with a state
# list (lost_total 5), frame 1 two more records (temp seq 3, a new source
# "hum") deflated against HAND_BLOCK with a state list (dropped_total 20,
# clock_steps 15: equal to the value before is allowed), frame 2 an empty
# stored frame without a state list.
HAND_F1 = [Rec(b"temp", 3, 3, 2000, 1501, payload=b'{"t":1}'),
           Rec(b"hum", 1, 5, 2500, 2001, payload=b'{"h":2}')]


def hand_segment(**kw):
    h = s6_hdr(**kw)
    header = s6_header(h)
    enc = Enc()
    assert enc.block(HAND_RECS) == HAND_BLOCK
    b1 = enc.block(HAND_F1)
    sig = bytes(range(h["sig_len"]))
    f0 = s6_frame(HAND_BLOCK, 2, len(HAND_BLOCK), state=[(1, 5)], sig=sig,
                  seg_id=h["segment_id"])
    f1 = s6_frame(deflate(b1, HAND_BLOCK), 2, len(b1), deflate_=True,
                  state=[(2, 20), (6, 15)], sig=sig, seg_id=h["segment_id"])
    f2 = s6_frame(b"", 0, 0, sig=sig, seg_id=h["segment_id"])
    slot, offsets = s6_slot(header, [f0, f1, f2])
    return h, header, [f0, f1, f2], b1, slot, offsets


def test_segment_hand_vector_frame_bytes():
    """Frame 0 of the hand segment, worked out by hand from A.6."""
    h, header, (f0, _, _), _, _, _ = hand_segment()
    assert len(HAND_BLOCK) == 30
    expect = (b"EF" + bytes([0x02,           # flags: state
                             0x2B,           # frame_len 43 = 2+1+1+1+1+3+30+4
                             0x02,           # record_count 2
                             0x1E,           # block_len 30
                             0x01, 0x01, 0x05])  # n 1: lost_total (id 1) = 5
              + HAND_BLOCK)
    assert f0[:-4] == expect and len(f0) == 43
    assert f0[-4:] == struct.pack("<I", crc(S6_UUID + struct.pack("<Q", 7) + expect))
    # The header's tables: one bad slot (3, write error, segment 4), one
    # source ("edgelog", last_seq 10); tables_len 14, then zero padding.
    tables = bytes([0x01, 0x03, 0x01, 0x04, 0x01, 0x07]) + b"edgelog" + bytes([0x0A])
    assert header[244:248] == struct.pack("<I", 14)
    assert header[248:262] == tables and header[262:508] == bytes(246)


def test_segment_header_fields():
    h, header, frames, _, slot, _ = hand_segment()
    hd = dec.parse_segment_header(slot, 512)
    for _, _, name in S6_HEADER_FIELDS:
        if name in ("magic", "format_version", "reserved", "tables_len"):
            continue
        assert getattr(hd, name) == h[name], name
    assert hd.tables_len == 14
    assert hd.tables.bad_slots == [(3, 1, 4)]
    assert hd.tables.sources == [[b"edgelog", 10]]
    assert hd.header_hash == hashlib.sha256(header[:508]).digest()
    assert hd.header_crc == crc(header[:508])


def test_segment_hand_vector_walk_and_statements():
    h, header, frames, b1, slot, offsets = hand_segment()
    w = s6_walk(slot)
    assert offsets == [512, 1024, 1536]
    assert (len(w.frames), w.end_offset, w.end_reason) == (3, 2048, "blank")
    f0, f1, f2 = w.frames
    assert [f.frame_id for f in w.frames] == [40, 41, 42]
    assert [f.offset for f in w.frames] == offsets
    assert [f.frame_len for f in w.frames] == [len(f) for f in frames]
    assert [f.deflate for f in w.frames] == [False, True, False]
    assert [f.state_list for f in w.frames] == [[(1, 5)], [(2, 20), (6, 15)], []]
    assert [f.block_len for f in w.frames] == [30, len(b1), 0]
    assert [as_json(r, 40) for r in f0.records] == [r.json(40) for r in HAND_RECS]
    assert [as_json(r, 41) for r in f1.records] == [r.json(41) for r in HAND_F1]
    assert f2.records == []
    hashes = [hashlib.sha256(f[:-4]).digest() for f in frames]
    assert [f.frame_hash for f in w.frames] == hashes

    # Frame 0: by hand.  records_total + 1 (record 1 is type 6), mono_hwm 2,
    # lost_total 5, "temp" appended to the tables with last_seq 2.
    st = f0.statement
    assert len(st) == 352 and st[0:8] == b"EDGESIG3"
    assert st[8:24] == DEVICE_ID
    assert struct.unpack_from("<QQQQI", st, 24) == (7, 40, 1, 2, 2)
    assert st[120:152] == S6_PREV and st[152:184] == hashes[0]
    assert struct.unpack_from("<QQQQQ", st, 216) == (2, 51, 5, 11, 6)
    assert struct.unpack_from("<IIIIII", st, 256) == (3, 12, 13, 14, 15, 16)
    tables_after_f0 = bytes([1, 3, 1, 4, 2, 7]) + b"edgelog" + bytes([10, 4]) + b"temp" \
        + bytes([2])
    assert st[280:312] == hashlib.sha256(tables_after_f0).digest()
    assert struct.unpack_from("<II", st, 312) == (1, 6)
    assert st[320:352] == hashlib.sha256(header[:508]).digest()
    assert st[188:192] == bytes(4)

    # Frame 1: "hum" is new (appended after "temp"), temp's last_seq 3.
    st = f1.statement
    assert struct.unpack_from("<QQQQI", st, 24) == (7, 41, 3, 5, 2)
    assert st[120:152] == hashes[0] and st[152:184] == hashes[1]
    assert struct.unpack_from("<QQQQQ", st, 216) == (5, 53, 5, 20, 6)
    assert struct.unpack_from("<III", st, 264) == (13, 14, 15)
    tables_after_f1 = bytes([1, 3, 1, 4, 3, 7]) + b"edgelog" + bytes([10, 4]) + b"temp" \
        + bytes([3, 3]) + b"hum" + bytes([1])
    assert st[280:312] == hashlib.sha256(tables_after_f1).digest()

    # Frame 2: no records (first and last mono 0), the state carried.
    st = f2.statement
    assert struct.unpack_from("<QQQQI", st, 24) == (7, 42, 0, 0, 0)
    assert st[120:152] == hashes[1] and st[152:184] == hashes[2]
    assert struct.unpack_from("<QQQQQ", st, 216) == (5, 53, 5, 20, 6)
    assert st[280:312] == hashlib.sha256(tables_after_f1).digest()

    # Every byte, against the statement built field by field.
    after0 = dict(mono_hwm=2, records_total=51, lost_total=5, dropped_total=11,
                  uplink_cursor=6, bo_event=13, ecc_err_cnt=14, clock_steps=15,
                  bad_slots=[(3, 1, 4)], sources=[(b"edgelog", 10), (b"temp", 2)])
    after1 = dict(after0, mono_hwm=5, records_total=53, dropped_total=20,
                  sources=[(b"edgelog", 10), (b"temp", 3), (b"hum", 1)])
    assert f0.statement == s6_statement(h, 40, 1, 2, 2, S6_PREV, hashes[0], after0, header)
    assert f1.statement == s6_statement(h, 41, 3, 5, 2, hashes[0], hashes[1], after1, header)
    assert f2.statement == s6_statement(h, 42, 0, 0, 0, hashes[1], hashes[2], after1, header)


def test_segment_tables_unchanged_hash_the_header_tables():
    """A frame that names no new source and moves no last_seq: tables_hash
    is the SHA-256 of the header's own tables bytes (the re-encoding is the
    same shortest-form encoding)."""
    h = s6_hdr(sources=[(b"edgelog", 10), (b"temp", 0x1234)], bad_slots=[(300, 2, 2**40)])
    header = s6_header(h)
    slot, _ = s6_slot(header, [s6_frame(b"", 0, 0)])
    w = s6_walk(slot)
    assert len(w.frames) == 1
    tables = header[248:248 + struct.unpack_from("<I", header, 244)[0]]
    assert w.frames[0].statement[280:312] == hashlib.sha256(tables).digest()
    assert dec.encode_tables(w.header.tables) == tables


def test_segment_known_source_last_seq_moves_in_place_and_is_the_last_seq():
    h = s6_hdr(sources=[(b"edgelog", 10), (b"temp", 7), (b"x", 1)])
    header = s6_header(h)
    recs = [Rec(b"temp", 9, 1, 0, 0), Rec(b"new", 4, 2, 0, 0), Rec(b"temp", 8, 3, 0, 0)]
    block = Enc().block(recs)
    slot, _ = s6_slot(header, [s6_frame(block, 3, len(block))])
    w = s6_walk(slot)
    assert w.frames[0].state.tables.sources == [[b"edgelog", 10], [b"temp", 8], [b"x", 1],
                                                [b"new", 4]]
    assert w.frames[0].state.records_total == 53


def test_segment_signed_frames_print_their_signature():
    h, header, frames, _, slot, offsets = hand_segment(sig_alg=1, key_src=1, sig_len=64,
                                                       key_id=S6_KEY_ID, key_epoch=2)
    w = s6_walk(slot)
    assert len(w.frames) == 3 and w.end_reason == "blank"
    for f, raw in zip(w.frames, frames):
        assert f.signature == bytes(range(64))
        assert f.frame_hash == hashlib.sha256(raw[:-68]).digest()   # signature excluded
        assert f.statement[60:64] == struct.pack("<I", 2)
        assert f.statement[64:80] == S6_KEY_ID
        assert f.statement[184:188] == bytes([1, 1, 64, 0])
    # The CRC covers the signature.
    bad = bytearray(slot)
    bad[offsets[1] + len(frames[1]) - 5] ^= 1
    assert s6_ends(bytes(bad)) == (1, offsets[1], "crc_mismatch")


def test_segment_4096_byte_sectors():
    h = s6_hdr(header_len=4096)
    header = s6_header(h)
    f0, f1 = s6_frame(HAND_BLOCK, 2, 30), s6_frame(b"", 0, 0)
    slot, offsets = s6_slot(header, [f0, f1], sector=4096, size=16384)
    assert offsets == [4096, 8192]
    assert s6_ends(slot, 4096) == (2, 12288, "blank")
    # The same frames 512 bytes apart are not on 4096-byte sector boundaries.
    slot, _ = s6_slot(header, [f0, f1], sector=512, size=16384)
    assert s6_ends(slot, 4096) == (1, 8192, "blank")


def test_segment_frame_ending_on_a_boundary_and_slot_end():
    header = s6_header(s6_hdr())
    # A frame of exactly 512 bytes: the next starts right after it.
    for n in range(400, 512):
        block = Enc().block([Rec(b"temp", 1, 1, 0, 0, payload=b"x" * n)])
        f = s6_frame(block, 1, len(block))
        if len(f) == 512:
            break
    assert len(f) == 512
    slot, offsets = s6_slot(header, [f, s6_frame(b"", 0, 0)], size=2048)
    assert offsets == [512, 1024]
    assert s6_ends(slot) == (2, 1536, "blank")
    # Frames up to the last sector: the walk ends at "slot_end".
    slot, offsets = s6_slot(header, [s6_frame(b"", 0, 0)] * 3, size=2048)
    assert s6_ends(slot) == (3, 2048, "slot_end")
    # A header filling the slot: no sector for a frame.
    header = s6_header(s6_hdr(header_len=2048))
    assert s6_ends(s6_slot(header, [], size=2048)[0]) == (0, 2048, "slot_end")


def test_segment_header_with_no_frame():
    slot, _ = s6_slot(s6_header(s6_hdr()), [])
    w = s6_walk(slot)
    assert (w.frames, w.end_offset, w.end_reason) == ([], 512, "blank")


# --- A.5 header validity -----------------------------------------------------

def header_error(slot, sector=512, uuid=None):
    with pytest.raises(dec.SegmentError) as info:
        dec.walk_segment(slot, sector, uuid)
    return info.value.reason


def with_frame(header, size=4096):
    return s6_slot(header, [s6_frame(HAND_BLOCK, 2, 30)], size=size)[0][:size]


@pytest.mark.parametrize("kw, reason", [
    (dict(magic=b"EDGELOGM"), "bad_magic"),
    (dict(magic=b"edgelogs"), "bad_magic"),
    (dict(format_version=5), "format_version"),
    (dict(format_version=7), "format_version"),
    (dict(header_len=768), "header_len"),              # not a multiple of 512
    (dict(header_len=8192), "header_len"),             # past a 4096-byte slot
    (dict(crc=0), "crc_mismatch"),
    (dict(pad=b"\x01", crc=None), None),               # padding is covered by the CRC only
    (dict(tables_len=512 - 252 + 1), "tables_len"),
    (dict(tables_len=10), "tables"),                   # one byte short of the tables
    (dict(tables_len=12), "tables"),                   # a byte after them
    (dict(sig_alg=4), "sig_alg"),
    (dict(sig_alg=255, sig_len=0), "sig_alg"),
    (dict(sig_alg=1, sig_len=32), "sig_len"),
    (dict(sig_alg=2, sig_len=0), "sig_len"),
    (dict(sig_alg=3, sig_len=64), "sig_len"),
    (dict(sig_alg=0, sig_len=32), "sig_len"),
])
def test_segment_header_validity_rules(kw, reason):
    header = s6_header(s6_hdr(**kw))
    if reason is None:
        assert len(dec.walk_segment(with_frame(header), 512).frames) == 1
    else:
        assert header_error(with_frame(header)) == reason


def test_segment_header_len_zero_and_sector_size():
    header = bytearray(s6_header(s6_hdr()))
    struct.pack_into("<I", header, 12, 0)
    assert header_error(with_frame(bytes(header))) == "header_len"
    # 512 is a multiple of 512, not of 4096.
    assert header_error(with_frame(s6_header(s6_hdr())), 4096) == "header_len"
    # The header may fill the slot exactly.
    header = s6_header(s6_hdr(header_len=4096))
    assert dec.walk_segment(header, 512).end_reason == "slot_end"
    assert dec.walk_segment(header, 4096).end_reason == "slot_end"


def test_segment_header_crc_covers_every_byte_up_to_it():
    header = s6_header(s6_hdr())
    for off in (0x0B, 100, 247, 250, 300, 507):      # reserved, fields, tables, padding
        bad = bytearray(header)
        bad[off] ^= 0x40
        assert header_error(with_frame(bytes(bad))) == "crc_mismatch", off
    bad = bytearray(header)
    bad[508] ^= 1                                      # header_crc itself
    assert header_error(with_frame(bytes(bad))) == "crc_mismatch"


def test_segment_header_reserved_and_key_src_not_checked():
    header = s6_header(s6_hdr(reserved=0xFFFF, key_src=200))
    w = dec.walk_segment(with_frame(header), 512)
    assert w.header.key_src == 200 and len(w.frames) == 1


def test_segment_tables_may_fill_the_header_exactly():
    # 248 + tables_len == header_len - 4: 260 bytes of tables in a 512-byte header.
    sources = [(bytes([0x61 + i]) * 39, 1) for i in range(6)] + [(b"k" * 10, 1)]
    tables = s6_tables([], sources)
    assert len(tables) == 260
    header = s6_header(s6_hdr(sources=sources, bad_slots=[]))
    assert len(dec.walk_segment(with_frame(header), 512).frames) == 1


@pytest.mark.parametrize("tables, ok", [
    (s6_tables([(i, 1, i) for i in range(64)], []), True),
    (s6_tables([(i, 1, i) for i in range(65)], []), False),      # 65 bad slots
    (s6_tables([(0, 2, 1), (1, 3, 1)], []), True),
    (s6_tables([(0, 0, 1)], []), False),                          # reason 0
    (s6_tables([(0, 4, 1)], []), False),                          # reason 4
    (s6_tables([(2**32 - 1, 1, 2**64 - 1)], []), True),
    (s6_tables([(2**32, 1, 1)], []), False),                      # slot past u32
    (bytes([0x80, 0x00, 0x00]), False),                           # count not shortest
    (bytes([0x00, 0x80]), False),                                 # count runs past the end
    (s6_tables([], [(b"a", 2**62 - 1)]), True),
    (s6_tables([], [(b"a", 2**62)]), False),                      # last_seq bound
    (s6_tables([], [(b"-a", 1)]), False),                         # name starts with '-'
    (s6_tables([], [(b"a b", 1)]), False),                        # a space
    (s6_tables([], [(b"a" * 39, 1)]), True),
    (s6_tables([], [(b"a" * 40, 1)]), False),                     # name_len 40
    (bytes([0x00, 0x01, 0x00, 0x00]), False),                     # name_len 0
    (s6_tables([], [(b"a", 1), (b"a", 2)]), False),               # a name twice
    (s6_tables([], [(b"a", 1)])[:-1], False),                     # last_seq missing
    (s6_tables([], [(b"abc", 1)])[:4], False),                    # name cut
])
def test_segment_tables_encoding_and_limits(tables, ok):
    header = s6_header(s6_hdr(header_len=1024, tables=tables))
    slot = with_frame(header)
    if ok:
        assert len(dec.walk_segment(slot, 512).frames) == 1
    else:
        assert header_error(slot) == "tables"


def test_segment_tables_258_sources_accepted_259_refused():
    srcs = [(b"s%d" % i, i) for i in range(259)]
    header = s6_header(s6_hdr(header_len=2048, sources=srcs[:258]))
    w = dec.walk_segment(with_frame(header), 512)
    assert len(w.header.tables.sources) == 258
    header = s6_header(s6_hdr(header_len=2048, sources=srcs))
    assert header_error(with_frame(header)) == "tables"


def test_segment_store_uuid_is_the_stores_when_given():
    slot = with_frame(s6_header(s6_hdr()))
    assert len(dec.walk_segment(slot, 512, S6_UUID).frames) == 1
    assert header_error(slot, 512, UUID) == "store_uuid"


def test_segment_slot_not_whole_sectors():
    slot = with_frame(s6_header(s6_hdr()))
    assert header_error(slot[:-1]) == "slot_size"
    assert header_error(b"") == "slot_size"
    assert header_error(slot[:2048], 4096) == "slot_size"


def test_segment_hostile_headers_never_crash():
    header = s6_header(s6_hdr())
    for cut in (0, 7, 8, 9, 12, 15, 16, 100, 248):
        with pytest.raises(dec.SegmentError):
            dec.parse_segment_header(header[:cut], 512)
    for off in range(0, 512, 3):
        bad = bytearray(with_frame(header))
        bad[off] ^= 0xFF
        try:
            dec.walk_segment(bytes(bad), 512)
        except dec.SegmentError:
            pass


# --- A.6 frames: each reason ends the walk at that frame --------------------

def two_frames(second, first=None, **hkw):
    """A slot with a good frame 0 and `second` after it; returns the slot and
    frame 1's offset."""
    header = s6_header(s6_hdr(**hkw))
    first = first if first is not None else s6_frame(HAND_BLOCK, 2, 30)
    slot, offsets = s6_slot(header, [first, second])
    return slot, offsets[1]


B1 = Enc()
B1.block(HAND_RECS)
F1_BLOCK = B1.block(HAND_F1)


@pytest.mark.parametrize("second, reason", [
    (s6_frame(F1_BLOCK, 2, len(F1_BLOCK), magic=b"EG"), "bad_magic"),
    (s6_frame(F1_BLOCK, 2, len(F1_BLOCK), magic=b"FE"), "bad_magic"),
    (b"\x00" * 100 + b"\x01", "bad_magic"),                        # not blank, not a frame
    (s6_frame(F1_BLOCK, 2, len(F1_BLOCK), flags=0x04), "flags"),
    (s6_frame(F1_BLOCK, 2, len(F1_BLOCK), flags=0x80), "flags"),
    (s6_frame(F1_BLOCK, 2, len(F1_BLOCK), raw_frame_len=b"\xc0\x80\x00"), "frame_len"),
    (s6_frame(b"", 0, 0, frame_len=6), "frame_len"),               # shorter than its fields + CRC
    (s6_frame(F1_BLOCK, 2, len(F1_BLOCK), frame_len=4096), "frame_len"),   # past the slot
    (s6_frame(F1_BLOCK, 2, len(F1_BLOCK), bad_crc=True), "crc_mismatch"),
    (s6_frame(F1_BLOCK, 2, len(F1_BLOCK), uuid=UUID), "crc_mismatch"),     # another store
    (s6_frame(F1_BLOCK, 2, len(F1_BLOCK), seg_id=6), "crc_mismatch"),      # an older lap
    (s6_frame(b"", 0, 0, raw_counts=enc_varint(2**32) + b"\x00"), "record_count"),
    (s6_frame(b"", 0, 0, raw_counts=b"\x80\x00\x00"), "record_count"),
    (s6_frame(b"", 0, 0, raw_counts=b"\x00\x80\x00"), "block_len"),
    (s6_frame(b"", 0, 0, raw_counts=b"\x00"), "block_len"),         # runs into the CRC
    (s6_frame(b"", 0, 0, state=[]), "state"),                       # n 0
    (s6_frame(b"", 0, 0, raw_state=enc_varint(17) + b"".join(
        bytes([i]) + b"\x7f" for i in range(1, 18))), "state"),     # n 17
    (s6_frame(b"", 0, 0, state=[(2, 20), (1, 5)]), "state"),        # ids decreasing
    (s6_frame(b"", 0, 0, state=[(2, 20), (2, 20)]), "state"),       # an id twice
    (s6_frame(b"", 0, 0, state=[(0, 5)]), "state"),                 # id 0
    (s6_frame(b"", 0, 0, state=[(7, 5)]), "state"),                 # id 7
    (s6_frame(b"", 0, 0, state=[(1, 3)]), "state"),                 # lost_total 4 -> 3
    (s6_frame(b"", 0, 0, state=[(3, 5)]), "state"),                 # uplink_cursor 6 -> 5
    (s6_frame(b"", 0, 0, state=[(4, 2**32)]), "state"),             # bo_event past u32
    (s6_frame(b"", 0, 0, raw_state=b"\x02\x01\x05\x02"), "state"),  # pair 2 has no value
    (s6_frame(b"", 0, 0, raw_state=b"\x01\x01\x80\x00"), "state"),  # value not shortest
    (s6_frame(F1_BLOCK, 2, len(F1_BLOCK) - 1), "block_len"),        # stored, block_len wrong
    (s6_frame(deflate(F1_BLOCK, F1_BLOCK * 2), 2, len(F1_BLOCK), deflate_=True),
     "block"),                                                      # another dictionary
    (s6_frame(deflate(F1_BLOCK, HAND_BLOCK), 3, len(F1_BLOCK), deflate_=True), "block"),
    (s6_frame(deflate(F1_BLOCK, HAND_BLOCK), 2, len(F1_BLOCK) + 1, deflate_=True), "block"),
    (s6_frame(deflate(F1_BLOCK, HAND_BLOCK) + b"\x00", 2, len(F1_BLOCK), deflate_=True),
     "block"),
    (s6_frame(HAND_BLOCK, 2, 30), "block"),         # redefines "temp": not valid after frame 0
    (s6_frame(deflate(F1_BLOCK, HAND_BLOCK), 2, 2**64 - 1, deflate_=True), "block_len"),
    (s6_frame(F1_BLOCK, 2, 2**64 - 1), "block_len"),
    (s6_frame(F1_BLOCK, 2, 16 << 20 | 1), "block_len"),                # above 16 MiB
    (s6_frame(F1_BLOCK, 40, len(F1_BLOCK)), "block_len"),             # under 7 bytes a record
])
def test_segment_frame_failure_ends_the_walk_there(second, reason):
    slot, at = two_frames(second)
    assert s6_ends(slot) == (1, at, reason)
    # The same bytes as the first frame end the walk at the header.
    if reason not in ("block",):
        header = s6_header(s6_hdr())
        slot, offsets = s6_slot(header, [second])
        assert s6_ends(slot)[1:] == (512, reason)


def test_segment_block_budget_is_checked_before_inflating():
    """A.6: a segment's frames hold at most 8 x segment_size of record block
    together. In a 4096-byte slot frame 0 takes 30 of the 32768; a frame 1
    claiming one byte more than the rest ends the walk with block_len (before
    anything inflates), one claiming exactly the rest is read on and fails to
    inflate to it (block)."""
    left = 8 * 4096 - 30
    stored = deflate(F1_BLOCK, HAND_BLOCK)
    slot, at = two_frames(s6_frame(stored, 2, left + 1, deflate_=True))
    assert s6_ends(slot) == (1, at, "block_len")
    assert "budget" in s6_walk(slot).end_detail
    slot, at = two_frames(s6_frame(stored, 2, left, deflate_=True))
    assert s6_ends(slot) == (1, at, "block")
    # In a slot twice the size the budget doubles, and the same claim is read on.
    header = s6_header(s6_hdr())
    slot, offsets = s6_slot(header, [s6_frame(HAND_BLOCK, 2, 30),
                                     s6_frame(stored, 2, left + 1, deflate_=True)], size=8192)
    assert s6_ends(slot) == (1, offsets[1], "block")


def test_segment_good_second_frame_of_the_failure_table_passes():
    """The good frame each failing case above was made from."""
    slot, at = two_frames(s6_frame(deflate(F1_BLOCK, HAND_BLOCK), 2, len(F1_BLOCK),
                                   deflate_=True, state=[(1, 4), (3, 6), (4, 2**32 - 1)]))
    w = s6_walk(slot)
    assert len(w.frames) == 2 and w.end_reason == "blank"
    assert w.frames[1].state.bo_event == 2**32 - 1


def test_segment_no_frame_after_a_failed_one_is_taken():
    """Frame 1 is not valid (its block does not decode); frame 2 after it
    is a good frame but the walk has stopped."""
    header = s6_header(s6_hdr())
    f0 = s6_frame(HAND_BLOCK, 2, 30)
    f1 = s6_frame(F1_BLOCK, 3, len(F1_BLOCK))
    f2 = s6_frame(b"", 0, 0)
    slot, offsets = s6_slot(header, [f0, f1, f2])
    assert s6_ends(slot) == (1, offsets[1], "block")


def test_segment_frame_from_an_older_lap_is_not_taken():
    """The slot held segment 3 (3 frames); segment 7 was written over its
    first sectors with one frame.  The old frame 1 after it has every field
    right but its CRC is seeded with segment 3."""
    old_h = s6_hdr(segment_id=3, first_frame_id=10)
    frames = [s6_frame(b"", 0, 0, seg_id=3)] * 3
    old, old_offsets = s6_slot(s6_header(old_h), frames)
    assert s6_ends(old) == (3, 2048, "blank")
    new, offsets = s6_slot(s6_header(s6_hdr()), [s6_frame(b"", 0, 0)], base=old)
    assert offsets == [512] and new[1024:1536] == old[1024:1536]
    w = s6_walk(new)
    assert (len(w.frames), w.end_offset, w.end_reason) == (1, 1024, "crc_mismatch")
    assert w.frames[0].frame_id == 40


def test_segment_torn_last_frame_is_a_normal_end(tmp_path):
    header = s6_header(s6_hdr())
    recs = [Rec(b"temp", 3, 3, 2000, 1501, payload=bytes(range(256)) * 3)]
    enc = Enc()
    enc.block(HAND_RECS)
    big = enc.block(recs)
    f0 = s6_frame(HAND_BLOCK, 2, 30)
    f1 = s6_frame(big, 1, len(big))
    slot, offsets = s6_slot(header, [f0, f1])
    assert len(f1) > 512
    assert s6_ends(slot) == (2, 2048, "blank")
    # Only the first sector of frame 1 reached the medium.
    torn = slot[:1536] + bytes(len(slot) - 1536)
    assert s6_ends(torn) == (1, 1024, "crc_mismatch")
    # Only its last sector did (its first still holds zeros).
    torn = slot[:1024] + bytes(512) + slot[1536:]
    assert s6_ends(torn) == (1, 1024, "blank")
    code, lines, _ = run_segment(tmp_path, torn)
    assert code == 0 and lines[-1] == {"kind": "end", "offset": 1024, "frames": 1,
                                       "reason": "blank"}


def test_segment_state_values_carry_from_frame_to_frame():
    header = s6_header(s6_hdr())
    f0 = s6_frame(b"", 0, 0, state=[(1, 8), (5, 20)])
    f1 = s6_frame(b"", 0, 0, state=[(1, 8), (5, 19)])       # ecc_err_cnt 20 -> 19
    slot, offsets = s6_slot(header, [f0, f1])
    assert s6_ends(slot) == (1, offsets[1], "state")
    f1 = s6_frame(b"", 0, 0, state=[(1, 8), (5, 20)])
    slot, offsets = s6_slot(header, [f0, f1])
    w = s6_walk(slot)
    assert len(w.frames) == 2
    assert struct.unpack_from("<Q", w.frames[1].statement, 232)[0] == 8
    assert struct.unpack_from("<I", w.frames[1].statement, 268)[0] == 20


def test_segment_records_total_tables_and_frame_id_bounds():
    # records_total cannot pass 2^64 - 1 (HAND_BLOCK holds one type 1 record).
    slot, at = two_frames(s6_frame(b"", 0, 0), records_total=2**64 - 1)
    assert s6_ends(slot) == (0, 512, "records_total")
    slot, at = two_frames(s6_frame(b"", 0, 0), records_total=2**64 - 2)
    assert s6_ends(slot) == (2, 1536, "blank")
    # 258 sources in the tables: HAND_BLOCK's "temp" would be the 259th.
    srcs = [(b"s%d" % i, i) for i in range(258)]
    header = s6_header(s6_hdr(header_len=2048, sources=srcs))
    slot, offsets = s6_slot(header, [s6_frame(b"", 0, 0), s6_frame(HAND_BLOCK, 2, 30)])
    assert s6_ends(slot) == (1, 2560, "tables")
    # 257: "temp" is the 258th.
    header = s6_header(s6_hdr(header_len=2048, sources=srcs[:257]))
    slot, offsets = s6_slot(header, [s6_frame(b"", 0, 0), s6_frame(HAND_BLOCK, 2, 30)])
    w = s6_walk(slot)
    assert len(w.frames) == 2 and len(w.frames[1].state.tables.sources) == 258
    # The frame id is a u64: first_frame_id 2^64 - 1 has room for one frame.
    slot, at = two_frames(s6_frame(b"", 0, 0), first_frame_id=2**64 - 1)
    w = s6_walk(slot)
    assert (len(w.frames), w.end_offset, w.end_reason) == (1, at, "frame_id")
    assert w.frames[0].frame_id == 2**64 - 1


# --- CLI: --segment FILE --sector-size N -------------------------------------

HEADER_KEYS = ["kind", "segment_id", "first_frame_id", "slot_index", "wrap_count",
               "header_len", "store_uuid", "device_id", "key_id", "key_epoch", "sig_alg",
               "key_src", "sig_len", "rollback_ctr", "tail_segment_id", "tail_slot",
               "ring_slots", "mono_hwm", "records_total", "lost_total", "dropped_total",
               "uplink_cursor", "unexp_rst", "bo_event", "ecc_err_cnt", "clock_steps",
               "boot_seq", "bad_slots", "sources", "prev_hash", "header_hash"]
FRAME_KEYS = ["kind", "frame_id", "offset", "frame_len", "deflate", "record_count",
              "block_len", "state", "frame_hash", "statement", "signature"]


def run_segment(tmp_path, data, sector=512, name="slot.bin"):
    p = tmp_path / name
    p.write_bytes(data)
    out, err = io.BytesIO(), io.BytesIO()
    code = dec.main(["--segment", str(p), "--sector-size", str(sector)], out=out, err=err)
    return code, [json.loads(x) for x in out.getvalue().splitlines()], out.getvalue()


def test_segment_cli_hand_segment(tmp_path):
    h, header, frames, b1, slot, offsets = hand_segment(sig_alg=3, sig_len=32, key_src=1,
                                                       key_id=S6_KEY_ID, key_epoch=1)
    code, lines, raw = run_segment(tmp_path, slot)
    assert code == 0
    raw_lines = raw.decode().splitlines()
    assert all(", " not in x and '": ' not in x for x in raw_lines[:1])
    assert list(lines[0]) == HEADER_KEYS
    assert lines[0] == {
        "kind": "header", "segment_id": 7, "first_frame_id": 40, "slot_index": 2,
        "wrap_count": 3, "header_len": 512, "store_uuid": S6_UUID.hex(),
        "device_id": DEVICE_ID.hex(), "key_id": S6_KEY_ID.hex(), "key_epoch": 1,
        "sig_alg": 3, "key_src": 1, "sig_len": 32, "rollback_ctr": 9, "tail_segment_id": 5,
        "tail_slot": 1, "ring_slots": 6, "mono_hwm": 0, "records_total": 50, "lost_total": 4,
        "dropped_total": 11, "uplink_cursor": 6, "unexp_rst": 12, "bo_event": 13,
        "ecc_err_cnt": 14, "clock_steps": 15, "boot_seq": 16, "bad_slots": [[3, 1, 4]],
        "sources": [["edgelog", 10]], "prev_hash": S6_PREV.hex(),
        "header_hash": hashlib.sha256(header[:508]).digest().hex()}
    assert raw_lines[0].startswith('{"kind":"header","segment_id":7,"first_frame_id":40,')
    w = s6_walk(slot)
    expect = [lines[0]]
    for f, recs in zip(w.frames, [HAND_RECS, HAND_F1, []]):
        expect.append({"kind": "frame", "frame_id": f.frame_id, "offset": f.offset,
                       "frame_len": f.frame_len, "deflate": f.deflate,
                       "record_count": len(recs), "block_len": f.block_len,
                       "state": [list(p) for p in f.state_list],
                       "frame_hash": f.frame_hash.hex(), "statement": f.statement.hex(),
                       "signature": bytes(range(32)).hex()})
        expect += [r.json(f.frame_id) for r in recs]
    expect.append({"kind": "end", "offset": 2048, "frames": 3, "reason": "blank"})
    assert lines == expect
    assert [list(x) for x in lines if x.get("kind") == "frame"] == [FRAME_KEYS] * 3
    assert lines[1]["state"] == [[1, 5]] and lines[4]["state"] == [[2, 20], [6, 15]]
    assert lines[1]["deflate"] is False and lines[4]["deflate"] is True
    assert list(lines[-1]) == ["kind", "offset", "frames", "reason"]
    assert raw_lines[-1] == '{"kind":"end","offset":2048,"frames":3,"reason":"blank"}'
    # The records print as --frames prints them, "frame" being the frame id.
    assert raw_lines[2].startswith('{"frame":40,"type":1,"source":"temp","seq":1,')


def test_segment_cli_frame_failure_and_slot_end(tmp_path):
    slot, at = two_frames(s6_frame(b"", 0, 0, state=[(7, 1)]))
    code, lines, _ = run_segment(tmp_path, slot)
    assert code == 0
    assert [x.get("kind", "record") for x in lines] == ["header", "frame", "record",
                                                         "record", "end"]
    assert lines[-1] == {"kind": "end", "offset": at, "frames": 1, "reason": "state"}
    header = s6_header(s6_hdr(header_len=2048))
    code, lines, _ = run_segment(tmp_path, header, sector=512)
    assert code == 0 and lines[-1] == {"kind": "end", "offset": 2048, "frames": 0,
                                       "reason": "slot_end"}


@pytest.mark.parametrize("kw, reason", [
    (dict(magic=b"EDGELOGX"), "bad_magic"),
    (dict(format_version=5), "format_version"),
    (dict(header_len=1536), "header_len"),          # a multiple of 512, not of 4096
    (dict(crc=1), "crc_mismatch"),
    (dict(sig_alg=1, sig_len=0), "sig_len"),
])
def test_segment_cli_header_error_exit_1(tmp_path, kw, reason):
    slot = s6_slot(s6_header(s6_hdr(**dict(dict(header_len=4096), **kw))), [], sector=4096,
                   size=8192)[0]
    code, lines, raw = run_segment(tmp_path, slot, sector=4096)
    assert code == 1
    assert lines == [{"kind": "error", "reason": reason}]
    assert raw == b'{"kind":"error","reason":"%s"}\n' % reason.encode()


def test_segment_cli_store_uuid_is_not_checked(tmp_path):
    # Frames are seeded with the header's own store_uuid.
    header = s6_header(s6_hdr(store_uuid=UUID))
    slot, _ = s6_slot(header, [s6_frame(HAND_BLOCK, 2, 30, uuid=UUID)])
    code, lines, _ = run_segment(tmp_path, slot)
    assert code == 0 and lines[0]["store_uuid"] == UUID.hex() and lines[-1]["frames"] == 1


def test_segment_cli_subprocess_and_usage(tmp_path):
    _, _, _, _, slot, _ = hand_segment()
    p = tmp_path / "slot.bin"
    p.write_bytes(slot)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--segment", str(p),
                           "--sector-size", "512"], capture_output=True)
    assert proc.returncode == 0 and proc.stderr == b""
    assert proc.stdout.count(b"\n") == 1 + 3 + 4 + 1
    # A header that is not valid: exit 1, the detail on stderr.
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x00" * 4096)
    proc = subprocess.run([sys.executable, str(SCRIPT), "--segment", str(bad),
                           "--sector-size", "4096"], capture_output=True)
    assert proc.returncode == 1 and proc.stdout == b'{"kind":"error","reason":"bad_magic"}\n'
    assert b"bad_magic" in proc.stderr
    for args in (["--segment", str(p)],                        # no --sector-size
                 ["--sector-size", "512"],                     # no --segment
                 ["--segment", str(p), "--sector-size", "1024"],
                 ["--segment", str(p), "--sector-size", "512", str(p)],
                 ["--segment", str(p), "--sector-size", "512", "--frames", str(p)],
                 ["--segment", str(p), "--sector-size", "512", "--inspect"]):
        proc = subprocess.run([sys.executable, str(SCRIPT)] + args, capture_output=True)
        assert proc.returncode == 2, args
    proc = subprocess.run([sys.executable, str(SCRIPT), "--segment", str(tmp_path / "none"),
                           "--sector-size", "512"], capture_output=True)
    assert proc.returncode == 2 and b"cannot open" in proc.stderr


def test_segment_hostile_frames_never_crash():
    """Every byte of the hand segment's frame 1 changed, its CRC made right
    again: the walk ends with a reason or takes the frame, never raises."""
    h, header, frames, _, slot, offsets = hand_segment()
    at, n = offsets[1], len(frames[1])
    reasons = set()
    for i in range(n - 4):
        for x in (0x01, 0x80, 0xFF):
            bad = bytearray(slot)
            bad[at + i] ^= x
            c = crc(S6_UUID + struct.pack("<Q", 7) + bytes(bad[at:at + n - 4]))
            struct.pack_into("<I", bad, at + n - 4, c)
            w = dec.walk_segment(bytes(bad), 512)
            assert len(w.frames) >= 1
            reasons.add(w.end_reason)
    assert {"bad_magic", "flags", "state", "block"} <= reasons


def test_segment_hostile_tables_never_crash():
    tables = s6_tables([(3, 1, 4)], [(b"edgelog", 10), (b"temp", 300)])
    for i in range(len(tables)):
        for x in (0x01, 0x80, 0xFF):
            bad = bytearray(tables)
            bad[i] ^= x
            header = s6_header(s6_hdr(tables=bytes(bad)))
            try:
                dec.walk_segment(with_frame(header), 512)
            except dec.SegmentError as exc:
                assert exc.reason == "tables"


# ===========================================================================
# Format 6: a whole store (FORMAT.md A.8, A.9): --packed-store
#
# The builder below is written from A.8 (the partition and the metadata
# slot, each field packed at its documented offset) and reuses the A.5/A.6
# segment encoder above: segments are written whole into ring slots, each
# chained onto the frame before it (first_frame_id, prev_hash), and metadata
# slots name a head frame by id, segment, slot, offset, frame_crc and
# frame_hash (SHA-256 of the frame's bytes from magic to the end of stored:
# the frames here are unsigned, so all but the last 4 bytes).
# ===========================================================================

P_SECTOR = 512
P_SEG = 8192
P_SLOTS = 5
P_RING = 32768
P_W = 1_700_000_000_000_000_000

# (offset, struct format, name) of A.8's metadata fields.
P_META_FIELDS = [
    (0, "8s", "magic"), (8, "<H", "format_version"), (10, "<H", "reserved"),
    (12, "<I", "meta_len"), (16, "16s", "store_uuid"), (32, "<Q", "generation"),
    (40, "<Q", "store_size"), (48, "<I", "sector_size"), (52, "<I", "segment_size"),
    (56, "<I", "ring_slots"), (60, "<I", "clean_flag"), (64, "<Q", "head_frame_id"),
    (72, "<Q", "head_segment_id"), (80, "<I", "head_slot"), (84, "<I", "head_offset"),
    (88, "32s", "hash_head"), (120, "<I", "head_crc"), (124, "<I", "wrap_count"),
    (128, "<Q", "tail_segment_id"), (136, "<I", "tail_slot"), (140, "<I", "unexp_rst"),
    (144, "<Q", "rollback_ctr"), (152, "<Q", "mono_hwm"), (160, "<Q", "records_total"),
    (168, "<Q", "lost_total"), (176, "<Q", "dropped_total"), (184, "<Q", "uplink_cursor"),
    (192, "<I", "bo_event"), (196, "<I", "ecc_err_cnt"), (200, "<I", "clock_steps"),
    (204, "<I", "boot_seq"), (208, "16s", "device_id"), (224, "<q", "format_wall_ns"),
    (232, "16s", "boot_id"), (248, "<I", "verify_stat"), (252, "<B", "rtc_state"),
    (256, "<Q", "largest_step_ns"), (264, "<Q", "unsync_ns"), (272, "<q", "last_sync_wall_ns"),
    (280, "<q", "rtc_offset_ns"), (288, "<q", "last_offset_ns"),
    (508, "<I", "tables_len"),
]


def p_meta(**kw):
    """A metadata slot's fields (A.8), every one distinct where it can be."""
    m = dict(magic=b"EDGELOGM", format_version=6, reserved=0, meta_len=1024,
             store_uuid=S6_UUID, generation=2, store_size=P_RING + P_SLOTS * P_SEG,
             sector_size=P_SECTOR, segment_size=P_SEG, ring_slots=P_SLOTS, clean_flag=0,
             head_frame_id=0, head_segment_id=0, head_slot=0, head_offset=0,
             hash_head=bytes(32), head_crc=0, wrap_count=0, tail_segment_id=1, tail_slot=0,
             unexp_rst=3, rollback_ctr=4, mono_hwm=0, records_total=0, lost_total=0,
             dropped_total=5, uplink_cursor=1, bo_event=6, ecc_err_cnt=7, clock_steps=8,
             boot_seq=9, device_id=DEVICE_ID, format_wall_ns=-5, boot_id=bytes(range(16)),
             verify_stat=10, rtc_state=1, largest_step_ns=11, unsync_ns=12,
             last_sync_wall_ns=-13, rtc_offset_ns=-14, last_offset_ns=15, bad_slots=[],
             sources=[], tables=None, tables_len=None, crc=None)
    m.update(kw)
    return m


def p_meta_bytes(m):
    """The slot's first meta_len bytes: the fields, the tables at 512, the CRC
    of bytes 0 .. meta_len - 5 in the last 4."""
    tables = m["tables"] if m["tables"] is not None else s6_tables(m["bad_slots"], m["sources"])
    out = bytearray(m["meta_len"])
    vals = dict(m, tables_len=len(tables) if m["tables_len"] is None else m["tables_len"])
    for off, fmt, name in P_META_FIELDS:
        struct.pack_into(fmt, out, off, vals[name])
    out[512:512 + len(tables)] = tables
    c = crc(bytes(out[:-4])) if m["crc"] is None else m["crc"]
    struct.pack_into("<I", out, len(out) - 4, c)
    return bytes(out)


class PStore:
    """A format 6 store image (A.8) built segment by segment."""

    def __init__(self, slots=P_SLOTS, seg=P_SEG, sector=P_SECTOR):
        self.slots, self.seg, self.sector = slots, seg, sector
        self.img = bytearray(P_RING + slots * seg)
        self.frames = {}            # frame_id -> what a metadata slot names it by
        self.last_hash = bytes(32)
        self.next_frame = self.next_seg = 1
        self.mono = self.seq = self.records_total = self.lost_total = 0
        self.tail = (1, 0)
        self.wrap = 0

    def slot_off(self, slot):
        return P_RING + slot * self.seg

    def segment(self, slot, counts, *, tail=None, wrap=None, bad_slots=(), keep=False,
                **hkw):
        """Write the next segment into `slot`: one frame per entry of `counts`
        (its record count, or (count, lost_total) to set lost_total with a
        state list); odd frames deflated against the frame before.  `keep`:
        written over what the slot holds (an older lap), else over zeros.
        `hkw` replaces header fields (then the chain is what they say)."""
        if tail is not None:
            self.tail = tail
        if wrap is not None:
            self.wrap = wrap
        seg_id = hkw.pop("segment_id", self.next_seg)
        h = s6_hdr(store_uuid=S6_UUID, segment_id=seg_id, first_frame_id=self.next_frame,
                   slot_index=slot, wrap_count=self.wrap, prev_hash=self.last_hash,
                   tail_segment_id=self.tail[0], tail_slot=self.tail[1],
                   ring_slots=self.slots, mono_hwm=self.mono,
                   records_total=self.records_total, lost_total=self.lost_total,
                   dropped_total=0, uplink_cursor=1, bo_event=0, ecc_err_cnt=0,
                   clock_steps=0, bad_slots=list(bad_slots), sources=[],
                   header_len=self.sector)
        h.update(hkw)
        frame_id = h["first_frame_id"]
        enc, prev_block, frames, infos = Enc(), b"", [], []
        for i, c in enumerate(counts):
            n, lost = c if isinstance(c, tuple) else (c, None)
            recs = []
            for _ in range(n):
                self.seq += 1
                self.mono += 1
                recs.append(Rec(b"temp", self.seq, self.mono, P_W + self.mono * 1000,
                                self.mono * 1000, payload=b'{"n":%d}' % self.seq))
            block = enc.block(recs)
            state = [(1, lost)] if lost is not None else None
            if i % 2:
                f = s6_frame(deflate(block, prev_block), n, len(block), deflate_=True,
                             state=state, seg_id=seg_id, uuid=h["store_uuid"])
            else:
                f = s6_frame(block, n, len(block), state=state, seg_id=seg_id,
                             uuid=h["store_uuid"])
            prev_block = block
            frames.append(f)
            self.records_total += n
            if lost is not None:
                self.lost_total = lost
            infos.append(dict(frame_id=frame_id, segment_id=seg_id, slot=slot,
                              hash=hashlib.sha256(f[:-4]).digest(),
                              crc=struct.unpack("<I", f[-4:])[0], recs=recs,
                              records_total=self.records_total,
                              lost_total=self.lost_total, mono=self.mono))
            self.last_hash = infos[-1]["hash"]
            frame_id += 1
        off = self.slot_off(slot)
        base = bytes(self.img[off:off + self.seg]) if keep else None
        data, offsets = s6_slot(s6_header(h), frames, sector=self.sector, size=self.seg,
                                base=base)
        for info, o in zip(infos, offsets):
            info["offset"] = o
            self.frames[info["frame_id"]] = info
        self.img[off:off + self.seg] = data
        self.next_frame = frame_id
        self.next_seg = seg_id + 1
        return infos

    def meta(self, generation, head=0, slot=None, **kw):
        """Write a metadata slot (even generations in A, odd in B) naming
        frame `head` (0: none) and the builder's tail and wrap_count."""
        f = self.frames.get(head)
        fields = dict(generation=generation, store_size=len(self.img), ring_slots=self.slots,
                      segment_size=self.seg, sector_size=self.sector,
                      meta_len=max(1024, self.sector), head_frame_id=head,
                      tail_segment_id=self.tail[0], tail_slot=self.tail[1],
                      wrap_count=self.wrap)
        if f is not None:
            fields.update(head_segment_id=f["segment_id"], head_slot=f["slot"],
                          head_offset=f["offset"], hash_head=f["hash"], head_crc=f["crc"],
                          records_total=f["records_total"], lost_total=f["lost_total"],
                          mono_hwm=f["mono"])
        fields.update(kw)
        m = p_meta(**fields)
        name = slot if slot is not None else "AB"[generation % 2]
        off = {"A": 0, "B": 16384}[name]
        self.img[off:off + m["meta_len"]] = p_meta_bytes(m)
        return m

    def tear(self, frame_id, keep=1):
        """Leave only the first `keep` sectors of a frame on the medium (the
        rest zero): a commit cut by a power cut."""
        f = self.frames[frame_id]
        start = self.slot_off(f["slot"]) + f["offset"] + keep * self.sector
        end = self.slot_off(f["slot"]) + self.seg
        self.img[start:end] = bytes(end - start)

    def flip(self, slot, offset):
        self.img[self.slot_off(slot) + offset] ^= 0x40


def p_scan(ps):
    data = ps if isinstance(ps, (bytes, bytearray)) else ps.img
    return dec.scan_packed(dec.Store(io.BytesIO(bytes(data))))


def p_summary(r):
    return dict(slot=r.meta.slot_name, head_missing=r.head_missing,
                frames_adopted=r.frames_adopted, segments_adopted=r.segments_adopted,
                torn=r.torn, head_frame_id=r.head_frame_id, head_segment_id=r.head_segment_id,
                tail_segment_id=r.tail_segment_id, tail_slot=r.tail_slot)


def p_ids(r):
    return [(c.segment_id, c.frame.frame_id) for c in r.committed]


def p_run(tmp_path, ps, name="store.img"):
    p = tmp_path / name
    p.write_bytes(bytes(ps.img if isinstance(ps, PStore) else ps))
    out, err = io.BytesIO(), io.BytesIO()
    code = dec.main(["--packed-store", str(p)], out=out, err=err)
    return code, [json.loads(x) for x in out.getvalue().splitlines()], out.getvalue()


def p_expected_frames(ps, ids):
    lines = []
    for i in ids:
        f = ps.frames[i]
        lines.append({"kind": "frame", "segment_id": f["segment_id"], "frame_id": i,
                      "records": len(f["recs"])})
        lines += [r.json(i) for r in f["recs"]]
    return lines


# --- A.8 the metadata slot ----------------------------------------------------

def p_parse(m, image_size=None):
    return dec.parse_metadata6(p_meta_bytes(m), "A", image_size)


def p_meta_error(m, image_size=None):
    with pytest.raises(dec.MetaError) as info:
        p_parse(m, image_size)
    return info.value.reason


def test_packed_metadata_fields_each_from_their_own_offset():
    m = p_meta(meta_len=1536, generation=0x0102030405, store_size=P_RING + 7 * P_SEG + 100,
               ring_slots=7, clean_flag=1, head_frame_id=0x1112131415,
               head_segment_id=0x212223, head_slot=5, head_offset=0x1132,
               hash_head=bytes(range(0x40, 0x60)), head_crc=0x41424344, wrap_count=0x5152,
               tail_segment_id=0x2122, tail_slot=6, unexp_rst=0x7172, rollback_ctr=0x8182,
               mono_hwm=0x9192, records_total=0xA1A2, lost_total=0xB1B2,
               dropped_total=0xC1C2, uplink_cursor=0xD1D2, bo_event=0xE1E2,
               ecc_err_cnt=0xF1F2, clock_steps=0x0A0B, boot_seq=0x0C0D,
               format_wall_ns=-123456789, bad_slots=[(2, 3, 9)],
               sources=[(b"edgelog", 4), (b"temp", 300)])
    got = p_parse(m, m["store_size"])
    for name in ("meta_len", "store_uuid", "generation", "store_size", "sector_size",
                 "segment_size", "ring_slots", "clean_flag", "head_frame_id",
                 "head_segment_id", "head_slot", "head_offset", "hash_head", "head_crc",
                 "wrap_count", "tail_segment_id", "tail_slot", "unexp_rst", "rollback_ctr",
                 "mono_hwm", "records_total", "lost_total", "dropped_total", "uplink_cursor",
                 "bo_event", "ecc_err_cnt", "clock_steps", "boot_seq", "device_id",
                 "format_wall_ns", "boot_id", "verify_stat", "rtc_state", "largest_step_ns",
                 "unsync_ns", "last_sync_wall_ns", "rtc_offset_ns", "last_offset_ns"):
        assert getattr(got, name) == m[name], name
    assert got.slot_name == "A"
    assert got.tables.bad_slots == [(2, 3, 9)]
    assert got.tables.sources == [[b"edgelog", 4], [b"temp", 300]]
    assert got.tables_len == len(s6_tables(m["bad_slots"], m["sources"]))


@pytest.mark.parametrize("kw, reason", [
    (dict(magic=b"EDGELOGS"), "bad_magic"),
    (dict(format_version=5), "format_version"),
    (dict(format_version=7), "format_version"),
    (dict(crc=1), "crc_mismatch"),
    (dict(meta_len=1024, sector_size=4096), "meta_len"),    # not a multiple of the sector
    (dict(sector_size=1024), "sector_size"),
    (dict(sector_size=0), "sector_size"),
    (dict(segment_size=4096, store_size=P_RING + 5 * 4096), "segment_size"),  # below 8192
    (dict(segment_size=8192 + 512), "segment_size"),       # not a multiple of 4096
    (dict(segment_size=(16 << 20) + 4096, store_size=P_RING + 4 * ((16 << 20) + 4096)),
     "segment_size"),
    (dict(ring_slots=3), "ring_slots"),
    (dict(ring_slots=0), "ring_slots"),
    (dict(store_size=P_RING + P_SLOTS * P_SEG - 1), "ring_size"),
    (dict(store_size=P_RING + 4 * P_SEG, ring_slots=5), "ring_size"),
    (dict(ring_slots=4), "ring_size"),                     # fewer slots than the store holds
    (dict(clean_flag=2), "clean_flag"),
    (dict(clean_flag=0xFFFFFFFF), "clean_flag"),
    (dict(rtc_state=3), "rtc_state"),
    (dict(head_slot=P_SLOTS), "head_slot"),
    (dict(tail_slot=P_SLOTS), "tail_slot"),
    (dict(tables_len=1024 - 4 - 512 + 1), "tables_len"),   # 512 + tables_len > meta_len - 4
    (dict(tables_len=2**32 - 1), "tables_len"),
    (dict(tables=b"\x00\x00\x00", tables_len=3), "tables"),     # a byte left over
    (dict(tables=b"\x00", tables_len=1), "tables"),             # no source_count
    (dict(tables=b"\x00\x00", tables_len=1), "tables"),         # tables_len short of them
    (dict(bad_slots=[(1, 4, 1)]), "tables"),                    # reason 4
    (dict(sources=[(b"a", 1), (b"a", 2)]), "tables"),           # a name twice
    (dict(sources=[(b"-a", 1)]), "tables"),                     # not a valid name
    (dict(sources=[(b"a", 2**62)]), "tables"),                  # last_seq bound
    (dict(head_frame_id=2**62), "bounds"),
    (dict(head_segment_id=2**62), "bounds"),
    (dict(tail_segment_id=2**62), "bounds"),
    (dict(rollback_ctr=2**62), "bounds"),
    (dict(mono_hwm=2**62), "bounds"),
    (dict(generation=2**62), "bounds"),
    (dict(bad_slots=[(99, 1, 1)]), "tables"),                   # outside the ring
    (dict(bad_slots=[(1, 1, 1), (1, 2, 2)]), "tables"),         # a slot twice
    (dict(unexp_rst=2**31), "bounds"),
    (dict(boot_seq=2**31), "bounds"),
    (dict(tail_segment_id=0), "bounds"),
    (dict(head_frame_id=0, head_segment_id=3), "bounds"),        # an empty store names no segment
])
def test_packed_metadata_validity_rules(kw, reason):
    assert p_meta_error(p_meta(**kw)) == reason
    assert p_parse(p_meta())  # the slot they were made from is valid


@pytest.mark.parametrize("meta_len", [0, 256, 511, 513, 1000, 16384 + 512, 2**32 - 512])
def test_packed_metadata_meta_len_bounds(meta_len):
    buf = bytearray(p_meta_bytes(p_meta(meta_len=1024)))
    struct.pack_into("<I", buf, 12, meta_len)
    with pytest.raises(dec.MetaError) as info:
        dec.parse_metadata6(bytes(buf) + bytes(16384 - len(buf)), "A")
    assert info.value.reason == "meta_len"


def test_packed_metadata_meta_len_512_has_no_room_for_the_tables():
    """A.8 allows meta_len 512, but tables_len (offset 508) and the CRC
    (meta_len - 4) then share bytes and `512 + tables_len <= meta_len - 4`
    cannot hold: such a slot is never valid."""
    out = bytearray(p_meta_bytes(p_meta())[:512])
    struct.pack_into("<I", out, 12, 512)
    struct.pack_into("<I", out, 508, crc(bytes(out[:508])))
    with pytest.raises(dec.MetaError) as info:
        dec.parse_metadata6(bytes(out), "A")
    assert info.value.reason == "tables_len"


@pytest.mark.parametrize("kw", [
    dict(meta_len=1024),
    dict(meta_len=16384),
    dict(meta_len=4096, sector_size=4096),
    dict(meta_len=16384, sector_size=4096),
    dict(segment_size=16 << 20, store_size=P_RING + 4 * (16 << 20), ring_slots=4),
    dict(segment_size=12288, store_size=P_RING + 4 * 12288, ring_slots=4),
    dict(store_size=P_RING + P_SLOTS * P_SEG + 8191),           # unused bytes after the ring
    dict(head_frame_id=2**62 - 1, head_segment_id=2**62 - 1, tail_segment_id=2**62 - 1,
         rollback_ctr=2**62 - 1, mono_hwm=2**62 - 1),
    dict(head_slot=P_SLOTS - 1, tail_slot=P_SLOTS - 1),
    dict(generation=2**62 - 1, records_total=2**64 - 1),        # generation's bound, none on records_total
    dict(generation=3),                                         # parity is not a rule
    dict(bad_slots=[(1, 1, 1)]),                                # a bad slot that is neither head nor tail
    "tables_fill_the_slot",
])
def test_packed_metadata_edges_accepted(kw):
    if kw == "tables_fill_the_slot":
        # The tables may fill the slot up to the CRC exactly.
        names = []
        n = 0
        while len(s6_tables([], names)) < 1024 - 4 - 512 - 41:
            names.append((b"s%03d" % n + b"x" * 30, n))
            n += 1
        t = s6_tables([], names)
        last = 1024 - 4 - 512 - len(t) - 2
        names.append((b"z" * last, 1))
        t = s6_tables([], names)
        assert len(t) == 1024 - 4 - 512
        kw = dict(tables=t, tables_len=len(t))
    m = p_meta(**kw)
    got = p_parse(m, m["store_size"])
    assert got.meta_len == m["meta_len"]


def test_packed_metadata_store_size_bounded_by_the_image():
    m = p_meta()
    assert p_parse(m, m["store_size"])
    assert p_meta_error(m, m["store_size"] - 1) == "store_size"
    # A slot cut short by the end of the image is not valid either.
    buf = p_meta_bytes(m)
    with pytest.raises(dec.MetaError) as info:
        dec.parse_metadata6(buf[:1023], "B")
    assert info.value.reason == "truncated"


def test_packed_truncated_image_has_no_valid_slot(tmp_path):
    ps = PStore()
    ps.segment(0, [1])
    ps.meta(2, head=1)
    ps.meta(3, head=1)
    assert p_scan(ps).meta.slot_name == "B"
    code, lines, _ = p_run(tmp_path, ps.img[:-1])
    assert code == 2 and lines == [{"kind": "error", "reason": "not_a_store"}]


# --- A.9 step 1: which slot ---------------------------------------------------

def two_slot_store():
    """Segment 1 in slot 0 with frames 1 and 2, segment 2 in slot 1 with
    frame 3: slot A (generation 2) names frame 2, slot B (generation 3)
    frame 3."""
    ps = PStore()
    ps.segment(0, [2, 1])
    ps.segment(1, [1])
    return ps


def test_packed_newest_slot_whose_head_checks_is_chosen():
    ps = two_slot_store()
    ps.meta(2, head=2)
    ps.meta(3, head=3)
    r = p_scan(ps)
    assert p_summary(r) == dict(slot="B", head_missing=False, frames_adopted=0,
                                segments_adopted=0, torn=False, head_frame_id=3,
                                head_segment_id=2, tail_segment_id=1, tail_slot=0)
    assert p_ids(r) == [(1, 1), (1, 2), (2, 3)]
    # Generations decide, not the slot's name: A newer than B.
    ps.meta(4, head=3)
    ps.meta(3, head=2)
    assert p_scan(ps).meta.slot_name == "A" and p_scan(ps).meta.generation == 4


@pytest.mark.parametrize("bad", [
    dict(head_crc=1),
    dict(hash_head=bytes(32)),
    dict(head_offset=1024),             # frame 3 is at 512
    dict(head_frame_id=4),              # no such frame in the walk
    dict(head_segment_id=3),            # the segment in head_slot is segment 2
    dict(head_slot=0),                  # slot 0 holds segment 1
    dict(head_slot=2),                  # slot 2 holds nothing
    dict(store_uuid=UUID),              # the segment is not this (other) store's
])
def test_packed_newer_slot_whose_head_does_not_check_falls_back(bad):
    ps = two_slot_store()
    ps.meta(2, head=2)
    ps.meta(3, head=3, **bad)
    r = p_scan(ps)
    # Slot A's head (frame 2) checks; the forward scan then finds segment 2.
    assert p_summary(r) == dict(slot="A", head_missing=False, frames_adopted=1,
                                segments_adopted=1, torn=False, head_frame_id=3,
                                head_segment_id=2, tail_segment_id=1, tail_slot=0)
    assert r.meta.generation == 2


def test_packed_head_frame_in_the_middle_of_its_segment_checks():
    ps = PStore()
    ps.segment(0, [1, 2, 1])
    ps.meta(3, head=2)
    r = p_scan(ps)
    assert not r.head_missing and r.meta.slot_name == "B"
    assert (r.frames_adopted, r.head_frame_id) == (1, 3)


def test_packed_head_frame_that_the_walk_does_not_reach_does_not_check():
    """Frame 1 is damaged: the walk stops before frame 2, the head."""
    ps = PStore()
    ps.segment(0, [1, 1])
    ps.meta(2, head=1)
    ps.meta(3, head=2)
    ps.flip(0, ps.frames[1]["offset"] + 10)
    r = p_scan(ps)
    assert r.head_missing and r.meta.slot_name == "B"


def test_packed_both_heads_bad_newest_is_chosen_head_missing():
    ps = two_slot_store()
    ps.meta(2, head=2, head_crc=5, records_total=777, lost_total=55)
    ps.meta(3, head=3, hash_head=bytes([9]) * 32, records_total=999, lost_total=66)
    r = p_scan(ps)
    assert p_summary(r) == dict(slot="B", head_missing=True, frames_adopted=0,
                                segments_adopted=0, torn=False, head_frame_id=3,
                                head_segment_id=2, tail_segment_id=1, tail_slot=0)
    # The sealed numbers of a head that was not found are the slot's.
    assert (r.records_total, r.lost_total) == (999, 66)
    # The history runs from the tail to the slot's head frame.
    assert p_ids(r) == [(1, 1), (1, 2), (2, 3)]


def test_packed_head_missing_history_stops_at_the_slots_head_frame():
    """Slot A's head (frame 2) does not check and slot B is not valid;
    frame 3 after it in the same segment is not taken: nothing vouches for
    it (the forward scan starts after a head that was found)."""
    ps = PStore()
    ps.segment(0, [1, 1, 1])
    ps.meta(2, head=2, head_crc=0)
    r = p_scan(ps)
    assert r.head_missing and r.head_frame_id == 2 and r.frames_adopted == 0
    assert p_ids(r) == [(1, 1), (1, 2)]


def test_packed_head_missing_no_forward_scan():
    """Slot A names frame 2 with a wrong head_crc (B is not valid): the head
    is missing, and A.9 step 1 does no forward scan: segment 2 is not
    adopted, the history runs to the slot's head as it states it."""
    ps = two_slot_store()
    ps.meta(2, head=2, head_crc=1, records_total=5000)
    r = p_scan(ps)
    assert p_summary(r) == dict(slot="A", head_missing=True, frames_adopted=0,
                                segments_adopted=0, torn=False, head_frame_id=2,
                                head_segment_id=1, tail_segment_id=1, tail_slot=0)
    assert r.records_total == 5000


def test_packed_older_slot_with_no_head_frame_is_chosen_as_it_is():
    ps = PStore()
    ps.meta(2)                                  # formatted: head_frame_id 0
    ps.segment(0, [2])
    ps.meta(3, head=1, head_crc=0)             # its head does not check
    r = p_scan(ps)
    assert p_summary(r) == dict(slot="A", head_missing=False, frames_adopted=1,
                                segments_adopted=1, torn=False, head_frame_id=1,
                                head_segment_id=1, tail_segment_id=1, tail_slot=0)


def test_packed_equal_generations_take_slot_a_first():
    """Generation parity is not a validity rule of A.8, so two valid slots
    may carry the same generation: A is tried first."""
    ps = two_slot_store()
    ps.meta(3, head=2, slot="A")
    ps.meta(3, head=3, slot="B")
    assert p_scan(ps).meta.slot_name == "A"
    ps.meta(3, head=2, slot="A", head_crc=1)
    assert p_scan(ps).meta.slot_name == "B"


def test_packed_invalid_newer_slot_is_passed_over():
    ps = two_slot_store()
    ps.meta(2, head=3)
    ps.meta(3, head=3, crc=1)
    assert p_scan(ps).meta.slot_name == "A"
    ps.meta(3, head=3, store_size=len(ps.img) + 512)        # more than the image
    r = p_scan(ps)
    assert r.meta.slot_name == "A" and r.rejected["B"].reason == "store_size"


# --- A.9 step 2: forward ------------------------------------------------------

def test_packed_forward_inside_the_head_segment():
    ps = PStore()
    ps.segment(0, [2, 1, (3, 4), 0])
    ps.meta(2, head=1, records_total=1234)
    r = p_scan(ps)
    assert p_summary(r) == dict(slot="A", head_missing=False, frames_adopted=3,
                                segments_adopted=0, torn=False, head_frame_id=4,
                                head_segment_id=1, tail_segment_id=1, tail_slot=0)
    # The sealed numbers come from the frames, not the slot.
    assert (r.records_total, r.lost_total) == (6, 4)
    assert p_ids(r) == [(1, 1), (1, 2), (1, 3), (1, 4)]


def test_packed_forward_across_segments():
    ps = PStore()
    ps.segment(0, [1, 1])
    ps.meta(2, head=2)
    ps.segment(1, [2])
    ps.segment(2, [1, (1, 9)])
    r = p_scan(ps)
    assert p_summary(r) == dict(slot="A", head_missing=False, frames_adopted=3,
                                segments_adopted=2, torn=False, head_frame_id=5,
                                head_segment_id=3, tail_segment_id=1, tail_slot=0)
    assert (r.records_total, r.lost_total) == (6, 9)
    assert p_ids(r) == [(1, 1), (1, 2), (2, 3), (3, 4), (3, 5)]


def full_ring():
    """Segments 1..5 in slots 0..4 (one frame each, two in segment 5);
    slot A names frame 6, the last of segment 5; the tail is segment 1."""
    ps = PStore()
    for s in range(5):
        ps.segment(s, [1, 1] if s == 4 else [1])
    ps.meta(2, head=6)
    return ps


def test_packed_forward_wraps_from_the_last_slot_to_slot_0():
    ps = full_ring()
    # Segment 6 reclaims segment 1's slot: its header names the new tail.
    ps.segment(0, [1, 2], tail=(2, 1), wrap=1)
    r = p_scan(ps)
    assert p_summary(r) == dict(slot="A", head_missing=False, frames_adopted=2,
                                segments_adopted=1, torn=False, head_frame_id=8,
                                head_segment_id=6, tail_segment_id=2, tail_slot=1)
    assert r.wrap_count == 1
    assert p_ids(r) == [(2, 2), (3, 3), (4, 4), (5, 5), (5, 6), (6, 7), (6, 8)]


def test_packed_forward_skips_the_tables_bad_slots():
    ps = PStore()
    ps.segment(0, [1])
    ps.meta(2, head=1, bad_slots=[(1, 1, 2)])
    ps.img[ps.slot_off(1):ps.slot_off(1) + 600] = b"\xAA" * 600   # a failed write
    ps.segment(2, [1], bad_slots=[(1, 1, 2)])
    ps.segment(3, [1], bad_slots=[(1, 1, 2)])
    r = p_scan(ps)
    assert (r.segments_adopted, r.head_frame_id, r.head_segment_id, r.torn) == (2, 3, 3, False)
    assert [(c.segment_id, c.slot) for c in r.committed] == [(1, 0), (2, 2), (3, 3)]
    # Without the bad slot in the tables, slot 1 stops the scan.
    ps.meta(2, head=1)
    r = p_scan(ps)
    assert (r.segments_adopted, r.head_frame_id) == (0, 1)


def test_packed_forward_wraps_past_a_bad_last_slot():
    ps = PStore()
    for s in range(4):
        ps.segment(s, [1])
    ps.meta(2, head=4, bad_slots=[(4, 2, 5)])
    ps.segment(0, [1], tail=(2, 1), wrap=1, bad_slots=[(4, 2, 5)])
    r = p_scan(ps)
    assert (r.segments_adopted, r.head_segment_id, r.tail_segment_id, r.tail_slot) == \
        (1, 5, 2, 1)
    assert p_ids(r) == [(2, 2), (3, 3), (4, 4), (5, 5)]


def stop_case(kind):
    """Segment 1 (frames 1, 2) in slot 0 named by slot A; slot 1 holds a
    segment that does not continue the history."""
    ps = PStore()
    ps.segment(0, [1, 1])
    ps.meta(2, head=2)
    if kind == "segment_id":
        ps.segment(1, [1], segment_id=3)
    elif kind == "first_frame_id":
        ps.segment(1, [1], first_frame_id=4)
    elif kind == "first_frame_id_back":
        ps.segment(1, [1], first_frame_id=2)
    elif kind == "prev_hash":
        ps.segment(1, [1], prev_hash=bytes(32))
    elif kind == "other_store":
        ps.segment(1, [1], store_uuid=UUID)
    elif kind == "header_crc":
        ps.segment(1, [1])
        ps.flip(1, 300)
    elif kind == "blank":
        pass
    return ps


@pytest.mark.parametrize("kind", ["segment_id", "first_frame_id", "first_frame_id_back",
                                  "prev_hash", "other_store", "header_crc", "blank"])
def test_packed_forward_stops_at_a_slot_that_does_not_continue(kind):
    r = p_scan(stop_case(kind))
    assert p_summary(r) == dict(slot="A", head_missing=False, frames_adopted=0,
                                segments_adopted=0, torn=False, head_frame_id=2,
                                head_segment_id=1, tail_segment_id=1, tail_slot=0)
    assert p_ids(r) == [(1, 1), (1, 2)]


def test_packed_forward_stops_at_an_older_lap():
    """Segment 6 in slot 0 is the head; slot 1 still holds segment 2 from the
    lap before: the scan stops there, nothing of it is taken again."""
    ps = full_ring()
    ps.segment(0, [1], tail=(2, 1), wrap=1)
    ps.meta(4, head=7)
    r = p_scan(ps)
    assert p_summary(r) == dict(slot="A", head_missing=False, frames_adopted=0,
                                segments_adopted=0, torn=False, head_frame_id=7,
                                head_segment_id=6, tail_segment_id=2, tail_slot=1)
    assert r.stop_slot == 1 and r.stop_reason == "segment_id"
    assert p_ids(r) == [(2, 2), (3, 3), (4, 4), (5, 5), (5, 6), (6, 7)]


def test_packed_forward_stops_after_a_whole_lap():
    """Every slot continues the chain only once: the scan never walks a
    second lap (here the slot after the last adopted one is the head's)."""
    ps = PStore(slots=4)
    ps.segment(0, [1])
    ps.meta(2, head=1)
    ps.segment(1, [1])
    ps.segment(2, [1])
    ps.segment(3, [1])
    r = p_scan(ps)
    assert (r.segments_adopted, r.head_frame_id, r.stop_slot) == (3, 4, 0)


# --- A.9 step 4: torn ---------------------------------------------------------

def test_packed_torn_last_frame_of_the_head_segment():
    ps = PStore()
    ps.segment(0, [1, 1, 60])
    ps.meta(2, head=1)
    assert len(ps.frames[3]["recs"]) == 60
    ps.tear(3)
    r = p_scan(ps)
    assert p_summary(r) == dict(slot="A", head_missing=False, frames_adopted=1,
                                segments_adopted=0, torn=True, head_frame_id=2,
                                head_segment_id=1, tail_segment_id=1, tail_slot=0)
    assert p_ids(r) == [(1, 1), (1, 2)]
    assert r.records_total == 2


def test_packed_torn_last_frame_of_an_adopted_segment():
    ps = PStore()
    ps.segment(0, [1])
    ps.meta(2, head=1)
    ps.segment(1, [1, 1, 60])           # frame 4 (stored, 60 records) spans sectors
    ps.tear(4)
    walk = dec.walk_segment(ps.img[ps.slot_off(1):ps.slot_off(2)], 512, S6_UUID)
    assert (len(walk.frames), walk.end_reason) == (2, "crc_mismatch")
    r = p_scan(ps)
    assert (r.segments_adopted, r.frames_adopted, r.head_frame_id, r.torn) == (1, 2, 3, True)
    assert r.records_total == 3
    # A later session's segment after the torn one: its walk is the last one.
    ps.segment(2, [1], first_frame_id=4, prev_hash=ps.frames[3]["hash"], segment_id=3)
    r = p_scan(ps)
    assert (r.segments_adopted, r.head_frame_id, r.torn) == (2, 4, False)
    assert p_ids(r) == [(1, 1), (2, 2), (2, 3), (3, 4)]


def test_packed_torn_segment_start():
    """The next slot holds a header valid for the next segment id whose first
    frame did not make it."""
    ps = PStore()
    ps.segment(0, [1, 1])
    ps.meta(2, head=2)
    ps.segment(1, [60])
    ps.tear(3)
    r = p_scan(ps)
    assert p_summary(r) == dict(slot="A", head_missing=False, frames_adopted=0,
                                segments_adopted=0, torn=True, head_frame_id=2,
                                head_segment_id=1, tail_segment_id=1, tail_slot=0)
    assert r.stop_reason == "no_frame"
    assert p_ids(r) == [(1, 1), (1, 2)]


def test_packed_header_of_another_id_without_a_frame_is_not_torn():
    ps = PStore()
    ps.segment(0, [1])
    ps.meta(2, head=1)
    ps.segment(1, [60], segment_id=5)
    ps.tear(2)
    r = p_scan(ps)
    assert (r.torn, r.stop_reason) == (False, "segment_id")


def test_packed_clean_ends_are_not_torn():
    ps = PStore()
    ps.segment(0, [1, 1])
    ps.meta(2, head=2)
    assert not p_scan(ps).torn                       # blank after the last frame
    # Frames filling the slot to its end (the header and 15 one-sector
    # frames in 16 sectors): the walk ends with slot_end.
    ps = PStore()
    ps.segment(0, [1] * 15)
    ps.meta(2, head=1)
    walk = dec.walk_segment(ps.img[P_RING:P_RING + P_SEG], 512, S6_UUID)
    assert (len(walk.frames), walk.end_reason) == (15, "slot_end")
    r = p_scan(ps)
    assert (r.torn, r.frames_adopted, r.head_frame_id) == (False, 14, 15)


def test_packed_older_lap_left_after_the_last_frame_reads_as_torn():
    """Read literally, step 4 calls any walk end other than blank or
    slot_end torn: an older lap's frame left after the last frame of a
    segment written over it ends the walk with crc_mismatch (A.6), so it
    reads as torn.  (Written down so that a change of the rule shows.)"""
    ps = PStore()
    ps.segment(0, [1])
    ps.segment(1, [1, 1, 1])            # segment 2: frames 2, 3, 4
    for s in (2, 3, 4):
        ps.segment(s, [1])              # frames 5, 6, 7
    ps.segment(0, [1], tail=(2, 1), wrap=1, keep=True)     # segment 6, frame 8
    ps.meta(2, head=8)
    r = p_scan(ps)
    assert r.head_frame_id == 8 and r.torn is False    # segment 1 had one frame: blank
    # Segment 7 reclaims segment 2's slot, written over it: one frame.
    ps.segment(1, [1], tail=(3, 2), keep=True)
    r = p_scan(ps)
    assert (r.segments_adopted, r.head_frame_id) == (1, 9)
    walk = dec.walk_segment(ps.img[ps.slot_off(1):ps.slot_off(2)], 512, S6_UUID)
    assert (len(walk.frames), walk.end_offset, walk.end_reason) == (1, 1024, "crc_mismatch")
    assert r.torn is True
    assert p_ids(r) == [(3, 5), (4, 6), (5, 7), (6, 8), (7, 9)]


# --- A.9 step 3: the committed history from the tail ---------------------------

def test_packed_history_runs_from_the_tail_slot_by_slot():
    ps = PStore()
    for s in range(5):
        ps.segment(s, [1])
    ps.segment(0, [1, 1], tail=(2, 1), wrap=1)
    ps.segment(1, [1], tail=(3, 2))
    ps.meta(2, head=8)
    r = p_scan(ps)
    assert (r.tail_segment_id, r.tail_slot) == (3, 2)
    assert [(c.segment_id, c.slot, c.frame.frame_id) for c in r.committed] == [
        (3, 2, 3), (4, 3, 4), (5, 4, 5), (6, 0, 6), (6, 0, 7), (7, 1, 8)]


def test_packed_damaged_segment_inside_the_history_stops_step_3():
    """A.9: step 3 stops at the first slot that does not hold the next
    segment id (a damaged header inside the history is tampering, not a cut)."""
    ps = PStore()
    for s in range(4):
        ps.segment(s, [1, 1])
    ps.meta(2, head=8)
    ps.flip(1, 100)                      # segment 2's header
    r = p_scan(ps)
    assert (r.tail_segment_id, r.tail_slot) == (1, 0)
    assert p_ids(r) == [(1, 1), (1, 2)]


@pytest.mark.parametrize("how", ["torn_header", "torn_frame", "garbage", "blank"])
def test_packed_reclaim_cut_short_gives_the_tail_up(how):
    """The ring is full; the writer was reclaiming segment 1's slot for
    segment 6 when the power went.  The slot no longer holds segment 1: the
    oldest retained segment is the first from tail_segment_id on that reads
    with a valid frame, segment 2."""
    ps = full_ring()
    if how in ("torn_header", "torn_frame"):
        ps.segment(0, [60], tail=(2, 1), wrap=1)
        ps.tear(7, keep=0 if how == "torn_header" else 1)
        if how == "torn_header":
            # Only part of the header's sector made it.
            ps.img[ps.slot_off(0) + 100:ps.slot_off(0) + 512] = bytes(412)
    elif how == "garbage":
        ps.img[ps.slot_off(0):ps.slot_off(0) + 1024] = b"\x5A" * 1024
    else:
        ps.img[ps.slot_off(0):ps.slot_off(0) + P_SEG] = bytes(P_SEG)
    r = p_scan(ps)
    assert p_summary(r) == dict(slot="A", head_missing=False, frames_adopted=0,
                                segments_adopted=0, torn=how == "torn_frame",
                                head_frame_id=6, head_segment_id=5, tail_segment_id=2,
                                tail_slot=1)
    assert p_ids(r) == [(2, 2), (3, 3), (4, 4), (5, 5), (5, 6)]


def test_packed_tail_segment_with_a_header_but_no_frame_is_given_up_too():
    """The tail slot holds segment 1's header but its first frame is damaged:
    it holds nothing committed (A.6), so segment 2 is the oldest."""
    ps = full_ring()
    ps.flip(0, ps.frames[1]["offset"] + 6)
    r = p_scan(ps)
    assert (r.tail_segment_id, r.tail_slot) == (2, 1)
    assert p_ids(r)[0] == (2, 2)


def test_packed_at_most_one_tail_segment_is_given_up():
    """A.9: a writer reclaims one segment at a time, so a cut gives up at most
    one; two erased oldest segments are not explained away as a cut: the
    history stops at the first one (nothing shown, the tail stays)."""
    ps = full_ring()
    for slot in (0, 1):
        ps.img[ps.slot_off(slot):ps.slot_off(slot) + P_SEG] = bytes(P_SEG)
    r = p_scan(ps)
    assert (r.tail_segment_id, r.tail_slot) == (2, 1)
    assert p_ids(r) == []


def test_packed_tail_is_not_given_up_in_a_clean_store_or_a_ring_not_full():
    """A cleanly closed store had no reclaim in flight; a ring that is not
    full has no reclaim to cut: an unreadable tail is damage, not a cut."""
    ps = full_ring()
    ps.meta(2, head=6, clean_flag=1)
    ps.img[ps.slot_off(0):ps.slot_off(0) + P_SEG] = bytes(P_SEG)
    r = p_scan(ps)
    assert (r.tail_segment_id, r.tail_slot, p_ids(r)) == (1, 0, [])
    ps = PStore()
    for s in range(4):
        ps.segment(s, [1])
    ps.meta(2, head=4)
    ps.img[ps.slot_off(0):ps.slot_off(0) + P_SEG] = bytes(P_SEG)
    r = p_scan(ps)
    assert (r.tail_segment_id, r.tail_slot, p_ids(r)) == (1, 0, [])


def test_packed_tail_after_the_scan_is_the_last_adopted_headers():
    ps = full_ring()
    ps.segment(0, [1], tail=(2, 1), wrap=1)
    ps.segment(1, [1], tail=(3, 2))
    r = p_scan(ps)
    assert (r.segments_adopted, r.tail_segment_id, r.tail_slot, r.wrap_count) == (2, 3, 2, 1)
    assert p_ids(r) == [(3, 3), (4, 4), (5, 5), (5, 6), (6, 7), (7, 8)]


# --- the empty store ------------------------------------------------------------

def test_packed_empty_store():
    ps = PStore()
    ps.meta(0, clean_flag=1, records_total=0, lost_total=0)
    r = p_scan(ps)
    assert p_summary(r) == dict(slot="A", head_missing=False, frames_adopted=0,
                                segments_adopted=0, torn=False, head_frame_id=0,
                                head_segment_id=0, tail_segment_id=1, tail_slot=0)
    assert r.committed == [] and r.state is None


def test_packed_empty_store_scan_starts_at_the_tail_slot():
    ps = PStore()
    ps.tail = (1, 2)
    ps.meta(0, records_total=7, lost_total=8)
    assert (p_scan(ps).records_total, p_scan(ps).lost_total) == (7, 8)   # no frame: the slot's
    ps.segment(2, [2, (1, 3)])
    ps.segment(3, [1])
    r = p_scan(ps)
    assert p_summary(r) == dict(slot="A", head_missing=False, frames_adopted=3,
                                segments_adopted=2, torn=False, head_frame_id=3,
                                head_segment_id=2, tail_segment_id=1, tail_slot=2)
    assert (r.records_total, r.lost_total) == (4, 3)
    assert p_ids(r) == [(1, 1), (1, 2), (2, 3)]


def test_packed_empty_store_needs_frame_1_and_a_zero_prev_hash():
    for kw in (dict(first_frame_id=2), dict(prev_hash=bytes([1]) * 32), dict(segment_id=2)):
        ps = PStore()
        ps.meta(0)
        ps.segment(0, [1], **kw)
        r = p_scan(ps)
        assert (r.segments_adopted, r.head_frame_id, r.committed) == (0, 0, []), kw
    # Not at the tail slot: not found either.
    ps = PStore()
    ps.meta(0)
    ps.segment(1, [1])
    assert p_scan(ps).segments_adopted == 0


def test_packed_empty_store_slot_must_say_tail_1():
    """A.8: a slot with head_frame_id 0 describes an empty store: tail_segment_id 1."""
    ps = PStore()
    ps.tail = (3, 1)
    ps.meta(0)
    with pytest.raises(dec.MetaError):
        p_scan(ps)


def test_packed_empty_store_scans_from_tail_slot():
    """A chosen slot with head_frame_id 0 starts at tail_slot with segment 1,
    frame 1, zero prev_hash."""
    ps = PStore()
    ps.tail = (1, 1)
    ps.meta(0)
    ps.segment(1, [2], segment_id=1)
    r = p_scan(ps)
    assert (r.segments_adopted, r.head_frame_id, r.head_segment_id) == (1, 1, 1)
    assert (r.tail_segment_id, r.tail_slot) == (1, 1)
    assert p_ids(r) == [(1, 1)]


def test_packed_empty_store_with_a_torn_first_segment():
    ps = PStore()
    ps.meta(0)
    ps.segment(0, [60])
    ps.tear(1)
    r = p_scan(ps)
    assert (r.torn, r.segments_adopted, r.head_frame_id, r.committed) == (True, 0, 0, [])


def test_packed_store_with_4096_byte_sectors():
    ps = PStore(slots=4, seg=16384, sector=4096)
    ps.segment(0, [1, 2, 1])            # header and three frames: the slot is full
    ps.meta(2, head=1)
    ps.segment(1, [1], tail=(1, 0))
    r = p_scan(ps)
    assert r.meta.meta_len == 4096 and r.meta.sector_size == 4096
    assert (r.frames_adopted, r.segments_adopted, r.head_frame_id, r.torn) == (3, 1, 4, False)
    assert [c.frame.offset for c in r.committed] == [4096, 8192, 12288, 4096]


# --- CLI: --packed-store IMAGE ----------------------------------------------------

PACKED_META_KEYS = ["kind", "slot", "generation", "clean_flag", "head_missing",
                    "frames_adopted", "segments_adopted", "torn", "head_frame_id",
                    "head_segment_id", "tail_segment_id", "tail_slot", "records_total",
                    "lost_total"]


def test_packed_cli_prints_the_metadata_line_and_the_committed_frames(tmp_path):
    ps = full_ring()
    ps.segment(0, [2, (1, 12)], tail=(2, 1), wrap=1)
    # Slot B, newer, names frame 5 but its head_crc is not frame 5's.
    ps.meta(3, head=5, clean_flag=1, head_crc=ps.frames[5]["crc"] ^ 1)
    code, lines, raw = p_run(tmp_path, ps)
    assert code == 0
    first = raw.splitlines()[0].decode()
    assert first == ('{"kind":"metadata","slot":"A","generation":2,"clean_flag":0,'
                     '"head_missing":false,"frames_adopted":2,"segments_adopted":1,'
                     '"torn":false,"head_frame_id":8,"head_segment_id":6,'
                     '"tail_segment_id":2,"tail_slot":1,"records_total":9,"lost_total":12}')
    assert list(lines[0]) == PACKED_META_KEYS
    assert lines[1:] == p_expected_frames(ps, range(2, 9))
    assert all(", " not in x and '": ' not in x for x in raw.decode().splitlines())
    # Slot B (generation 3) names frame 5: newest, its head checks.
    ps.meta(3, head=5, clean_flag=1)
    code, lines, _ = p_run(tmp_path, ps)
    assert lines[0]["slot"] == "B" and lines[0]["clean_flag"] == 1
    assert (lines[0]["frames_adopted"], lines[0]["segments_adopted"]) == (3, 1)
    assert lines[0]["head_frame_id"] == 8


def test_packed_cli_records_print_as_frames_prints_them(tmp_path):
    ps = PStore()
    ps.segment(0, [2, 3])
    ps.meta(2, head=2)
    code, lines, raw = p_run(tmp_path, ps)
    assert code == 0
    text = raw.decode().splitlines()
    assert text[1] == '{"kind":"frame","segment_id":1,"frame_id":1,"records":2}'
    assert text[2].startswith('{"frame":1,"type":1,"source":"temp","seq":1,"mono_ctr":1,')
    assert [x["kind"] if "kind" in x else "record" for x in lines] == \
        ["metadata", "frame", "record", "record", "frame", "record", "record", "record"]
    # The same records --segment prints for the slot.
    p = tmp_path / "slot.bin"
    p.write_bytes(bytes(ps.img[P_RING:P_RING + P_SEG]))
    out = io.BytesIO()
    assert dec.main(["--segment", str(p), "--sector-size", "512"], out=out,
                    err=io.BytesIO()) == 0
    seg_records = [x for x in out.getvalue().splitlines() if x.startswith(b'{"frame"')]
    assert seg_records == [x for x in raw.splitlines() if x.startswith(b'{"frame"')]


def test_packed_cli_empty_store_and_head_missing(tmp_path):
    ps = PStore()
    ps.meta(0, clean_flag=1)
    code, lines, _ = p_run(tmp_path, ps)
    assert code == 0 and lines == [{
        "kind": "metadata", "slot": "A", "generation": 0, "clean_flag": 1,
        "head_missing": False, "frames_adopted": 0, "segments_adopted": 0, "torn": False,
        "head_frame_id": 0, "head_segment_id": 0, "tail_segment_id": 1, "tail_slot": 0,
        "records_total": 0, "lost_total": 0}]
    ps = two_slot_store()
    ps.meta(2, head=2, head_crc=5)
    ps.meta(3, head=3, head_crc=5)
    p = tmp_path / "missing.img"
    p.write_bytes(bytes(ps.img))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--packed-store", str(p)],
                          capture_output=True)
    assert proc.returncode == 0 and b"missing" in proc.stderr
    assert json.loads(proc.stdout.splitlines()[0])["head_missing"] is True


def test_packed_cli_not_a_store_and_usage(tmp_path):
    code, lines, raw = p_run(tmp_path, bytes(P_RING + 4 * P_SEG))
    assert code == 2 and raw == b'{"kind":"error","reason":"not_a_store"}\n'
    # A format 5 store is not a format 6 store (nor the other way round).
    code, lines, _ = p_run(tmp_path, bytes(two_segment_image().buf))
    assert code == 2 and lines == [{"kind": "error", "reason": "not_a_store"}]
    code, lines, _ = p_run(tmp_path, bytes(100))
    assert code == 2 and lines == [{"kind": "error", "reason": "not_a_store"}]
    ps = PStore()
    ps.segment(0, [1])
    ps.meta(2, head=1)
    p = tmp_path / "store.img"
    p.write_bytes(bytes(ps.img))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--packed-store", str(p)],
                          capture_output=True)
    assert proc.returncode == 0 and proc.stderr == b""
    assert proc.stdout.count(b"\n") == 3
    for args in (["--packed-store", str(p), str(p)],
                 ["--packed-store", str(p), "--sector-size", "512"],
                 ["--packed-store", str(p), "--segment", str(p)],
                 ["--packed-store", str(p), "--frames", str(p)],
                 ["--packed-store", str(p), "--inspect"],
                 ["--packed-store", str(p), "--format", "csv"]):
        proc = subprocess.run([sys.executable, str(SCRIPT)] + args, capture_output=True)
        assert proc.returncode == 2, args
    proc = subprocess.run([sys.executable, str(SCRIPT), "--packed-store",
                           str(tmp_path / "none")], capture_output=True)
    assert proc.returncode == 2 and b"cannot open" in proc.stderr


def test_packed_hostile_metadata_never_crashes():
    """Every byte of a slot changed, its CRC made right again: the slot is
    refused with a reason, or read, and the scan never raises otherwise."""
    ps = PStore()
    ps.segment(0, [1, 1])
    ps.segment(1, [1])
    ps.meta(2, head=2, bad_slots=[(3, 1, 4)], sources=[(b"temp", 2)])
    reasons = set()
    for i in range(0, 540):
        for x in (0x01, 0x80, 0xFF):
            img = bytearray(ps.img)
            img[i] ^= x
            struct.pack_into("<I", img, 1020, crc(bytes(img[:1020])))
            try:
                r = p_scan(img)
                assert r.meta.slot_name == "A"
            except dec.MetaError as exc:
                reasons.add(exc.reason)
    assert "not_a_store" in reasons
