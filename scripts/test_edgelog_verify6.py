"""Self-test for scripts/edgelog_verify6.py (FORMAT.md appendix A.11).

Run: python3 -m pytest scripts/test_edgelog_verify6.py

The images are written by the small signing format 6 writer below, from
FORMAT.md alone (A.1 to A.8, A.10, sections 3.5 and 4): it formats, opens
sessions (rollback_ctr + 1, a new segment per session), commits frames of
A.3 records (stored or deflated against the frame before), each with its
352-byte EDGESIG3 statement signed with Ed25519, ECDSA P-256 or
HMAC-SHA256 keys generated here, reclaims the oldest segment with a gap
record when the ring is full, rotates keys (EDGEROT1 endorsement) and
prints the version 3 signed head.  It has its own CRC, varints, record
encoder and struct layouts, so a layout mistake in edgelog_decode.py does
not hide behind the same code here.  Tests then damage the image the way an
attacker or a power cut would and check the verdict, reason and offset.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import random
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("cryptography")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, utils  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import edgelog_verify6 as v6  # noqa: E402

RING = 32768
SECTOR = 512
SEG = 8192
UUID6 = bytes(range(0x40, 0x50))
OTHER_UUID = bytes(range(0x60, 0x70))
DEV6 = b"device-0006-test"
OTHER_DEV = b"device-0007-test"
FW6 = hashlib.sha256(b"edgelog format 6 writer").digest()
FW_OTHER = hashlib.sha256(b"edgelog format 6 other build").digest()
W0 = 1_700_000_000_000_000_000
ZERO = bytes(32)
M64 = 2**64
SIG_LEN = {0: 0, 1: 64, 2: 64, 3: 32}
ALG_NAME = {0: "unsigned", 1: "ed25519", 2: "ecdsa-p256", 3: "hmac-sha256"}


# ---------------------------------------------------------------------------
# Encoding (A.1 to A.3, A.5, A.7, A.8)
# ---------------------------------------------------------------------------

def _crc_table():
    table = []
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CT = _crc_table()


def crc(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _CT[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc(b"123456789") == 0xE3069283


def varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(v: int, base: int) -> bytes:
    d = (v - base) % M64
    if d >= 2**63:
        d -= M64
    return varint(((d << 1) ^ (d >> 63)) % M64)


TQ = (1, 1, 16_000, 500, W0 - 10**9)   # time_flags, boot_seq, maxerror, esterror, last_sync


@dataclass
class Rec:
    source: bytes
    seq: int
    mono: int
    payload: bytes = b"{}"
    rtype: int = 1
    tq: tuple = TQ

    @property
    def wall(self):
        return W0 + self.mono * 1000

    @property
    def boot(self):
        return self.mono * 1000 + 7


class Enc:
    """The A.2 context, writer side (A.3's choices for the head bits)."""

    def __init__(self):
        self.sources, self.last_seq = [], {}
        self.mono = self.wall = self.boot = 0
        self.tq = (0, 0, 0xFFFFFFFF, 0xFFFFFFFF, 0)

    def record(self, r: Rec) -> bytes:
        head, out = 0, bytearray()
        if r.rtype != 1:
            head |= 1
            out += varint(r.rtype)
        if r.source not in self.sources:
            head |= 2
            out += bytes([len(r.source)]) + r.source
            self.sources.append(r.source)
            self.last_seq[r.source] = 0
        else:
            out += varint(self.sources.index(r.source))
        out += zigzag(r.seq, self.last_seq[r.source])
        self.last_seq[r.source] = r.seq
        out += varint(r.mono - self.mono - 1)
        out += zigzag(r.wall, self.wall)
        out += zigzag(r.boot, self.boot + r.wall - self.wall)
        if r.tq != self.tq:
            head |= 4
            tf, bs, me, ee, ls = r.tq
            out += varint(tf) + varint(bs) + varint(me) + varint(ee) + zigzag(ls, self.tq[4])
        out += varint(len(r.payload)) + r.payload
        self.mono, self.wall, self.boot, self.tq = r.mono, r.wall, r.boot, r.tq
        return bytes([head]) + bytes(out)

    def block(self, recs) -> bytes:
        return b"".join(self.record(r) for r in recs)


def deflate(block: bytes, dictionary: bytes) -> bytes:
    c = (zlib.compressobj(9, zlib.DEFLATED, -15, zdict=dictionary) if dictionary
         else zlib.compressobj(9, zlib.DEFLATED, -15))
    return c.compress(block) + c.flush()


def enc_tables(bad, sources) -> bytes:
    out = varint(len(bad)) + b"".join(varint(s) + bytes([r]) + varint(i) for s, r, i in bad)
    out += varint(len(sources))
    out += b"".join(bytes([len(n)]) + n + varint(q) for n, q in sources)
    return out


HDR_FIELDS = [(0, "8s", "magic"), (8, "<H", "version"), (12, "<I", "header_len"),
              (16, "16s", "store_uuid"), (32, "<Q", "segment_id"), (40, "<Q", "first_frame_id"),
              (48, "<I", "slot_index"), (52, "<I", "wrap_count"), (56, "32s", "prev_hash"),
              (88, "16s", "device_id"), (104, "16s", "key_id"), (120, "<I", "key_epoch"),
              (124, "<B", "sig_alg"), (125, "<B", "key_src"), (126, "<H", "sig_len"),
              (128, "32s", "fw_ver_hash"), (160, "<Q", "rollback_ctr"),
              (168, "<Q", "tail_segment_id"), (176, "<I", "tail_slot"), (180, "<I", "ring_slots"),
              (184, "<Q", "mono_hwm"), (192, "<Q", "records_total"), (200, "<Q", "lost_total"),
              (208, "<Q", "dropped_total"), (216, "<Q", "uplink_cursor"), (224, "<I", "unexp_rst"),
              (228, "<I", "bo_event"), (232, "<I", "ecc_err_cnt"), (236, "<I", "clock_steps"),
              (240, "<I", "boot_seq"), (244, "<I", "tables_len")]


def header_bytes(h: dict) -> bytes:
    tables = enc_tables(h["bad"], h["sources"])
    out = bytearray(h["header_len"])
    vals = dict(h, tables_len=len(tables))
    for off, fmt, name in HDR_FIELDS:
        struct.pack_into(fmt, out, off, vals[name])
    out[248:248 + len(tables)] = tables
    struct.pack_into("<I", out, len(out) - 4, crc(bytes(out[:-4])))
    return bytes(out)


def statement(h, header, frame_id, first, last, count, prev_hash, frame_hash, after) -> bytes:
    st = bytearray(352)
    for off, fmt, val in [
            (0, "8s", b"EDGESIG3"), (8, "16s", h["device_id"]), (24, "<Q", h["segment_id"]),
            (32, "<Q", frame_id), (40, "<Q", first), (48, "<Q", last), (56, "<I", count),
            (60, "<I", h["key_epoch"]), (64, "16s", h["key_id"]), (80, "<Q", h["rollback_ctr"]),
            (88, "32s", h["fw_ver_hash"]), (120, "32s", prev_hash), (152, "32s", frame_hash),
            (184, "<B", h["sig_alg"]), (185, "<B", h["key_src"]), (186, "<H", h["sig_len"]),
            (192, "16s", h["store_uuid"]), (208, "<Q", h["tail_segment_id"]),
            (216, "<Q", after["mono_hwm"]), (224, "<Q", after["records_total"]),
            (232, "<Q", after["lost_total"]), (240, "<Q", after["dropped_total"]),
            (248, "<Q", after["uplink_cursor"]), (256, "<I", h["wrap_count"]),
            (260, "<I", h["unexp_rst"]), (264, "<I", after["bo_event"]),
            (268, "<I", after["ecc_err_cnt"]), (272, "<I", after["clock_steps"]),
            (276, "<I", h["boot_seq"]),
            (280, "32s", hashlib.sha256(enc_tables(after["bad"], after["sources"])).digest()),
            (312, "<I", h["tail_slot"]), (316, "<I", h["ring_slots"]),
            (320, "32s", hashlib.sha256(header[:-4]).digest())]:
        struct.pack_into(fmt, st, off, val)
    return bytes(st)


META_FIELDS = [(0, "8s", "magic"), (8, "<H", "version"), (12, "<I", "meta_len"),
               (16, "16s", "store_uuid"), (32, "<Q", "generation"), (40, "<Q", "store_size"),
               (48, "<I", "sector_size"), (52, "<I", "segment_size"), (56, "<I", "ring_slots"),
               (60, "<I", "clean_flag"), (64, "<Q", "head_frame_id"),
               (72, "<Q", "head_segment_id"), (80, "<I", "head_slot"), (84, "<I", "head_offset"),
               (88, "32s", "hash_head"), (120, "<I", "head_crc"), (124, "<I", "wrap_count"),
               (128, "<Q", "tail_segment_id"), (136, "<I", "tail_slot"), (140, "<I", "unexp_rst"),
               (144, "<Q", "rollback_ctr"), (152, "<Q", "mono_hwm"),
               (160, "<Q", "records_total"), (168, "<Q", "lost_total"),
               (176, "<Q", "dropped_total"), (184, "<Q", "uplink_cursor"), (192, "<I", "bo_event"),
               (196, "<I", "ecc_err_cnt"), (200, "<I", "clock_steps"), (204, "<I", "boot_seq"),
               (208, "16s", "device_id"), (224, "<q", "format_wall_ns"), (232, "16s", "boot_id"),
               (252, "<B", "rtc_state"), (508, "<I", "tables_len")]
META_OFF = {name: off for off, _, name in META_FIELDS}
META_BASE = {"A": 0, "B": 16384}


# ---------------------------------------------------------------------------
# Keys (section 3.5)
# ---------------------------------------------------------------------------

class Key:
    def __init__(self, alg: int, epoch: int = 1):
        self.alg, self.epoch = alg, (epoch if alg else 0)
        self.der, self.secret = b"", b""
        if alg == 1:
            self.priv = ed25519.Ed25519PrivateKey.generate()
        elif alg == 2:
            self.priv = ec.generate_private_key(ec.SECP256R1())
        elif alg == 3:
            self.secret = os.urandom(32)
        if alg in (1, 2):
            self.der = self.priv.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            self.key_id = hashlib.sha256(self.der).digest()[:16]
        elif alg == 3:
            self.key_id = hashlib.sha256(b"EDGELOG-HMAC-KEY-ID" + self.secret).digest()[:16]
        else:
            self.key_id = bytes(16)

    def at(self, epoch: int) -> Key:
        """The same key material at another epoch."""
        k = Key.__new__(Key)
        k.__dict__.update(self.__dict__)
        k.epoch = epoch
        return k

    @property
    def sig_len(self):
        return SIG_LEN[self.alg]

    def sign(self, msg: bytes) -> bytes:
        if self.alg == 1:
            return self.priv.sign(msg)
        if self.alg == 2:
            r, s = utils.decode_dss_signature(self.priv.sign(msg, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        if self.alg == 3:
            return hmac.new(self.secret, msg, hashlib.sha256).digest()
        return b""

    def write(self, path: Path) -> str:
        if self.alg == 3:
            path.write_text(self.secret.hex() + "\n")
        else:
            path.write_bytes(self.priv.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        return str(path)


ED = Key(1)
ED_OTHER = Key(1)
ED_NEW = Key(1)
EC = Key(2)
HM = Key(3)
UNSIGNED = Key(0)


# ---------------------------------------------------------------------------
# The writer (A.5 to A.10)
# ---------------------------------------------------------------------------

STATE_IDS = {"lost_total": 1, "dropped_total": 2, "uplink_cursor": 3, "bo_event": 4,
             "ecc_err_cnt": 5, "clock_steps": 6}


class Seg:
    def __init__(self, hdr, header, slot):
        self.hdr, self.header, self.slot = hdr, header, slot
        self.enc, self.prev_block, self.pos, self.frames = Enc(), b"", hdr["header_len"], 0
        self.last_hash, self.next_fid = hdr["prev_hash"], hdr["first_frame_id"]


class W6:
    """A format 6 writer: one segment per session, frames appended."""

    def __init__(self, key: Key = ED, slots: int = 6, seg: int = SEG, sector: int = SECTOR,
                 bad=()):
        self.key, self.slots, self.seg, self.sector = key, slots, seg, sector
        self.img = bytearray(RING + slots * seg)
        self.st = dict(mono_hwm=0, records_total=0, lost_total=0, dropped_total=0,
                       uplink_cursor=0, bo_event=0, ecc_err_cnt=0, clock_steps=0)
        self.sources: list[list] = []
        self.bad: list[tuple] = list(bad)
        self.frame_id, self.last_hash, self.seg_id = 0, ZERO, 0
        self.segs: dict[int, dict] = {}
        self.frames: dict[int, dict] = {}
        self.tail, self.wrap = (1, self.next_slot(slots - 1)), 0
        self.rollback = self.unexp = self.boot_seq = 0
        self.cur: Seg | None = None
        self.gen = -1
        self.mono = 0
        self.seqs: dict[bytes, int] = {}
        self.pending: list = []
        self.fw = FW6
        self.hdr_over: dict = {}
        self.meta(clean=1)

    # -- helpers ---------------------------------------------------------------

    def slot_off(self, slot):
        return RING + slot * self.seg

    def next_slot(self, s):
        bad = {b[0] for b in self.bad}
        while True:
            s = (s + 1) % self.slots
            if s not in bad:
                return s

    def rec(self, source=b"temp", rtype=1, payload=None, seq=None):
        self.mono += 1
        if seq is None:
            seq = self.seqs.get(source, 0) + 1
        self.seqs[source] = max(seq, self.seqs.get(source, 0))
        if payload is None:
            payload = b'{"n":%d}' % seq
        return Rec(source, seq, self.mono, payload, rtype)

    def evidence(self, rtype, obj, source=b"edgelog"):
        payload = obj if isinstance(obj, bytes) else json.dumps(
            obj, separators=(",", ":")).encode()
        return self.rec(source, rtype, payload)

    # -- sessions --------------------------------------------------------------

    def open(self, unclean=False, key=None):
        if key is not None:
            self.key = key
        self.rollback += 1
        self.boot_seq += 1
        self.unexp += 1 if unclean else 0
        self.cur = None
        self.meta(clean=0)

    def close(self):
        self.meta(clean=1)

    def start_segment(self):
        slot = (self.next_slot(self.slots - 1) if self.seg_id == 0
                else self.next_slot(self.segs[self.seg_id]["slot"]))
        if self.seg_id and slot <= self.segs[self.seg_id]["slot"]:
            self.wrap += 1
        good = self.slots - len(self.bad)
        if self.seg_id and self.seg_id - self.tail[0] + 1 >= good:
            # The ring is full: reclaim the oldest segment (A.10 gap record).
            old = self.segs[self.tail[0]]
            lost = old["records_after"] - old["hdr"]["records_total"]
            self.st["lost_total"] += lost
            self.pending.append(dict(reason="ring_overwrite", lost_segment_id=self.tail[0],
                                     lost_records=lost, first_mono=old["first_mono"],
                                     last_mono=old["last_mono"]))
            self.tail = (self.tail[0] + 1, self.next_slot(old["slot"]))
        self.seg_id += 1
        h = dict(magic=b"EDGELOGS", version=6, header_len=self.sector, store_uuid=UUID6,
                 segment_id=self.seg_id, first_frame_id=self.frame_id + 1, slot_index=slot,
                 wrap_count=self.wrap, prev_hash=self.last_hash, device_id=DEV6,
                 key_id=self.key.key_id, key_epoch=self.key.epoch, sig_alg=self.key.alg,
                 key_src=1 if self.key.alg else 0, sig_len=self.key.sig_len,
                 fw_ver_hash=self.fw, rollback_ctr=self.rollback,
                 tail_segment_id=self.tail[0], tail_slot=self.tail[1], ring_slots=self.slots,
                 unexp_rst=self.unexp, boot_seq=self.boot_seq, bad=list(self.bad),
                 sources=[list(s) for s in self.sources], **self.st)
        h.update(self.hdr_over)
        self.hdr_over = {}
        # A writer steered by other numbers continues from what its header says.
        for k in self.st:
            self.st[k] = h[k]
        self.tail, self.wrap = (h["tail_segment_id"], h["tail_slot"]), h["wrap_count"]
        header = header_bytes(h)
        off = self.slot_off(slot)
        self.img[off:off + self.seg] = bytes(self.seg)
        self.img[off:off + len(header)] = header
        self.cur = Seg(h, header, slot)
        self.segs[self.seg_id] = dict(slot=slot, hdr=h, header=header,
                                      first=self.frame_id + 1, records_after=h["records_total"],
                                      first_mono=None, last_mono=None)

    def commit(self, n=2, extra=(), state=None, deflated=False, meta=None, recs=None,
               sign=None, end=False):
        """One frame: n data records (then `extra` evidence records and a
        pending gap record), a state list from `state` ({name: value}).
        `meta`: write the metadata after it (default: at a segment's first
        frame, as the writer does); `end`: the segment ends (a rotation)."""
        first_of_segment = self.cur is None
        if self.cur is None:
            self.start_segment()
        cur, h = self.cur, self.cur.hdr
        records = list(recs) if recs is not None else [self.rec() for _ in range(n)]
        records += [self.evidence(rtype, obj) for rtype, obj in extra]
        records += [self.evidence(2, p) for p in self.pending]
        self.pending = []
        block = cur.enc.block(records)
        stored = deflate(block, cur.prev_block) if deflated else block
        cur.prev_block = block
        after = dict(self.st)
        state_list = sorted((STATE_IDS[k], v) for k, v in (state or {}).items())
        for k, v in (state or {}).items():
            after[k] = v
        after["records_total"] += sum(1 for r in records if r.rtype == 1)
        if records:
            after["mono_hwm"] = records[-1].mono
        sources = [list(s) for s in self.sources]
        for r in records:
            for s in sources:
                if s[0] == r.source:
                    s[1] = r.seq
                    break
            else:
                sources.append([r.source, r.seq])
        after["bad"], after["sources"] = list(self.bad), sources
        flags = (1 if deflated else 0) | (2 if state_list else 0)
        sl = (varint(len(state_list)) + b"".join(bytes([i]) + varint(v) for i, v in state_list)
              if state_list else b"")
        body = varint(len(records)) + varint(len(block)) + sl + stored
        sig_len = h["sig_len"]
        n_len = 3 + len(body) + sig_len + 4 + 1
        while 3 + len(varint(n_len)) + len(body) + sig_len + 4 != n_len:
            n_len = 3 + len(varint(n_len)) + len(body) + sig_len + 4
        prefix = b"EF" + bytes([flags]) + varint(n_len) + body
        frame_hash = hashlib.sha256(prefix).digest()
        fid = cur.next_fid
        first = records[0].mono if records else 0
        last = records[-1].mono if records else 0
        st = statement(h, cur.header, fid, first, last, len(records), cur.last_hash,
                       frame_hash, after)
        signer = sign or self.key
        sig = signer.sign(st) if h["sig_alg"] else b""
        sig = sig[:sig_len].ljust(sig_len, b"\0")
        frame_crc = crc(h["store_uuid"] + struct.pack("<Q", h["segment_id"]) + prefix + sig)
        frame = prefix + sig + struct.pack("<I", frame_crc)
        pos = cur.pos
        assert pos + len(frame) <= self.seg, "segment full"
        off = self.slot_off(cur.slot)
        self.img[off + pos:off + pos + len(frame)] = frame
        cur.pos = -(-(pos + len(frame)) // self.sector) * self.sector
        cur.frames += 1
        self.frames[fid] = dict(seg=h["segment_id"], slot=cur.slot, offset=pos,
                                length=len(frame), hash=frame_hash, crc=frame_crc,
                                statement=st, signature=sig, state=after, records=records)
        segd = self.segs[h["segment_id"]]
        segd["records_after"] = after["records_total"]
        if records:
            segd["first_mono"] = segd["first_mono"] or records[0].mono
            segd["last_mono"] = records[-1].mono
        self.frame_id, self.last_hash = fid, frame_hash
        cur.last_hash, cur.next_fid = frame_hash, fid + 1
        self.st = {k: v for k, v in after.items() if k not in ("bad", "sources")}
        self.sources = sources
        if meta or (meta is None and first_of_segment):
            self.meta(clean=0)
        if end:
            self.cur = None
        return fid

    def rotation_record(self, new: Key, endorse_with: Key | None = None) -> dict:
        """Section 4 type 8's payload: the old key endorses the new one."""
        old = self.key
        spki = new.der
        msg = struct.pack("<8s16s16sIIB7x16s32s", b"EDGEROT1", DEV6, old.key_id, old.epoch,
                          new.epoch, new.alg, new.key_id,
                          hashlib.sha256(spki).digest() if spki else ZERO)
        endorsement = (endorse_with or old).sign(msg)
        obj = {"old_key_id": old.key_id.hex(), "old_epoch": old.epoch,
               "new_key_id": new.key_id.hex(), "new_epoch": new.epoch,
               "new_alg": ALG_NAME[new.alg], "new_public_key": spki.hex(),
               "endorsement": endorsement.hex()}
        return obj

    def rotate(self, new: Key, endorse_with: Key | None = None):
        """A rotation record in a frame of the current segment, signed by the
        old key; the segment ends there and the next is the new key's."""
        obj = self.rotation_record(new, endorse_with)
        fid = self.commit(1, extra=[(8, obj)], meta=True, end=True)
        self.key = new
        return fid

    # -- metadata (A.8) ----------------------------------------------------------

    def meta(self, clean=0, gen=None, slot=None, head=None, **over):
        self.gen = self.gen + 1 if gen is None else gen
        f = self.frames.get(self.frame_id if head is None else head)
        fields = dict(magic=b"EDGELOGM", version=6, meta_len=max(1024, self.sector),
                      store_uuid=UUID6,
                      generation=self.gen, store_size=len(self.img), sector_size=self.sector,
                      segment_size=self.seg, ring_slots=self.slots, clean_flag=clean,
                      head_frame_id=0, head_segment_id=0, head_slot=0, head_offset=0,
                      hash_head=ZERO, head_crc=0, wrap_count=self.wrap,
                      tail_segment_id=self.tail[0], tail_slot=self.tail[1],
                      unexp_rst=self.unexp, rollback_ctr=self.rollback, boot_seq=self.boot_seq,
                      device_id=DEV6, format_wall_ns=W0, boot_id=bytes(range(16)),
                      rtc_state=1, **self.st)
        bad = over.pop("bad", None)
        tables = enc_tables(self.bad if bad is None else bad, self.sources)
        if f is not None:
            fields.update(head_frame_id=head or self.frame_id, head_segment_id=f["seg"],
                          head_slot=f["slot"], head_offset=f["offset"], hash_head=f["hash"],
                          head_crc=f["crc"],
                          **{k: v for k, v in f["state"].items() if k not in ("bad", "sources")})
            tables = enc_tables(f["state"]["bad"] if bad is None else bad,
                                f["state"]["sources"])
        fields.update(over)
        out = bytearray(fields["meta_len"])
        fields.setdefault("tables_len", len(tables))
        for off, fmt, name in META_FIELDS:
            struct.pack_into(fmt, out, off, fields[name])
        out[512:512 + len(tables)] = tables
        struct.pack_into("<I", out, len(out) - 4, crc(bytes(out[:-4])))
        name = slot or "AB"[self.gen % 2]
        base = META_BASE[name]
        self.img[base:base + 16384] = bytes(16384)
        self.img[base:base + len(out)] = out
        return name

    # -- the signed head (A.11.1) --------------------------------------------------

    def head_line(self, fid=None) -> bytes:
        f = self.frames[fid or self.frame_id]
        return render_head(f["statement"], f["signature"])

    # -- damage ------------------------------------------------------------------

    def frame_at(self, fid):
        f = self.frames[fid]
        return self.slot_off(f["slot"]) + f["offset"]

    def refix_frame(self, fid):
        """Recompute a frame's CRC after an edit (seed: store_uuid, segment_id)."""
        f = self.frames[fid]
        start = self.frame_at(fid)
        end = start + f["length"] - 4
        seg_id = self.segs[f["seg"]]["hdr"]["segment_id"]
        struct.pack_into("<I", self.img, end,
                         crc(UUID6 + struct.pack("<Q", seg_id) + bytes(self.img[start:end])))

    def set_header(self, slot, offset, fmt, value):
        base = self.slot_off(slot)
        struct.pack_into(fmt, self.img, base + offset, value)
        hl = struct.unpack_from("<I", self.img, base + 12)[0]
        struct.pack_into("<I", self.img, base + hl - 4,
                         crc(bytes(self.img[base:base + hl - 4])))

    def set_meta(self, name, field_name, value, fmt=None):
        base = META_BASE[name]
        for off, f, n in META_FIELDS:
            if n == field_name:
                fmt = fmt or f
                struct.pack_into(fmt, self.img, base + off, value)
        meta_len = struct.unpack_from("<I", self.img, base + 12)[0]
        struct.pack_into("<I", self.img, base + meta_len - 4,
                         crc(bytes(self.img[base:base + meta_len - 4])))

    def chosen(self):
        """The metadata slot with the higher generation."""
        ga = struct.unpack_from("<Q", self.img, 32)[0]
        gb = struct.unpack_from("<Q", self.img, 16384 + 32)[0]
        return "A" if ga >= gb else "B"

    def set_both(self, field_name, value):
        for name in "AB":
            if self.img[META_BASE[name]:META_BASE[name] + 8] == b"EDGELOGM":
                self.set_meta(name, field_name, value)


def render_head(st: bytes, sig: bytes) -> bytes:
    """A.11.1's line, from the statement bytes at their A.7 offsets."""
    def q(off):
        return struct.unpack_from("<Q", st, off)[0]
    return ('{"format":"edgelog-head","version":3,"device_id":"%s","store_uuid":"%s",'
            '"segment_id":%d,"frame_id":%d,"hash_head":"%s","rollback_ctr":%d,'
            '"tail_segment_id":%d,"key_epoch":%d,"key_id":"%s","sig_alg":"%s",'
            '"statement":"%s","signature":"%s"}\n'
            % (st[8:24].hex(), st[192:208].hex(), q(24), q(32), st[152:184].hex(), q(80),
               q(208), struct.unpack_from("<I", st, 60)[0], st[64:80].hex(),
               ALG_NAME[st[184]], st.hex(), sig.hex())).encode()


# ---------------------------------------------------------------------------
# Stores used by many tests
# ---------------------------------------------------------------------------

def honest(key=ED, sessions=3, frames=3, slots=6, close=True):
    """sessions x frames, one segment per session, odd frames deflated."""
    w = W6(key, slots)
    for _ in range(sessions):
        w.open()
        for i in range(frames):
            w.commit(2, deflated=i % 2 == 1)
        if close:
            w.close()
    return w


def wrapped(key=ED, sessions=8, frames=2, slots=5):
    """A ring that went round: segments 1..3 reclaimed by 6..8, each with a
    ring_overwrite gap record."""
    return honest(key, sessions, frames, slots)


# ---------------------------------------------------------------------------
# Running the verifier
# ---------------------------------------------------------------------------

@dataclass
class Result:
    code: int
    lines: list
    text: str
    segs: list = field(default_factory=list)
    frame_lines: list = field(default_factory=list)
    findings: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    def seg(self, sid):
        return next(s for s in self.segs if s["segment_id"] == sid)

    @property
    def reasons(self):
        return self.summary["reasons"]

    def note_codes(self):
        return [n["note"] for n in self.notes]


def run(tmp_path, w, keys=(ED,), anchor=None, extra=(), as_json=True, main=None):
    img = tmp_path / "store.img"
    img.write_bytes(bytes(w.img if isinstance(w, W6) else w))
    args = ["--device", str(img)]
    for i, k in enumerate(keys):
        args += ["--trust", k if isinstance(k, str) else k.write(tmp_path / f"key{i}")]
    if anchor is not None:
        (tmp_path / "anchor.json").write_bytes(anchor)
        args += ["--anchor", str(tmp_path / "anchor.json")]
    args += list(extra)
    if as_json:
        args.append("--json")
    out, err = io.StringIO(), io.StringIO()
    code = (main or v6.main)(args, out=out, err=err)
    text = out.getvalue()
    r = Result(code, [], text)
    if as_json and code != 2:
        r.lines = [json.loads(x) for x in text.splitlines()]
        for line in r.lines:
            {"segment": r.segs, "frame": r.frame_lines, "finding": r.findings,
             "note": r.notes}.get(line["kind"], []).append(line)
            if line["kind"] == "summary":
                r.summary = line
    return r


def findings(r):
    return [(f["reason"], f["offset"]) for f in r.findings]


def passes(r):
    assert r.code == 0, r.text
    assert r.summary["verdict"] == "PASS" and not r.findings and r.reasons == []


# ===========================================================================
# Honest stores
# ===========================================================================

@pytest.mark.parametrize("key", [ED, EC, HM], ids=["ed25519", "ecdsa-p256", "hmac-sha256"])
def test_honest_multi_segment_store_passes(tmp_path, key):
    w = honest(key)
    r = run(tmp_path, w, keys=(key,))
    passes(r)
    s = r.summary
    assert (s["segments"], s["passed"], s["failed"]) == (3, 3, 0)
    assert (s["frames"], s["frames_passed"], s["frames_failed"]) == (9, 9, 0)
    assert s["signed"] is True and s["sig_alg"] == ALG_NAME[key.alg]
    assert [(x["segment_id"], x["slot"], x["offset"], x["first_frame_id"], x["frames"],
             x["passed"], x["reason"], x["key_epoch"]) for x in r.segs] == [
        (1, 0, RING, 1, 3, 3, None, 1), (2, 1, RING + SEG, 4, 3, 3, None, 1),
        (3, 2, RING + 2 * SEG, 7, 3, 3, None, 1)]
    assert r.note_codes() == ["truncation_not_excluded"]
    assert (r.notes[0]["segment_id"], r.notes[0]["frame_id"]) == (3, 9)


def test_json_line_formats_and_key_order(tmp_path):
    w = honest()
    w.img[w.frame_at(2) + 40] ^= 1        # frame 2 of segment 1: a stored record block
    w.refix_frame(2)
    r = run(tmp_path, w)
    kinds = [line["kind"] for line in r.lines]
    assert kinds == ["segment", "frame", "segment", "segment", "note", "summary"]
    assert list(r.segs[0]) == ["kind", "segment_id", "slot", "offset", "first_frame_id",
                               "frames", "passed", "sig_verify", "reason", "key_epoch"]
    assert list(r.frame_lines[0]) == ["kind", "segment_id", "frame_id", "frames", "offset",
                                      "reason", "key_epoch"]
    assert list(r.notes[0]) == ["kind", "note", "segment_id", "frame_id", "detail"]
    assert list(r.summary) == ["kind", "verdict", "segments", "passed", "failed", "frames",
                               "frames_passed", "frames_failed", "signed", "sig_alg", "reasons"]
    assert r.segs[0]["sig_verify"] == "FAIL" and r.segs[1]["sig_verify"] == "PASS"
    # No spaces, one object per line, "\n" after each.
    assert r.text.endswith("}\n")
    for raw in r.text.splitlines():
        assert raw == json.dumps(json.loads(raw), separators=(",", ":"))


def test_finding_line_format(tmp_path):
    w = honest()
    w.set_meta(w.chosen(), "records_total", 1)
    r = run(tmp_path, w)
    assert list(r.findings[0]) == ["kind", "reason", "offset", "detail"]


def test_unsigned_store_needs_allow_unsigned(tmp_path):
    w = honest(UNSIGNED)
    r = run(tmp_path, w)
    assert r.code == 1 and r.reasons == ["unsigned"]
    assert all(s["reason"] == "unsigned" and s["offset"] == RING + s["slot"] * SEG
               and s["passed"] == 0 and s["frames"] == 3 for s in r.segs)
    assert not r.frame_lines          # frames failing with their segment's reason: counted
    assert r.summary["frames_failed"] == 9
    r = run(tmp_path, w, extra=["--allow-unsigned"])
    passes(r)
    assert r.summary["signed"] is False and r.summary["sig_alg"] == "unsigned"
    assert r.summary["frames_passed"] == 9


def test_empty_store_passes(tmp_path):
    w = W6()
    r = run(tmp_path, w)
    passes(r)
    assert r.segs == [] and r.summary["segments"] == 0 and r.summary["signed"] is False
    assert [(n["note"], n["segment_id"], n["frame_id"]) for n in r.notes] == [
        ("truncation_not_excluded", 0, 0)]


def test_adopted_frames_and_segments_pass(tmp_path):
    # The metadata names frame 2; frames 3..7 (and segment 2, 3) were
    # committed without a metadata write: the forward scan adopts them.
    w = W6()
    w.open()
    w.commit(2)
    w.commit(2, meta=True)
    head = w.frame_id
    gen = w.gen
    w.commit(2)
    w.open()
    w.commit(2, meta=False)
    w.commit(2)
    w.open()
    w.commit(2, meta=False)
    # Put the metadata back to naming frame 2, both slots.
    w.meta(clean=0, head=head, gen=gen, rollback_ctr=1, boot_seq=1)
    w.meta(clean=0, head=head, gen=gen - 1, rollback_ctr=1, boot_seq=1)
    r = run(tmp_path, w)
    passes(r)
    assert [s["frames"] for s in r.segs] == [3, 2, 1]


def test_wrapped_ring_passes_with_ring_overwrite_and_not_retained_notes(tmp_path):
    w = wrapped()
    r = run(tmp_path, w)
    passes(r)
    assert [s["segment_id"] for s in r.segs] == [4, 5, 6, 7, 8]
    codes = r.note_codes()
    assert codes[0] == "not_retained"
    assert (r.notes[0]["segment_id"], r.notes[0]["frame_id"]) == (3, w.segs[4]["first"] - 1)
    gaps = [n for n in r.notes if n["note"] == "ring_overwrite"]
    # Gap records for segments 4..5 are in retained segments 6 (lost 1), 7 (2), 8 (3).
    assert [(n["segment_id"], n["frame_id"]) for n in gaps] == [
        (6, w.segs[6]["first"]), (7, w.segs[7]["first"]), (8, w.segs[8]["first"])]
    assert codes[-1] == "truncation_not_excluded"


def test_dispatch_from_edgelog_verify(tmp_path):
    import edgelog_verify as ver
    w = honest()
    a = run(tmp_path, w, main=ver.main)
    b = run(tmp_path, w)
    passes(a)
    assert a.text == b.text
    t = run(tmp_path, w, main=ver.main, as_json=False)
    assert t.code == 0 and "(format 6)" in t.text


def test_dispatch_subprocess(tmp_path):
    w = honest()
    img = tmp_path / "s.img"
    img.write_bytes(bytes(w.img))
    key = ED.write(tmp_path / "k.pem")
    for script in ("edgelog_verify.py", "edgelog_verify6.py"):
        p = subprocess.run([sys.executable, str(HERE / script), "--device", str(img),
                            "--trust", key, "--json"], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout.splitlines()[-1])["verdict"] == "PASS"


def test_dispatch_slot_b_only(tmp_path):
    # Slot A wiped, slot B valid at 16384: still a format 6 store.
    w = honest()
    w.img[0:16384] = bytes(16384)
    import edgelog_verify as ver
    r = run(tmp_path, w, main=ver.main)
    assert r.code == 1 and findings(r) == [("crc_mismatch", 0)]


def test_usage_errors_exit_2(tmp_path):
    w = honest()
    assert run(tmp_path, w, extra=["--allow-fw", "zz"]).code == 2
    out, err = io.StringIO(), io.StringIO()
    assert v6.main(["--device", str(tmp_path / "missing"), "--trust",
                    ED.write(tmp_path / "k")], out=out, err=err) == 2
    with pytest.raises(SystemExit) as exc:
        v6.main(["--device", "x"], out=out, err=io.StringIO())
    assert exc.value.code == 2


# ===========================================================================
# Item 1: metadata slots
# ===========================================================================

def test_not_a_store(tmp_path):
    w = honest()
    w.img[0:100] = b"\xff" * 100
    w.img[16384:16484] = b"\xff" * 100
    r = run(tmp_path, w, main=v6.main)
    assert r.code == 1 and r.segs == []
    assert findings(r) == [("crc_mismatch", 0), ("crc_mismatch", 16384), ("not_a_store", 0)]


def test_newer_format_is_not_a_store(tmp_path):
    w = honest()
    struct.pack_into("<H", w.img, 16384 + 8, 7)
    r = run(tmp_path, w)
    assert r.code == 1 and r.reasons == ["not_a_store"] and "newer format" in r.text


def test_invalid_slot_is_torn_metadata_write_even_when_clean(tmp_path):
    # A.11 item 1: the write that marks a clean store open again lands beside a
    # chosen slot that still says clean, so a cut one is a note there too.
    w = honest()
    other = "A" if w.chosen() == "B" else "B"
    w.img[META_BASE[other] + 100] ^= 1
    r = run(tmp_path, w)
    passes(r)
    assert r.notes[0]["note"] == "torn_metadata_write"


def test_invalid_slot_is_torn_metadata_write_before_recovery(tmp_path):
    w = honest(close=False)
    other = "A" if w.chosen() == "B" else "B"
    w.img[META_BASE[other] + 100] ^= 1
    r = run(tmp_path, w)
    passes(r)
    assert r.notes[0]["note"] == "torn_metadata_write"
    assert (r.notes[0]["segment_id"], r.notes[0]["frame_id"]) == (0, 0)
    # A wiped slot is no cut write.
    w.img[META_BASE[other]:META_BASE[other] + 16384] = bytes(16384)
    r = run(tmp_path, w)
    assert findings(r) == [("crc_mismatch", META_BASE[other])]


def test_fresh_format_slot_b_zero_is_nothing(tmp_path):
    w = W6()            # A: generation 0, head_frame_id 0; B: all zero
    r = run(tmp_path, w)
    passes(r)


# ===========================================================================
# Item 3: segment checks S1 to S9
# ===========================================================================

def test_deleted_segment_is_gap(tmp_path):
    w = honest()
    w.img[w.slot_off(1):w.slot_off(2)] = bytes(SEG)
    r = run(tmp_path, w)
    assert r.code == 1 and r.reasons == ["gap"]
    s = r.seg(2)
    assert (s["reason"], s["offset"], s["first_frame_id"], s["frames"]) == (
        "gap", RING + SEG, None, None)
    assert r.seg(3)["reason"] is None      # its chain point is unreadable: no check
    assert r.summary["frames"] == 6


def test_header_damage_is_crc_mismatch_at_slot_start(tmp_path):
    w = honest()
    w.img[w.slot_off(1) + 200] ^= 1
    r = run(tmp_path, w)
    assert r.seg(2)["reason"] == "crc_mismatch" and r.seg(2)["offset"] == RING + SEG
    assert r.seg(2)["key_epoch"] == 0


@pytest.mark.parametrize("offset,fmt,value", [
    (32, "<Q", 2**62), (40, "<Q", 2**62), (160, "<Q", 2**62), (224, "<I", 2**31),
    (240, "<I", 2**31), (168, "<Q", 0), (176, "<I", 6)])
def test_header_outside_a9_bounds_is_crc_mismatch(tmp_path, offset, fmt, value):
    w = honest()
    w.set_header(1, offset, fmt, value)
    r = run(tmp_path, w)
    assert r.seg(2)["reason"] == "crc_mismatch" and r.seg(2)["offset"] == RING + SEG


def test_foreign_store_segment(tmp_path):
    w = honest()
    w.set_header(1, 16, "16s", OTHER_UUID)
    r = run(tmp_path, w)
    assert r.seg(2)["reason"] == "foreign_segment" and r.seg(2)["key_epoch"] == 1
    w = honest()
    w.set_header(1, 88, "16s", OTHER_DEV)
    r = run(tmp_path, w)
    assert r.seg(2)["reason"] == "foreign_segment"


def test_swapped_segments_are_reordered(tmp_path):
    w = honest(sessions=4)
    a, b = w.slot_off(1), w.slot_off(2)
    w.img[a:a + SEG], w.img[b:b + SEG] = w.img[b:b + SEG], w.img[a:a + SEG]
    r = run(tmp_path, w)
    assert [s["reason"] for s in r.segs] == [None, "reordered", "reordered", None]
    assert r.seg(2)["first_frame_id"] is None


def test_higher_id_in_slot_is_gap_lower_is_chain_break(tmp_path):
    w = honest()
    w.set_header(1, 32, "<Q", 5)
    assert run(tmp_path, w).seg(2)["reason"] == "gap"
    w = honest()
    w.set_header(2, 32, "<Q", 1)
    assert run(tmp_path, w).seg(3)["reason"] == "chain_break"


def test_old_lap_copy_replacing_a_segment_is_chain_break(tmp_path):
    # Slot 0 held segment 1 before segment 6 reclaimed it; putting the old
    # lap back in place is a segment of a lower id in its own slot.
    w = W6(slots=5)
    saved = None
    for i in range(7):
        w.open()
        w.commit(2)
        w.commit(2)
        w.close()
        if i == 0:
            saved = bytes(w.img[w.slot_off(0):w.slot_off(1)])
    w.img[w.slot_off(0):w.slot_off(1)] = saved   # segment 6's slot
    r = run(tmp_path, w)
    assert r.seg(6)["reason"] == "chain_break"


@pytest.mark.parametrize("offset,fmt,value", [(124, "<B", 4), (126, "<H", 32)])
def test_bad_sig_alg_or_len_is_seal_mismatch(tmp_path, offset, fmt, value):
    w = honest()
    w.set_header(1, offset, fmt, value)
    r = run(tmp_path, w)
    s = r.seg(2)
    assert (s["reason"], s["offset"], s["first_frame_id"], s["frames"], s["key_epoch"]) == (
        "seal_mismatch", RING + SEG + 124, 4, 3, 1)


def test_chain_break_cases(tmp_path):
    w = honest()
    w.set_header(0, 40, "<Q", 2)                          # segment 1 not at frame 1
    assert run(tmp_path, w).seg(1)["reason"] == "chain_break"
    w = honest()
    w.set_header(1, 56, "32s", b"\x01" * 32)              # prev_hash not the chain point's
    r = run(tmp_path, w)
    assert r.seg(2)["reason"] == "chain_break" and r.seg(1)["reason"] is None
    w = honest()
    w.set_header(1, 40, "<Q", 1)                          # no frame between the two
    assert run(tmp_path, w).seg(2)["reason"] == "chain_break"
    w = honest()
    w.set_header(1, 40, "<Q", 1 + 16)                     # more than slot 0 can hold
    assert run(tmp_path, w).seg(2)["reason"] == "chain_break"


def test_segment_signed_by_a_chained_fork_is_chain_break(tmp_path):
    # A writer with the key signs a segment 2 that chains onto another frame 3.
    w = honest()
    w.set_header(1, 56, "32s", hashlib.sha256(b"elsewhere").digest())
    r = run(tmp_path, w)
    assert r.reasons == ["chain_break"]


def test_downgrade_to_unsigned_is_unsigned_even_when_allowed(tmp_path):
    w = W6(ED)
    w.open()
    w.commit(2)
    w.close()
    w.open(key=UNSIGNED)
    w.commit(2)
    w.close()
    r = run(tmp_path, w, extra=["--allow-unsigned"])
    assert r.seg(1)["reason"] is None and r.seg(2)["reason"] == "unsigned"
    assert "downgrade" in run(tmp_path, w, extra=["--allow-unsigned"], as_json=False).text


def test_unsigned_store_against_a_signed_anchor_is_unsigned(tmp_path):
    w = honest(UNSIGNED)
    signed = honest(ED)
    anchor = signed.head_line()
    r = run(tmp_path, w, anchor=anchor, extra=["--allow-unsigned"])
    assert all(s["reason"] == "unsigned" for s in r.segs)


def test_untrusted_key_is_unknown_key(tmp_path):
    w = honest()
    r = run(tmp_path, w, keys=(ED_OTHER,))
    assert r.reasons == ["unknown_key"] and all(s["passed"] == 0 for s in r.segs)
    # Another session signed by a key nobody trusts.
    w = honest()
    w.open(key=ED_OTHER)
    w.commit(2)
    w.close()
    r = run(tmp_path, w)
    assert [s["reason"] for s in r.segs] == [None, None, None, "unknown_key"]


def test_key_epoch_must_be_the_trusted_ones(tmp_path):
    w = honest(ED.at(2))
    assert run(tmp_path, w).reasons == ["unknown_key"]       # a key file is epoch 1
    d = tmp_path / "keydir"
    d.mkdir()
    ED.write(d / "signing-key.pub.pem")
    (d / "key.json").write_text(json.dumps({"alg": "ed25519", "key_epoch": 2,
                                            "key_id": ED.key_id.hex(), "key_src": "file"}))
    passes(run(tmp_path, w, keys=(str(d),)))


def test_edited_record_with_fixed_crc_is_bad_signature(tmp_path):
    w = honest()
    at = w.frame_at(4)                                  # segment 2's first frame, stored
    w.img[at + 30] ^= 1
    w.refix_frame(4)
    r = run(tmp_path, w)
    s = r.seg(2)
    assert s["reason"] == "bad_signature" and s["offset"] == at
    # The altered frame fails, and so do the frames decoded against it.
    assert [(f["frame_id"], f["reason"], f["offset"]) for f in r.frame_lines][0] == (
        4, "bad_signature", at)
    assert s["passed"] < 3 and r.seg(3)["reason"] is None


def test_flipped_signature_is_bad_signature(tmp_path):
    w = honest()
    f = w.frames[8]
    at = w.frame_at(8) + f["length"] - 4 - 10
    w.img[at] ^= 1
    w.refix_frame(8)
    r = run(tmp_path, w)
    assert [(x["frame_id"], x["frames"], x["reason"]) for x in r.frame_lines] == [
        (8, 1, "bad_signature")]
    assert r.seg(3)["passed"] == 2 and r.summary["frames_failed"] == 1


def test_swapped_frames_inside_a_segment_fail_their_signatures(tmp_path):
    w = W6()
    w.open()
    for _ in range(4):
        w.commit(2)
    w.open()
    w.commit(2)
    w.close()
    a, b = w.frame_at(2), w.frame_at(3)
    fa, fb = bytes(w.img[a:a + SECTOR]), bytes(w.img[b:b + SECTOR])
    w.img[a:a + SECTOR], w.img[b:b + SECTOR] = fb, fa
    r = run(tmp_path, w)
    assert r.seg(1)["reason"] == "bad_signature"
    assert {f["frame_id"] for f in r.frame_lines} >= {2, 3}
    assert r.seg(2)["reason"] is None


def test_deleted_frame_below_head_is_gap_frame_run(tmp_path):
    w = W6()
    w.open()
    for _ in range(4):
        w.commit(2)
    w.open()
    w.commit(2)
    w.close()
    at = w.frame_at(3)
    w.img[at:at + SECTOR] = bytes(SECTOR)         # frame 3 of 4 zeroed: 3 and 4 missing
    r = run(tmp_path, w)
    fl = r.frame_lines
    assert [(f["frame_id"], f["frames"], f["offset"], f["reason"]) for f in fl] == [
        (3, 2, at, "gap")]
    s = r.seg(1)
    assert (s["reason"], s["offset"], s["frames"], s["passed"]) == ("gap", at, 4, 2)
    assert r.summary["frames_failed"] == 2


def test_undecodable_frame_below_head_is_crc_mismatch_run(tmp_path):
    w = W6()
    w.open()
    for _ in range(3):
        w.commit(2)
    w.open()
    w.commit(2)
    w.close()
    at = w.frame_at(2)
    w.img[at + 20] ^= 0xFF                     # no CRC fix: the walk ends crc_mismatch
    r = run(tmp_path, w)
    assert [(f["frame_id"], f["frames"], f["reason"]) for f in r.frame_lines] == [
        (2, 2, "crc_mismatch")]
    assert "crc_mismatch" in r.text


def test_state_value_going_back_below_head_is_sequence_regression(tmp_path):
    w = W6()
    w.open()
    w.commit(2, state={"dropped_total": 5})
    w.commit(2, state={"dropped_total": 7})
    w.open()
    w.commit(2)
    w.close()
    at = w.frame_at(2)
    data = bytes(w.img[at:at + 64])
    i = data.index(bytes([1, 2, 7]))           # state list: n 1, id 2, value 7
    w.img[at + i + 2] = 3
    w.refix_frame(2)
    r = run(tmp_path, w)
    assert [(f["frame_id"], f["reason"]) for f in r.frame_lines] == [(2, "sequence_regression")]


def test_fw_not_allowed(tmp_path):
    w = honest()
    r = run(tmp_path, w, extra=["--allow-fw", FW_OTHER.hex()])
    assert r.reasons == ["fw_not_allowed"] and all(s["passed"] == 0 for s in r.segs)
    assert all(s["offset"] == RING + s["slot"] * SEG for s in r.segs)
    passes(run(tmp_path, w, extra=["--allow-fw", FW_OTHER.hex(), FW6.hex()]))


def test_lower_rollback_ctr_is_rollback(tmp_path):
    w = honest()
    w.rollback = 1                              # a writer steered by an older anchor
    w.open()
    w.commit(2)
    w.close()
    r = run(tmp_path, w)
    assert r.seg(4)["reason"] == "rollback" and r.reasons == ["rollback"]


@pytest.mark.parametrize("over", [dict(boot_seq=1), dict(unexp_rst=1), dict(records_total=1),
                                  dict(mono_hwm=1), dict(tail_segment_id=1, tail_slot=5)])
def test_header_going_backward_is_sequence_regression(tmp_path, over):
    def build(over):
        w = W6()
        w.unexp = 3
        for _ in range(3):
            w.open()
            w.commit(2)
            w.close()
        w.open()
        w.tail = (2, 1)                       # the tail moved on: T = 2
        w.commit(2)
        w.close()
        w.open()
        w.hdr_over = over
        w.commit(2)
        w.close()
        return w
    passes(run(tmp_path, build({})))
    r = run(tmp_path, build(over))
    assert r.seg(5)["reason"] == "sequence_regression", r.text
    assert r.seg(5)["passed"] == 0 and not [f for f in r.frame_lines if f["segment_id"] == 5]


def test_header_with_other_ring_slots_is_sequence_regression(tmp_path):
    w = honest()
    w.open()
    w.hdr_over = dict(ring_slots=7)
    w.commit(2)
    w.close()
    r = run(tmp_path, w)
    # The header does not fit the store (A.9), so no slot's head checks.
    assert r.seg(4)["reason"] == "sequence_regression"
    assert ("truncated_tail", RING + 3 * SEG) in findings(r)


def test_tail_above_own_id_is_sequence_regression(tmp_path):
    w = honest()
    w.open()
    w.hdr_over = dict(tail_segment_id=4, tail_slot=3)   # tail 4 in segment 4: fine
    w.commit(2)
    w.close()
    w.open()
    w.hdr_over = dict(tail_segment_id=6, tail_slot=3)   # tail above its own id (5)
    w.commit(2)
    w.close()
    r = run(tmp_path, w)
    assert r.seg(5)["reason"] == "sequence_regression"


def test_header_state_other_than_chain_point_is_seal_mismatch(tmp_path):
    w = honest()
    w.open()
    w.hdr_over = dict(dropped_total=50)        # up, not back: not a regression
    w.commit(2)
    w.close()
    r = run(tmp_path, w)
    assert r.seg(4)["reason"] == "seal_mismatch" and r.seg(4)["passed"] == 0


def test_header_lost_total_may_rise_at_open(tmp_path):
    w = honest()
    w.open()
    w.hdr_over = dict(lost_total=3, ecc_err_cnt=1)   # a reclaim and a read error
    w.commit(2)
    w.close()
    passes(run(tmp_path, w))


def test_repeated_seq_and_mono_are_sequence_regression(tmp_path):
    w = honest()
    w.open()
    w.commit(recs=[w.rec(seq=3)])              # temp's seq 3 was committed long ago
    w.close()
    r = run(tmp_path, w)
    assert [(f["frame_id"], f["reason"]) for f in r.frame_lines] == [(10, "sequence_regression")]
    w = honest()
    w.open()
    w.mono = 2                                  # mono_ctr handed out again
    w.commit(2)
    w.close()
    r = run(tmp_path, w)
    assert r.seg(4)["reason"] == "sequence_regression"


# ===========================================================================
# Key rotation (section 4 type 8, A.11 item 3)
# ===========================================================================

def rotated(new=None):
    new = new or ED_NEW.at(2)
    w = W6(ED)
    w.open()
    w.commit(2)
    w.rotate(new)
    w.close()
    w.open()
    w.commit(2)
    w.commit(2)
    w.close()
    return w


def test_rotation_then_new_key_segment_passes(tmp_path):
    w = rotated()
    r = run(tmp_path, w, keys=(ED,))
    passes(r)
    assert [s["key_epoch"] for s in r.segs] == [1, 2]
    assert r.summary["signed"] is True


def test_rotation_to_ecdsa_names_the_last_algorithm(tmp_path):
    r = run(tmp_path, rotated(EC.at(2)), keys=(ED,))
    passes(r)
    assert r.summary["sig_alg"] == "ecdsa-p256"


def test_old_key_after_rotation_is_unknown_key(tmp_path):
    w = rotated()
    w.open(key=ED)
    w.commit(2)
    w.close()
    r = run(tmp_path, w, keys=(ED,))
    assert [s["reason"] for s in r.segs] == [None, None, "unknown_key"]


def test_frame_after_rotation_in_the_same_segment_is_unknown_key(tmp_path):
    w = W6(ED)
    w.open()
    w.commit(2)
    w.commit(1, extra=[(8, w.rotation_record(ED_NEW.at(2)))])
    w.commit(2)                                # still the old key, same segment
    w.close()
    r = run(tmp_path, w, keys=(ED,))
    assert [(f["frame_id"], f["reason"]) for f in r.frame_lines] == [(3, "unknown_key")]
    assert r.seg(1)["passed"] == 2 and r.seg(1)["reason"] == "unknown_key"


def test_rotation_in_an_unsigned_segment_is_bad_signature(tmp_path):
    w = W6(UNSIGNED)
    w.open()
    w.commit(1, extra=[(8, {"old_key_id": "00" * 16, "old_epoch": 0,
                            "new_key_id": ED.key_id.hex(), "new_epoch": 1,
                            "new_alg": "ed25519", "new_public_key": ED.der.hex(),
                            "endorsement": ""})])
    w.close()
    r = run(tmp_path, w, extra=["--allow-unsigned"])
    assert [(f["frame_id"], f["reason"]) for f in r.frame_lines] == [(1, "bad_signature")]


def test_rotation_to_hmac_needs_the_secret(tmp_path):
    w = rotated(HM.at(2))
    r = run(tmp_path, w, keys=(ED,))
    assert [s["reason"] for s in r.segs] == [None, "unknown_key"]
    passes(run(tmp_path, w, keys=(ED, HM)))


def test_bad_endorsement_is_bad_signature(tmp_path):
    w = W6(ED)
    w.open()
    w.commit(2)
    w.rotate(ED_NEW.at(2), endorse_with=ED_OTHER)
    w.close()
    w.open()
    w.commit(2)
    w.close()
    r = run(tmp_path, w, keys=(ED,))
    assert [(f["frame_id"], f["reason"]) for f in r.frame_lines] == [(2, "bad_signature")]
    assert r.seg(2)["reason"] == "unknown_key"     # the rotation added nothing


# ===========================================================================
# Item 4: the head and the metadata
# ===========================================================================

def test_lowered_counter_in_metadata_is_metadata_mismatch(tmp_path):
    w = honest()
    name = w.chosen()
    w.set_meta(name, "records_total", 3)
    w.set_meta(name, "rollback_ctr", 1)
    w.set_meta(name, "uplink_cursor", 99)      # "not below": a higher one is fine
    r = run(tmp_path, w)
    base = META_BASE[name]
    assert findings(r) == [("metadata_mismatch", base + 144), ("metadata_mismatch", base + 160)]
    assert all(s["reason"] is None for s in r.segs)


def test_edited_metadata_tables_is_metadata_mismatch(tmp_path):
    w = honest()
    name = w.chosen()
    base = META_BASE[name]
    tl = struct.unpack_from("<I", w.img, base + 508)[0]
    raw = bytes(w.img[base + 512:base + 512 + tl])
    i = raw.index(b"temp") + 4
    w.img[base + 512 + i] -= 1                   # temp's last_seq one lower
    w.set_meta(name, "generation", struct.unpack_from("<Q", w.img, base + 32)[0])
    r = run(tmp_path, w)
    assert findings(r) == [("metadata_mismatch", base + 512)]


def test_every_sealed_field_of_the_slot_is_compared(tmp_path):
    w = honest()
    name = w.chosen()
    base = META_BASE[name]
    for f, v in [("ring_slots", 6), ("wrap_count", 3), ("tail_segment_id", 2), ("tail_slot", 1),
                 ("unexp_rst", 0), ("mono_hwm", 5), ("lost_total", 1), ("dropped_total", 1),
                 ("bo_event", 1), ("ecc_err_cnt", 0), ("clock_steps", 1), ("boot_seq", 0)]:
        w.set_meta(name, f, v)
    r = run(tmp_path, w)
    got = [o - base for _, o in findings(r)]
    # ring_slots 6 is the truth; unexp_rst 0 and ecc_err_cnt 0 are not below the sealed 0.
    assert got == [124, 128, 136, 152, 168, 176, 192, 200, 204]


def test_newer_slot_naming_a_missing_head_is_hash_mismatch(tmp_path):
    w = honest()
    name = w.meta(clean=1)                     # a newer slot, naming frame 9 too
    w.set_meta(name, "head_crc", 1234)
    r = run(tmp_path, w)
    assert findings(r) == [("hash_mismatch", META_BASE[name] + 88)]


def test_erased_head_frame_newer_slot_passed_over_is_hash_mismatch(tmp_path):
    # The older slot names frame 7 (segment 3's first), the newer frame 9.
    w = honest()
    newer = w.chosen()
    at = w.frame_at(9)
    w.img[at:at + SECTOR] = bytes(SECTOR)
    r = run(tmp_path, w)
    assert findings(r) == [("hash_mismatch", META_BASE[newer] + 88)]


def test_erased_head_frame_named_by_both_slots_is_truncated_tail(tmp_path):
    w = honest()
    w.meta(clean=1)
    at = w.frame_at(9)
    w.img[at:at + SECTOR] = bytes(SECTOR)
    r = run(tmp_path, w)
    assert findings(r) == [("truncated_tail", RING + 2 * SEG)]
    assert [s["segment_id"] for s in r.segs] == [1, 2, 3] and r.seg(3)["frames"] == 2


def test_range_longer_than_the_ring_from_metadata_is_cut(tmp_path):
    w = wrapped()
    h = w.segs[8]["slot"]
    w.img[w.slot_off(h) + 300] ^= 1            # head segment header broken: head missing
    w.set_both("tail_segment_id", 1)
    r = run(tmp_path, w)
    chosen = META_BASE[w.chosen()]
    assert ("metadata_mismatch", chosen + 128) in findings(r)
    assert [s["segment_id"] for s in r.segs] == [4, 5, 6, 7, 8]


# ===========================================================================
# Item 5: outside the history
# ===========================================================================

def test_segment_beyond_the_head_is_truncated_tail(tmp_path):
    w = honest(sessions=5)
    w.img[w.slot_off(3):w.slot_off(4)] = bytes(SEG)   # segment 4 erased, 5 left
    for name, gen in (("A", 20), ("B", 21)):
        w.meta(clean=1, head=9, gen=gen, slot=name)
    r = run(tmp_path, w)
    assert findings(r) == [("truncated_tail", RING + 4 * SEG)]


def test_next_segment_with_two_signed_frames_is_truncated_tail(tmp_path):
    # Segment 4 signed with the key but chained elsewhere: the scan stops.
    w = honest(sessions=3, frames=2)
    w.open()
    w.hdr_over = dict(prev_hash=b"\x05" * 32)
    w.commit(2)
    for name, gen in (("A", 20), ("B", 21)):
        w.meta(clean=1, head=6, gen=gen, slot=name)
    passes(run(tmp_path, w))                      # one frame of H + 1: a retried commit
    w.commit(2)
    for name, gen in (("A", 22), ("B", 23)):
        w.meta(clean=1, head=6, gen=gen, slot=name)
    r = run(tmp_path, w)
    assert findings(r) == [("truncated_tail", RING + 3 * SEG)]


def test_unsigned_or_untrusted_segment_beyond_the_head_is_nothing(tmp_path):
    for key in (ED_OTHER, UNSIGNED):
        w = honest(sessions=3)
        w.open(key=key)
        w.hdr_over = dict(prev_hash=b"\x05" * 32)
        w.commit(2)
        w.commit(2)
        for name, gen in (("A", 20), ("B", 21)):
            w.meta(clean=1, head=9, gen=gen, slot=name)
        passes(run(tmp_path, w))


def test_frame_written_beyond_the_head_is_truncated_tail(tmp_path):
    w = honest(close=False)
    w.commit(2, meta=False)                   # frame 10, then moved one sector on
    at = w.frame_at(10)
    frame = bytes(w.img[at:at + SECTOR])
    w.img[at:at + SECTOR] = bytes(SECTOR)
    w.img[at + SECTOR:at + 2 * SECTOR] = frame
    r = run(tmp_path, w)
    assert findings(r) == [("truncated_tail", at + SECTOR)]
    assert "torn_tail_power_cut" not in r.note_codes()


def test_whole_frame_that_does_not_decode_past_the_head_is_crc_mismatch(tmp_path):
    w = honest(close=False)
    w.commit(2, meta=False)
    at = w.frame_at(10)
    i = bytes(w.img[at:at + 16]).index(b"EF") + 4
    w.img[at + i] += 1                         # record_count: the block no longer decodes
    w.refix_frame(10)
    r = run(tmp_path, w)
    assert findings(r) == [("crc_mismatch", at)]


def fork_store(second_key=None):
    """Segment 1 holds frames 1..3; segment 2 continues from frame 2 (a
    second writer went on from an earlier frame)."""
    a = W6()
    a.open()
    a.commit(2)
    a.commit(2)
    a.commit(2, sign=second_key)
    b = W6()
    b.open()
    b.commit(2)
    b.commit(2)
    b.open()
    b.commit(2)
    b.close()
    b.img[b.slot_off(0):b.slot_off(1)] = a.img[a.slot_off(0):a.slot_off(1)]
    return b, a


def test_signed_frame_past_a_chain_point_is_fork(tmp_path):
    b, a = fork_store()
    r = run(tmp_path, b)
    assert findings(r) == [("fork", a.frame_at(3))]
    assert all(s["reason"] is None for s in r.segs) and r.seg(1)["frames"] == 2


def test_unsigned_frame_past_a_chain_point_is_not_continued(tmp_path):
    b, a = fork_store(second_key=ED_OTHER)
    r = run(tmp_path, b)
    passes(r)
    nc = [n for n in r.notes if n["note"] == "not_continued"]
    assert [(n["segment_id"], n["frame_id"]) for n in nc] == [(1, 3)]


def test_crc_valid_frame_after_a_walk_end_below_head_is_not_continued(tmp_path):
    b, a = fork_store()
    at = a.frame_at(3)
    frame = bytes(b.img[at:at + SECTOR])
    b.img[at:at + SECTOR] = bytes(SECTOR)
    b.img[at + SECTOR:at + 2 * SECTOR] = frame
    r = run(tmp_path, b)
    passes(r)
    assert [(n["note"], n["segment_id"], n["frame_id"]) for n in r.notes
            if n["note"] == "not_continued"] == [("not_continued", 1, 3)]


def test_crc_search_matches_a_direct_computation():
    rng = random.Random(5)
    seed = UUID6 + struct.pack("<Q", 3)
    for trial in range(30):
        slot = bytearray(rng.randbytes(4096)) if trial % 3 else bytearray(4096)
        frames = {}
        for p in range(512, 4096, 512):
            if rng.random() < 0.6:
                n = rng.randrange(8, 4096 - p + 1)
                slot[p:p + 3] = b"EF" + bytes([rng.choice([0, 1, 2, 3, 4])])
                slot[p + 3:p + 5] = varint(n)[:2].ljust(2, b"\0")
                frames[p] = n
        for p in range(512, 4096, 512):
            if rng.random() < 0.3 and p in frames:
                n = struct.unpack_from("<H", bytes(slot[p + 3:p + 5]))[0]
                try:
                    n, _ = v6.dec.read_varint(bytes(slot), p + 3)
                except v6.dec.BlockError:
                    continue
                if 9 <= n <= 4096 - p:
                    struct.pack_into("<I", slot, p + n - 4, crc(seed + bytes(slot[p:p + n - 4])))
        expected = None
        for p in range(512, 4096, 512):
            if slot[p:p + 2] != b"EF" or slot[p + 2] & 0xFC:
                continue
            try:
                n, cur = v6.dec.read_varint(bytes(slot), p + 3)
            except v6.dec.BlockError:
                continue
            if n < cur - p + 4 or n > 4096 - p:
                continue
            if crc(seed + bytes(slot[p:p + n - 4])) == struct.unpack_from("<I", slot, p + n - 4)[0]:
                expected = p
                break
        assert v6.first_crc_frame(bytes(slot), 0, 512, seed, 0) == expected


# ===========================================================================
# Item 6: power cuts are not tampering
# ===========================================================================

def test_torn_head_frame_before_recovery_is_a_note(tmp_path):
    w = honest(close=False)
    w.commit(2, meta=False)
    at = w.frame_at(10)
    w.img[at + 20:at + SECTOR] = bytes(SECTOR - 20)    # the sector half written
    r = run(tmp_path, w)
    passes(r)
    n = [x for x in r.notes if x["note"] == "torn_tail_power_cut"]
    assert [(x["segment_id"], x["frame_id"]) for x in n] == [(3, 10)]
    assert r.note_codes()[-2:] == ["torn_tail_power_cut", "truncation_not_excluded"]


def test_torn_head_frame_of_a_closed_store_is_not_reported(tmp_path):
    w = honest(close=False)
    w.commit(2, meta=False)
    at = w.frame_at(10)
    w.img[at + 20:at + SECTOR] = bytes(SECTOR - 20)
    w.meta(clean=1, head=9)
    r = run(tmp_path, w)
    passes(r)
    assert "torn_tail_power_cut" not in r.note_codes()


def test_next_segment_header_without_frame(tmp_path):
    w = honest(close=False)
    w.open()
    w.commit(2, meta=False)
    at = w.frame_at(10)
    w.img[at:at + SECTOR] = bytes(SECTOR)              # header landed, frame did not
    for name, gen in (("A", 30), ("B", 31)):
        w.meta(clean=0, head=9, gen=gen, slot=name, rollback_ctr=4, boot_seq=4)
    r = run(tmp_path, w)
    passes(r)
    assert [(n["note"], n["segment_id"], n["frame_id"]) for n in r.notes
            if n["note"] == "torn_tail_power_cut"] == [("torn_tail_power_cut", 4, 10)]
    for name, gen in (("A", 32), ("B", 33)):
        w.meta(clean=1, head=9, gen=gen, slot=name, rollback_ctr=4, boot_seq=4)
    r = run(tmp_path, w)
    assert findings(r) == [("truncated_tail", RING + 3 * SEG)]


def test_recovery_and_incomplete_records_are_power_cut_explained(tmp_path):
    w = honest(close=False)
    w.open(unclean=True)
    w.commit(2, extra=[(3, {"reason": "torn_frame", "after_frame_id": 9}),
                       (5, {"unclean_shutdown": True, "metadata_slot": "A",
                            "generation": 4, "frames_adopted": 0, "segments_adopted": 0,
                            "torn": True, "refused_frame_id": None, "tail_advanced": 0})])
    w.close()
    r = run(tmp_path, w)
    passes(r)
    pce = [n for n in r.notes if n["note"] == "power_cut_explained"]
    assert [(n["segment_id"], n["frame_id"]) for n in pce] == [(4, 10), (4, 10)]
    assert "incomplete record" in pce[0]["detail"] and "recovery record" in pce[1]["detail"]


def test_gap_record_that_does_not_parse_is_no_note(tmp_path):
    w = honest()
    w.open()
    w.commit(1, extra=[(2, b'{"reason":"ring_overwrite"'), (2, {"reason": "other"}),
                       (2, {"reason": "uplink_acked", "lost_segment_id": 1,
                            "lost_records": None, "first_mono": None, "last_mono": None})])
    w.close()
    r = run(tmp_path, w)
    passes(r)
    assert [n["note"] for n in r.notes] == ["uplink_acked", "truncation_not_excluded"]


def test_tail_given_up_after_a_cut_reclaim_passes(tmp_path):
    # A full ring, left open; the reclaim of segment 4's slot was cut: the
    # new header landed, its frame did not, and the metadata (written only
    # after the reclaiming frame) still names the old tail.
    w = W6(slots=5)
    for _ in range(8):
        w.open()
        w.commit(2)
    tail_before = w.tail
    w.open()
    w.commit(2, meta=False)
    slot = w.frames[w.frame_id]["slot"]
    at = w.frame_at(w.frame_id)
    w.img[at:at + SECTOR] = bytes(SECTOR)
    head = w.frame_id - 1
    for name, gen in (("A", 40), ("B", 41)):
        w.meta(clean=0, head=head, gen=gen, slot=name, tail_segment_id=tail_before[0],
               tail_slot=tail_before[1], wrap_count=1, rollback_ctr=9, boot_seq=9,
               lost_total=w.frames[head]["state"]["lost_total"])
    r = run(tmp_path, w)
    passes(r)
    assert [s["segment_id"] for s in r.segs] == [5, 6, 7, 8]
    codes = r.note_codes()
    assert codes[0] == "not_retained" and "torn_tail_power_cut" in codes
    assert slot == w.segs[4]["slot"]


def test_two_oldest_segments_erased_are_gap(tmp_path):
    w = wrapped()
    for sid in (4, 5):
        s = w.segs[sid]["slot"]
        w.img[w.slot_off(s):w.slot_off(s) + SEG] = bytes(SEG)
    r = run(tmp_path, w)
    assert [s["reason"] for s in r.segs][:2] == ["gap", "gap"]


# ===========================================================================
# Item 7: the anchor (A.11.1)
# ===========================================================================

def test_anchor_of_the_head_passes(tmp_path):
    w = honest()
    r = run(tmp_path, w, anchor=w.head_line())
    passes(r)
    assert "truncation_not_excluded" not in r.note_codes()


def test_anchor_of_an_earlier_frame_passes(tmp_path):
    w = honest()
    passes(run(tmp_path, w, anchor=w.head_line(5)))
    w = wrapped()
    passes(run(tmp_path, w, anchor=w.head_line(w.segs[4]["first"] - 1)))   # F0 - 1


def test_erased_head_frames_with_metadata_rewritten_against_anchor(tmp_path):
    w = honest()
    anchor = w.head_line()
    for fid in (8, 9):
        at = w.frame_at(fid)
        w.img[at:at + SECTOR] = bytes(SECTOR)
    for name, gen in (("A", 20), ("B", 21)):
        w.meta(clean=1, head=7, gen=gen, slot=name)
    passes(run(tmp_path, w))                    # without the anchor: a shorter history
    r = run(tmp_path, w, anchor=anchor)
    assert findings(r) == [("truncated_tail", 0)]


def test_older_image_against_a_later_session_anchor_is_rollback(tmp_path):
    w = honest(sessions=2)
    old = bytes(w.img)
    w.open()
    w.commit(2)
    w.close()
    r = run(tmp_path, old, anchor=w.head_line())
    assert findings(r) == [("rollback", 0)]


def test_anchor_of_another_history_is_fork(tmp_path):
    a = honest(sessions=2)
    b = honest(sessions=2)
    b.open()
    b.commit(3)                                # frame 7 differs from a's
    b.close()
    a.open()
    a.commit(2)
    a.close()
    r = run(tmp_path, a, anchor=b.head_line(7))
    assert findings(r) == [("fork", 0)]


def test_anchor_at_chain_point_with_other_hash_is_fork(tmp_path):
    w = wrapped()
    f0 = w.segs[4]["first"]
    st = bytearray(w.frames[f0 - 1]["statement"])
    st[152:184] = hashlib.sha256(b"another frame").digest()
    r = run(tmp_path, w, anchor=render_head(bytes(st), ED.sign(bytes(st))))
    assert findings(r) == [("fork", 0)]


def test_anchor_at_chain_point_sealing_more_is_sequence_regression(tmp_path):
    w = wrapped()
    f0 = w.segs[4]["first"]
    st = bytearray(w.frames[f0 - 1]["statement"])
    struct.pack_into("<Q", st, 224, 10_000)      # records_total the history never reached
    r = run(tmp_path, w, anchor=render_head(bytes(st), ED.sign(bytes(st))))
    assert findings(r) == [("sequence_regression", 0)]


def test_anchor_no_longer_in_the_ring_is_anchor_not_retained(tmp_path):
    w = wrapped()
    r = run(tmp_path, w, anchor=w.head_line(2))
    assert findings(r) == [("anchor_not_retained", 0)]


def test_anchor_of_another_store_is_foreign_segment(tmp_path):
    w = honest()
    st = bytearray(w.frames[9]["statement"])
    st[192:208] = OTHER_UUID
    r = run(tmp_path, w, anchor=render_head(bytes(st), ED.sign(bytes(st))))
    assert findings(r) == [("foreign_segment", 0)]


def test_anchor_bad_signature(tmp_path):
    w = honest()
    f = w.frames[9]
    sig = bytearray(f["signature"])
    sig[0] ^= 1
    r = run(tmp_path, w, anchor=render_head(f["statement"], bytes(sig)))
    assert findings(r) == [("anchor_bad_signature", 0)]
    r = run(tmp_path, w, anchor=w.head_line(), keys=(ED_OTHER,))
    assert ("anchor_bad_signature", 0) in findings(r)


def test_unsigned_anchor_needs_allow_unsigned(tmp_path):
    w = honest(UNSIGNED)
    r = run(tmp_path, w, anchor=w.head_line(), extra=["--allow-unsigned"])
    passes(r)
    r = run(tmp_path, w, anchor=w.head_line())
    assert ("anchor_bad_signature", 0) in findings(r)


def test_anchor_signed_by_a_rotated_key_verifies(tmp_path):
    w = rotated()
    passes(run(tmp_path, w, keys=(ED,), anchor=w.head_line()))


@pytest.mark.parametrize("edit", [
    lambda s: s.replace(b'","', b'", "', 1),
    lambda s: s.replace(b'"version":3', b'"version":2'),
    lambda s: s[:-1],
    lambda s: s + s,
    lambda s: s + b"\n",
    lambda s: s.replace(b'"format":"edgelog-head",', b'"format":"edgelog-head","x":1,'),
    lambda s: s[:s.index(b'"signature":"') + 13] + s[s.index(b'"signature":"') + 13:].upper(),
    lambda s: s.replace(b'"segment_id":3', b'"segment_id":03'),
    lambda s: s.replace(b'"hash_head"', b'"hash_head" '),
    lambda s: b"",
], ids=["space", "version2", "no-newline", "two-heads", "trailing", "extra-key", "uppercase",
        "leading-zero", "spacing", "empty"])
def test_malformed_anchor(tmp_path, edit):
    w = honest()
    r = run(tmp_path, w, anchor=edit(w.head_line()))
    assert findings(r) == [("anchor_malformed", 0)]


def test_signed_head_version_3_well_formedness():
    w = honest()
    f = w.frames[9]
    st, sig = f["statement"], f["signature"]
    line = render_head(st, sig)
    assert v6.render_head3(st, sig) == line
    a = v6.parse_anchor3(line)
    assert not isinstance(a, str) and a.fields.frame_id == 9 and a.fields.segment_id == 3
    cases = {
        "magic": bytearray(st), "alg": bytearray(st), "len": bytearray(st),
        "reserved": bytearray(st)}
    cases["magic"][0:8] = b"EDGESIG2"
    cases["alg"][184] = 4
    cases["len"][186] = 32
    cases["reserved"][189] = 1
    for name, bad in cases.items():
        text = line.replace(st.hex().encode(), bytes(bad).hex().encode())
        assert isinstance(v6.parse_anchor3(text), str), name
    assert isinstance(v6.parse_anchor3(render_head(st, sig[:-1])), str)     # sig_len bytes
    assert isinstance(v6.parse_anchor3(line.replace(b"ed25519", b"unsigned")), str)
    assert isinstance(v6.parse_anchor3(b" " * 5000), str)


# ===========================================================================
# Output
# ===========================================================================

def test_text_output_escapes_details(tmp_path):
    w = honest()
    w.open()
    w.commit(1, extra=[(5, b'{"x":"\x1b[31m\xe2\x80\xae"}')])
    w.close()
    r = run(tmp_path, w, as_json=False)
    assert r.code == 0
    assert "\\x1b[31m\\xe2\\x80\\xae" in r.text and "\x1b" not in r.text
    assert all(0x20 <= ord(c) <= 0x7E for c in r.text.replace("\n", ""))
    rj = run(tmp_path, w)
    assert "\\u001b" in rj.text and "\x1b" not in rj.text
    assert r.text.splitlines()[-1].startswith("verdict PASS: 4 segments, 4 passed, 0 failed; "
                                              "10 frames, 10 passed, 0 failed; signed with "
                                              "ed25519")


def test_text_output_lists_failing_frames(tmp_path):
    w = honest()
    w.img[w.frame_at(2) + 40] ^= 1
    w.refix_frame(2)
    r = run(tmp_path, w, as_json=False)
    assert r.code == 1 and "frame 2" in r.text and "bad_signature" in r.text
    assert "verdict FAIL" in r.text


def test_summary_counts_with_failures(tmp_path):
    w = honest()
    w.img[w.slot_off(1):w.slot_off(2)] = bytes(SEG)       # segment 2: gap, frames unknown
    f = w.frames[8]
    w.img[w.frame_at(8) + f["length"] - 8] ^= 1
    w.refix_frame(8)
    r = run(tmp_path, w)
    s = r.summary
    assert (s["segments"], s["passed"], s["failed"]) == (3, 1, 2)
    assert (s["frames"], s["frames_passed"], s["frames_failed"]) == (6, 5, 1)
    assert s["reasons"] == ["bad_signature", "gap"] and s["verdict"] == "FAIL"
    assert s["signed"] is True


# ===========================================================================
# Hostile bytes never raise
# ===========================================================================

def test_hostile_images_never_raise(tmp_path):
    rng = random.Random(11)
    base = honest(sessions=3, frames=2)
    for trial in range(40):
        w = SimpleNamespace(img=bytearray(base.img))
        kind = trial % 4
        if kind == 0:          # random bytes in the ring, headers' CRCs refitted
            for _ in range(30):
                w.img[rng.randrange(RING, len(w.img))] = rng.randrange(256)
        elif kind == 1:        # random header fields with a good CRC
            slot = rng.randrange(3)
            off = RING + slot * SEG
            for _ in range(5):
                w.img[off + rng.randrange(8, 500)] = rng.randrange(256)
            struct.pack_into("<I", w.img, off + 508, crc(bytes(w.img[off:off + 508])))
        elif kind == 2:        # random metadata fields with a good CRC
            name = rng.choice("AB")
            b = META_BASE[name]
            for _ in range(4):
                w.img[b + rng.randrange(16, 1000)] = rng.randrange(256)
            struct.pack_into("<I", w.img, b + 1020, crc(bytes(w.img[b:b + 1020])))
        else:                  # frames claiming every length
            off = RING + SEG
            for p in range(off + 2 * SECTOR, off + SEG, SECTOR):
                w.img[p:p + 6] = b"EF\x00" + varint(off + SEG - p)
        r = run(tmp_path, w.img, extra=["--allow-unsigned"])
        assert r.code in (0, 1) and r.summary["verdict"] in ("PASS", "FAIL")


# ===========================================================================
# More: bad slots, the tail, a torn first commit, anchors in other places
# ===========================================================================

def test_store_with_a_bad_slot_passes_and_wraps_around_it(tmp_path):
    w = W6(slots=6, bad=[(2, 1, 0)])
    for _ in range(8):
        w.open()
        w.commit(2)
        w.commit(2, deflated=True)
        w.close()
    assert 2 not in {d["slot"] for d in w.segs.values()}
    r = run(tmp_path, w)
    passes(r)
    assert [s["segment_id"] for s in r.segs] == [4, 5, 6, 7, 8]
    assert [s["slot"] for s in r.segs] == [4, 5, 0, 1, 3]


def test_bad_slot_dropped_from_the_metadata_is_metadata_mismatch(tmp_path):
    w = W6(slots=6, bad=[(2, 1, 0)])
    for _ in range(3):
        w.open()
        w.commit(2)
        w.close()
    name = w.meta(clean=1, bad=[])
    base = META_BASE[name]
    r = run(tmp_path, w)
    assert findings(r) == [("metadata_mismatch", base + 512)]


def cut_reclaim(meta_tail):
    """A full ring left open; the reclaim of the oldest segment's slot was
    cut after the new header landed: meta_tail picks what the metadata says."""
    w = W6(slots=5)
    for _ in range(8):
        w.open()
        w.commit(2)
    before = w.tail
    w.open()
    w.commit(2, meta=False)
    after = w.tail
    at = w.frame_at(w.frame_id)
    w.img[at:at + SECTOR] = bytes(SECTOR)
    head = w.frame_id - 1
    tail = {"sealed": before, "moved": after, "other": (after[0] + 1, (after[1] + 1) % 5)}
    for name, gen in (("A", 40), ("B", 41)):
        w.meta(clean=0, head=head, gen=gen, slot=name, tail_segment_id=tail[meta_tail][0],
               tail_slot=tail[meta_tail][1], wrap_count=1, rollback_ctr=9, boot_seq=9,
               lost_total=w.frames[head]["state"]["lost_total"])
    return w


@pytest.mark.parametrize("meta_tail", ["sealed", "moved"])
def test_cut_reclaim_tail_either_side_of_recovery_passes(tmp_path, meta_tail):
    r = run(tmp_path, cut_reclaim(meta_tail))
    passes(r)
    assert [s["segment_id"] for s in r.segs] == [5, 6, 7, 8]


def test_cut_reclaim_with_another_tail_is_metadata_mismatch(tmp_path):
    w = cut_reclaim("other")
    r = run(tmp_path, w)
    base = META_BASE[w.chosen()]
    assert findings(r) == [("metadata_mismatch", base + 128), ("metadata_mismatch", base + 136)]


def test_full_ring_closed_cleanly_gives_no_tail_up(tmp_path):
    w = cut_reclaim("sealed")
    w.set_both("clean_flag", 1)
    r = run(tmp_path, w)
    assert r.segs[0]["segment_id"] == 4 and r.segs[0]["reason"] is not None
    assert r.code == 1


def test_torn_first_commit_of_an_empty_store(tmp_path):
    w = W6()
    w.open()
    w.commit(2, meta=False)
    at = w.frame_at(1)
    w.img[at:at + SECTOR] = bytes(SECTOR)
    r = run(tmp_path, w)
    passes(r)
    assert [(n["note"], n["segment_id"], n["frame_id"]) for n in r.notes] == [
        ("torn_tail_power_cut", 1, 1), ("truncation_not_excluded", 0, 0)]


def test_anchor_frame_held_by_another_segment_is_fork(tmp_path):
    w = honest()
    st = bytearray(w.frames[5]["statement"])
    struct.pack_into("<Q", st, 24, 3)           # frame 5 claimed for segment 3
    r = run(tmp_path, w, anchor=render_head(bytes(st), ED.sign(bytes(st))))
    assert findings(r) == [("fork", 0)]


def test_anchor_beyond_the_head_is_truncated_tail(tmp_path):
    w = honest()
    st = bytearray(w.frames[9]["statement"])
    struct.pack_into("<Q", st, 32, 12)
    struct.pack_into("<Q", st, 24, 4)
    r = run(tmp_path, w, anchor=render_head(bytes(st), ED.sign(bytes(st))))
    assert findings(r) == [("truncated_tail", 0)]


def test_anchor_with_an_other_device_is_foreign_segment(tmp_path):
    w = honest()
    st = bytearray(w.frames[9]["statement"])
    st[8:24] = OTHER_DEV
    r = run(tmp_path, w, anchor=render_head(bytes(st), ED.sign(bytes(st))))
    assert findings(r) == [("foreign_segment", 0)]


def test_anchor_findings_come_last(tmp_path):
    w = honest()
    w.set_meta(w.chosen(), "records_total", 1)
    r = run(tmp_path, w, anchor=b"not a head\n")
    assert [f["reason"] for f in r.findings] == ["metadata_mismatch", "anchor_malformed"]
    assert r.summary["reasons"] == ["anchor_malformed", "metadata_mismatch"]


def test_4096_byte_sectors(tmp_path):
    w = W6(slots=5, seg=16384, sector=4096)
    for _ in range(7):
        w.open()
        w.commit(2)
        w.commit(3, deflated=True)
        w.close()
    r = run(tmp_path, w)
    passes(r)
    assert [s["segment_id"] for s in r.segs] == [3, 4, 5, 6, 7]
    assert r.segs[0]["offset"] == RING + w.segs[3]["slot"] * 16384


def test_deflated_frame_that_no_longer_inflates_below_head(tmp_path):
    w = honest()
    at = w.frame_at(2)                              # deflated against frame 1
    f = w.frames[2]
    for i in range(12, f["length"] - 4 - 64):
        w.img[at + i] ^= 0x55
    w.refix_frame(2)
    r = run(tmp_path, w)
    assert [(x["frame_id"], x["frames"], x["offset"], x["reason"]) for x in r.frame_lines] == [
        (2, 2, at, "crc_mismatch")]
    assert "block" in run(tmp_path, w, as_json=False).text


def test_whole_frame_that_does_not_decode_past_a_chain_point_is_crc_mismatch(tmp_path):
    b, a = fork_store()
    at = a.frame_at(3)
    i = bytes(b.img[at:at + 16]).index(b"EF") + 4
    b.img[at + i] += 1                              # record_count
    seg1 = a.segs[1]["hdr"]["segment_id"]
    end = at + a.frames[3]["length"] - 4
    struct.pack_into("<I", b.img, end, crc(UUID6 + struct.pack("<Q", seg1) + bytes(b.img[at:end])))
    r = run(tmp_path, b)
    assert findings(r) == [("crc_mismatch", at)]
    assert all(s["reason"] is None for s in r.segs)


def test_hmac_text_output_names_what_it_proves(tmp_path):
    r = run(tmp_path, honest(HM), keys=(HM,), as_json=False)
    assert r.code == 0 and "proves integrity only to holders of the secret" in r.text


def test_oldest_segment_erased_under_a_forged_clean_flag_is_given_up(tmp_path):
    # A.11 item 2: the tail give-up rests on clean_flag (unsigned) and on
    # what the tail's slot does not hold, so someone without the key who sets
    # clean_flag 0 and erases the oldest segment of a full ring gets a PASS;
    # the note tail_given_up says so, as nothing signed can tell it from a
    # reclaim a power cut stopped.
    w = wrapped()
    w.set_both("clean_flag", 0)
    s = w.segs[4]["slot"]
    w.img[w.slot_off(s):w.slot_off(s) + SEG] = bytes(SEG)
    r = run(tmp_path, w, anchor=w.head_line())
    passes(r)
    assert [x["segment_id"] for x in r.segs] == [5, 6, 7, 8]
    assert [n for n in r.notes if n["note"] == "tail_given_up"] == [
        {"kind": "note", "note": "tail_given_up", "segment_id": 4, "frame_id": 0,
         "detail": [n for n in r.notes if n["note"] == "tail_given_up"][0]["detail"]}]
    # With clean_flag 1 the same erasure is a gap.
    w.set_both("clean_flag", 1)
    assert run(tmp_path, w).seg(4)["reason"] == "gap"
