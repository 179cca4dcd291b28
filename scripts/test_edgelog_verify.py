"""Self-test for scripts/edgelog_verify.py (FORMAT.md section 9).

Run: python3 -m pytest scripts/test_edgelog_verify.py

The images are written by the small signing writer below, from FORMAT.md
(sections 2, 3, 4 and 8): it formats, opens (rollback_ctr + 1), commits
sealed and signed segments (Ed25519, ECDSA P-256 or HMAC-SHA256), rotates
keys and prints the signed head.  It has its own bitwise CRC and its own
struct layouts, so a layout mistake in edgelog_decode.py does not hide
behind the same code here.  Tests then damage the image the way an attacker
or a power cut would and check the verdict.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import io
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("cryptography")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, utils  # noqa: E402

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "edgelog_verify.py"

_spec = importlib.util.spec_from_file_location("edgelog_verify", SCRIPT)
ver = importlib.util.module_from_spec(_spec)
sys.modules["edgelog_verify"] = ver  # dataclasses look the module up by name
_spec.loader.exec_module(ver)

UUID = bytes(range(16))
DEVICE = bytes.fromhex("6d616368696e652d69642d3030303031")
OTHER_DEVICE = bytes(16)
FW = hashlib.sha256(b"edgelog 1.0 executable").digest()
FW_OTHER = hashlib.sha256(b"edgelog 0.9 executable").digest()
SEG = 4096
SIG_LEN = {0: 0, 1: 64, 2: 64, 3: 32}
ALG_NAME = {0: "unsigned", 1: "ed25519", 2: "ecdsa-p256", 3: "hmac-sha256"}
KEEP = object()  # "use the writer's current signer"


# ---------------------------------------------------------------------------
# Signing writer
# ---------------------------------------------------------------------------

def crc(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF


SYNCED = 1  # record time_flags bit 0 (section 3.2)
# The sync sample a record carries unless told otherwise (section 3.2,
# format version 4): maxerror_us, esterror_us, last_sync_ns.
SAMPLE = (16_000, 500, 1_699_999_999_000_000_000)


def record(seq, mono, payload, source=b"temp", rtype=1, time_flags=SYNCED, boot_seq=1,
           sample=SAMPLE):
    length = 60 + len(source) + len(payload) + 8
    body = struct.pack("<IHHQQqqHHIIq", length, rtype, time_flags, seq, mono,
                       1_700_000_000_000_000_000, 5_000, len(source),
                       boot_seq & 0xFFFF, *sample) + source + payload
    return body + struct.pack("<I", crc(body)) + b"RECE"


class Signer:
    """A signing key of section 3.5 and its trust file (section 9)."""

    def __init__(self, kind: str):
        self.kind = kind
        if kind == "ed25519":
            self.alg, self.priv = 1, ed25519.Ed25519PrivateKey.generate()
        elif kind == "ecdsa":
            self.alg, self.priv = 2, ec.generate_private_key(ec.SECP256R1())
        else:
            self.alg, self.secret = 3, os.urandom(32)
        if self.alg == 3:
            self.spki = b""
            self.key_id = hashlib.sha256(b"EDGELOG-HMAC-KEY-ID" + self.secret).digest()[:16]
        else:
            self.spki = self.priv.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            self.key_id = hashlib.sha256(self.spki).digest()[:16]

    def sign(self, message: bytes) -> bytes:
        if self.alg == 1:
            return self.priv.sign(message)
        if self.alg == 2:
            r, s = utils.decode_dss_signature(self.priv.sign(message, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return hmac.new(self.secret, message, hashlib.sha256).digest()

    def pem(self) -> bytes:
        return self.priv.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def trust_file(self, directory: Path) -> Path:
        path = directory / f"trust-{self.key_id.hex()}"
        path.write_bytes(self.secret.hex().encode() + b"\n" if self.alg == 3 else self.pem())
        return path

    def key_dir(self, directory: Path, epoch: int, *, key_id: bytes | None = None,
                alg: str | None = None) -> Path:
        """The key directory `edgelog keys generate --out DIR` writes
        (section 3.5): key.json, the public key or the HMAC secret, and the
        private key (which the verifier must not need).  key_id / alg:
        what key.json claims, when not the key's own."""
        n = 0
        while (directory / f"keydir-{self.key_id.hex()}-{epoch}-{n}").exists():
            n += 1
        path = directory / f"keydir-{self.key_id.hex()}-{epoch}-{n}"
        path.mkdir()
        if self.alg == 3:
            (path / "hmac-key.hex").write_text(self.secret.hex() + "\n")
            (path / "hmac-key.hex").chmod(0o600)
        else:
            (path / "signing-key.pub.pem").write_bytes(self.pem())
            (path / "signing-key.pem").write_bytes(self.priv.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
            (path / "signing-key.pem").chmod(0o600)
        (path / "key.json").write_text(
            '{"alg":"%s","key_epoch":%d,"key_id":"%s","key_src":"file"}\n'
            % (alg or ALG_NAME[self.alg], epoch, (key_id or self.key_id).hex()))
        return path


STATEMENT = "<8s16sQQQQII16sQ32s32s32sBBH4x16sQQQQQQIIIIII32sII"
STATEMENT_FIELDS = ("magic", "device_id", "segment_id", "commit_id", "first_mono", "last_mono",
                    "record_count", "key_epoch", "key_id", "rollback_ctr", "fw_ver_hash",
                    "prev_hash", "segment_hash", "sig_alg", "key_src", "sig_len", "store_uuid",
                    "tail_segment_id", "mono_hwm", "records_total", "lost_total",
                    "dropped_total", "uplink_cursor", "wrap_count", "unexp_rst", "bo_event",
                    "ecc_err_cnt", "clock_steps", "boot_seq", "tables_hash", "tail_slot",
                    "ring_slots")
assert struct.calcsize(STATEMENT) == 320


class Writer:
    """Formats a store and commits to it as FORMAT.md describes a writer
    (format version 5: every commit seals the state its metadata write
    carries)."""

    def __init__(self, signer: Signer | None = None, *, slots=6, uuid=UUID, device=DEVICE,
                 fw=FW, bad=()):
        self.slots, self.uuid, self.device, self.fw = slots, uuid, device, fw
        self.bad = list(bad)  # bad_block_tbl: (slot, reason, segment_id)
        self.buf = bytearray(8192 + slots * SEG)
        self.signer, self.epoch = signer, (1 if signer else 0)
        self.generation = -1
        self.head_id = 0
        self.head_slot = self.tail_slot = self.next_free(-1)
        self.tail_id = 1
        self.head_crc, self.hash_head = 0, bytes(32)
        self.head_key = (bytes(16), 0, 0)   # key_id, key_epoch, sig_alg of the head's seal
        self.rollback = 0
        self.mono = 0
        self.seq: dict[str, int] = {}       # the source table: name -> last_seq
        self.clean = 1
        self.slot_of: dict[int, int] = {}
        self.boot_id, self.boot_seq = bytes(16), 0   # time path (section 2, 2896..)
        self.time_flags = SYNCED
        # The rest of the sealed state (section 3.5, 192..319).
        self.wrap = self.unexp = self.bo = self.ecc = self.steps = 0
        self.records_total = self.lost_total = self.dropped_total = 0
        self.uplink = 1
        self.write_meta()  # format: generation 0 in slot A

    def next_free(self, slot):
        """next(s) of section 5: the next slot not in bad_block_tbl."""
        bad = {b[0] for b in self.bad}
        for _ in range(self.slots):
            slot = (slot + 1) % self.slots
            if slot not in bad:
                return slot
        raise AssertionError("no good slot")

    # -- metadata (section 2) --
    def meta_bytes(self, generation) -> bytearray:
        buf = bytearray(4096)
        struct.pack_into("<8sHHII4x16sQQIIQI4xQQIIQIIIIIIQQQQQIIq", buf, 0,
                         b"EDGELOGM", 5, 4096, 0, 0, self.uuid, generation, len(self.buf),
                         512, SEG, 8192, self.slots, self.head_id, self.head_id,
                         self.head_slot, self.tail_slot, self.tail_id, self.wrap, self.clean,
                         self.unexp, self.bo, self.ecc, 0, self.mono, self.uplink,
                         self.records_total, self.dropped_total, self.lost_total,
                         len(self.bad), len(self.seq), 0)
        struct.pack_into("<32sI", buf, 192, self.hash_head, self.head_crc)
        for i, (slot, reason, seg_id) in enumerate(self.bad):
            struct.pack_into("<IHHQ", buf, 256 + 16 * i, slot, reason, 0, seg_id)
        for i, (name, last_seq) in enumerate(self.seq.items()):
            struct.pack_into("<B39sQ", buf, 1280 + 48 * i, len(name), name.encode(), last_seq)
        key_id, key_epoch, sig_alg = self.head_key
        struct.pack_into("<16sQ32s16sIBB", buf, 2816, self.device, self.rollback, self.fw,
                         key_id, key_epoch, sig_alg, 1 if sig_alg else 0)
        # boot_id, boot_seq, clock_steps, largest_step_ns, unsync_ns,
        # last_sync_wall_ns, rtc_offset_ns, rtc_state (2: no RTC).
        struct.pack_into("<16sIIQQqqB", buf, 2896, self.boot_id, self.boot_seq, self.steps, 0,
                         0, 1_700_000_000_000_000_000 if self.boot_seq else 0, 0, 2)
        struct.pack_into("<I", buf, 4092, crc(bytes(buf[:4092])))
        return buf

    def write_meta(self):
        self.generation += 1
        base = 0 if self.generation % 2 == 0 else 4096  # even to A, odd to B
        self.buf[base:base + 4096] = self.meta_bytes(self.generation)

    def open(self, boot_id=b"boot-1"):
        # +1 in the same metadata write that marks the store open (section 8).
        # A writer starting under another boot id counts a boot (section 2);
        # one that finds clean_flag 0 an unexpected reset.
        boot_id = hashlib.sha256(boot_id).digest()[:16]
        if boot_id != self.boot_id:
            self.boot_id, self.boot_seq = boot_id, self.boot_seq + 1
        if self.clean == 0:
            self.unexp += 1
        self.rollback += 1
        self.clean = 0
        self.write_meta()
        return self

    def close(self):
        self.clean = 1
        self.write_meta()
        return self

    # -- segments (section 3) --
    def commit(self, payloads=(b"{}",), *, records=None, land_meta=True, signer=KEEP,
               epoch=None, rollback=None, fw=None, prev_hash=None, edit_records=None,
               sealed=None, lost=0, dropped=0):
        """records: (source, payload, type), (source, payload, type,
        time_flags) or (source, payload, type, time_flags, sample) tuples,
        sample a (maxerror_us, esterror_us, last_sync_ns) tuple; default one
        data record per payload, with the writer's time_flags and boot_seq
        and SAMPLE.  land_meta=False: the commit's metadata write is lost.
        edit_records: a function that may rewrite the list of encoded
        records before the segment is sealed and signed around them (a
        writer that writes a bad record).  sealed: statement fields to seal
        instead of the writer's (a writer steered by edited metadata)."""
        recs = records if records is not None else [("temp", p, 1) for p in payloads]
        seg_id = self.head_id + 1
        if self.head_id == 0 or self.tail_id > self.head_id:
            slot = self.tail_slot
        else:
            slot = self.next_free(self.head_slot)
            if slot <= self.head_slot:
                self.wrap += 1  # back from the last ring slot to the first
            if slot == self.tail_slot:  # ring full: this commit overwrites the tail
                self.tail_slot, self.tail_id = self.next_free(slot), self.tail_id + 1
        encoded, monos = [], []
        for source, payload, rtype, *extra in recs:
            self.mono += 1
            self.seq[source] = self.seq.get(source, 0) + 1
            encoded.append(record(self.seq[source], self.mono, payload, source.encode(), rtype,
                                  extra[0] if extra else self.time_flags, self.boot_seq,
                                  extra[1] if len(extra) > 1 else SAMPLE))
            monos.append(self.mono)
            self.records_total += rtype == 1
            self.steps += rtype == 7
        self.lost_total += lost
        self.dropped_total += dropped
        if edit_records is not None:
            encoded = edit_records(encoded)
        body = b"".join(encoded)
        first, last = (monos[0], monos[-1]) if monos else (0, 0)
        prev = self.hash_head if prev_hash is None else prev_hash
        head = struct.pack("<8sHHI16sQQIIIIQQ32sIII", b"EDGELOGS", 5, 128, 0, self.uuid,
                           seg_id, seg_id, slot, self.wrap, len(recs), len(body), first, last,
                           prev, lost, dropped, self.head_crc)
        head += struct.pack("<I", crc(head))
        seg_hash = hashlib.sha256(head + body).digest()
        signer = self.signer if signer is KEEP else signer
        alg = signer.alg if signer else 0
        epoch = (self.epoch if signer else 0) if epoch is None else epoch
        key_id = signer.key_id if signer else bytes(16)
        # The state this commit's metadata write carries.
        self.head_id, self.head_slot = seg_id, slot
        self.head_crc, self.hash_head = crc(head + body), seg_hash
        self.head_key = (key_id, epoch, alg)
        meta = self.meta_bytes(self.generation + 1)
        tables = hashlib.sha256(bytes(meta[176:184]) + bytes(meta[256:256 + 16 * len(self.bad)])
                                + bytes(meta[1280:1280 + 48 * len(self.seq)])).digest()
        fields = dict(magic=b"EDGESIG2", device_id=self.device, segment_id=seg_id,
                      commit_id=seg_id, first_mono=first, last_mono=last,
                      record_count=len(recs), key_epoch=epoch, key_id=key_id,
                      rollback_ctr=self.rollback if rollback is None else rollback,
                      fw_ver_hash=self.fw if fw is None else fw, prev_hash=prev,
                      segment_hash=seg_hash, sig_alg=alg, key_src=1 if signer else 0,
                      sig_len=SIG_LEN[alg], store_uuid=self.uuid, tail_segment_id=self.tail_id,
                      mono_hwm=self.mono, records_total=self.records_total,
                      lost_total=self.lost_total, dropped_total=self.dropped_total,
                      uplink_cursor=self.uplink, wrap_count=self.wrap, unexp_rst=self.unexp,
                      bo_event=self.bo, ecc_err_cnt=self.ecc, clock_steps=self.steps,
                      boot_seq=self.boot_seq, tables_hash=tables,
                      tail_slot=self.tail_slot, ring_slots=self.slots)
        fields.update(sealed or {})
        statement = struct.pack(STATEMENT, *(fields[name] for name in STATEMENT_FIELDS))
        signature = signer.sign(statement) if signer else b""
        seal = statement + signature + bytes(384 - 320 - len(signature))
        marker = struct.pack("<8sQQIIII", b"EDGELOGC", seg_id, seg_id, len(recs), len(body),
                             crc(head + body), 320 + len(signature)) + seal + bytes(4)
        marker += struct.pack("<I", crc(marker))
        assert len(marker) == 432
        data = head + body + marker
        data += bytes(-len(data) % 512)
        assert len(data) <= SEG
        off = 8192 + slot * SEG
        self.buf[off:off + len(data)] = data
        self.slot_of[seg_id] = slot
        if land_meta:
            self.write_meta()
        return seg_id

    def rotate(self, new: Signer, *, endorse_with: Signer | None = None, segment_signer=KEEP):
        """Commit a key_rotation record (section 4) signed by the current key;
        later segments are signed by `new`.  endorse_with / segment_signer:
        sign the endorsement / the rotation's segment with another key."""
        old, new_epoch = self.signer, self.epoch + 1
        endorsement = struct.pack(
            "<8s16s16sIIB7x16s32s", b"EDGEROT1", self.device, old.key_id, self.epoch,
            new_epoch, new.alg, new.key_id,
            hashlib.sha256(new.spki).digest() if new.spki else bytes(32))
        assert len(endorsement) == 104
        sig = (endorse_with or old).sign(endorsement)
        payload = ('{"old_key_id":"%s","old_epoch":%d,"new_key_id":"%s","new_epoch":%d,'
                   '"new_alg":"%s","new_public_key":"%s","endorsement":"%s"}'
                   % (old.key_id.hex(), self.epoch, new.key_id.hex(), new_epoch,
                      ALG_NAME[new.alg], new.spki.hex(), sig.hex())).encode()
        seg_id = self.commit(records=[("edgelog", payload, 8)], signer=segment_signer)
        self.signer, self.epoch = new, new_epoch
        return seg_id

    # -- reading back what was written --
    def seg_range(self, seg_id):
        """(slot offset, payload_len, marker offset) of a committed segment."""
        off = 8192 + self.slot_of[seg_id] * SEG
        payload_len = struct.unpack_from("<I", self.buf, off + 60)[0]
        return off, payload_len, off + 128 + payload_len

    def head_json(self, seg_id=None) -> bytes:
        """The signed head of section 8, copied from the commit marker of the
        head (or of segment seg_id)."""
        _, _, mbase = self.seg_range(self.head_id if seg_id is None else seg_id)
        st = bytes(self.buf[mbase + 40:mbase + 360])
        sig_len = struct.unpack_from("<H", st, 186)[0]
        return head_line(st, bytes(self.buf[mbase + 360:mbase + 360 + sig_len]))

    def image(self) -> bytes:
        return bytes(self.buf)


def head_line(st: bytes, sig: bytes) -> bytes:
    """Section 8's line for a 320-byte statement and its signature, printed
    field by field from the statement's offsets (its own code, not the
    verifier's)."""
    seg_id, commit_id = struct.unpack_from("<QQ", st, 24)
    key_epoch, = struct.unpack_from("<I", st, 60)
    rollback, = struct.unpack_from("<Q", st, 80)
    tail, = struct.unpack_from("<Q", st, 208)
    return ('{"format":"edgelog-head","version":2,"device_id":"%s","store_uuid":"%s",'
            '"segment_id":%d,"commit_id":%d,"hash_head":"%s","rollback_ctr":%d,'
            '"tail_segment_id":%d,"key_epoch":%d,"key_id":"%s","sig_alg":"%s",'
            '"statement":"%s","signature":"%s"}\n'
            % (st[8:24].hex(), st[192:208].hex(), seg_id, commit_id, st[152:184].hex(),
               rollback, tail, key_epoch, st[64:80].hex(), ALG_NAME[st[184]], st.hex(),
               sig.hex())).encode()


# -- damage, the way an attacker would do it --

def refit_marker_crc(buf, mbase):
    struct.pack_into("<I", buf, mbase + 428, crc(bytes(buf[mbase:mbase + 428])))


def change_payload(w: Writer, seg_id, *, fix_record=False, fix_body=False, fix_seal=False):
    """Change one byte of the first record's payload ('{}' -> '[}'), then
    refit as many of the checks over it as asked."""
    off, payload_len, mbase = w.seg_range(seg_id)
    rec = off + 128
    record_len, = struct.unpack_from("<I", w.buf, rec)
    source_len, = struct.unpack_from("<H", w.buf, rec + 40)
    w.buf[rec + 60 + source_len] ^= ord("{") ^ ord("[")
    if fix_record:
        struct.pack_into("<I", w.buf, rec + record_len - 8,
                         crc(bytes(w.buf[rec:rec + record_len - 8])))
    covered = bytes(w.buf[off:off + 128 + payload_len])
    if fix_body:
        struct.pack_into("<I", w.buf, mbase + 32, crc(covered))
    if fix_seal:
        w.buf[mbase + 40 + 152:mbase + 40 + 184] = hashlib.sha256(covered).digest()
    if fix_body or fix_seal:
        refit_marker_crc(w.buf, mbase)
    return rec


def change_meta(w: Writer, base, offset, value: bytes):
    w.buf[base + offset:base + offset + len(value)] = value
    struct.pack_into("<I", w.buf, base + 4092, crc(bytes(w.buf[base:base + 4092])))


def chosen_base(w: Writer):
    """Offset of the metadata slot the writer wrote last (the chosen one)."""
    return 0 if w.generation % 2 == 0 else 4096


# ---------------------------------------------------------------------------
# Running the verifier
# ---------------------------------------------------------------------------

class Result:
    def __init__(self, code, text, anchored=False):
        self.code, self.text = code, text
        self.lines = [json.loads(line) for line in text.splitlines()]
        self.summary = self.lines[-1]
        assert self.summary["kind"] == "summary"
        # Section 9 item 7: without --anchor, the note truncation_not_excluded
        # (segment_id H) comes last of the notes, for every store.
        notes = self.all_notes
        if anchored or "not_a_store" in self.summary["reasons"]:
            assert "truncation_not_excluded" not in [n for n, _ in notes]
        else:
            assert notes and notes[-1][0] == "truncation_not_excluded", notes
            assert [n for n, _ in notes].count("truncation_not_excluded") == 1

    @property
    def reasons(self):
        """Reason of each segment line, in order (None for PASS)."""
        return [x["reason"] for x in self.lines if x["kind"] == "segment"]

    @property
    def segments(self):
        return [x for x in self.lines if x["kind"] == "segment"]

    @property
    def findings(self):
        return [(x["reason"], x["offset"]) for x in self.lines if x["kind"] == "finding"]

    @property
    def all_notes(self):
        return [(x["note"], x["segment_id"]) for x in self.lines if x["kind"] == "note"]

    @property
    def notes(self):
        """The notes but truncation_not_excluded (checked above)."""
        return [n for n in self.all_notes if n[0] != "truncation_not_excluded"]


def verify(tmp_path, image, *trusted, args=(), json_out=True):
    path = tmp_path / "store.img"
    path.write_bytes(image.image() if isinstance(image, Writer) else image)
    argv = ["--device", str(path)]
    for key in trusted:
        argv += ["--trust", str(key if isinstance(key, (str, Path)) else key.trust_file(tmp_path))]
    argv += [*args] + (["--json"] if json_out else [])
    out, err = io.StringIO(), io.StringIO()
    code = ver.main(argv, out=out, err=err)
    assert err.getvalue() == ""
    if not json_out:
        return code, out.getvalue()
    return Result(code, out.getvalue(), anchored="--anchor" in args)


def signed_store(kind="ed25519", n=3, **kw):
    key = Signer(kind)
    w = Writer(key, **kw).open()
    for i in range(n):
        w.commit([b'{"t":%d}' % i])
    return w.close(), key


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind, alg", [("ed25519", "ed25519"), ("ecdsa", "ecdsa-p256"),
                                       ("hmac", "hmac-sha256")])
def test_intact_store_passes(tmp_path, kind, alg):
    w, key = signed_store(kind)
    r = verify(tmp_path, w, key)
    assert r.code == 0
    assert r.reasons == [None, None, None]
    assert [s["sig_verify"] for s in r.segments] == ["PASS"] * 3
    assert r.summary == {"kind": "summary", "verdict": "PASS", "segments": 3, "passed": 3,
                         "failed": 0, "signed": True, "sig_alg": alg, "reasons": []}
    # Exact form of the lines: keys in the order of section 9, no spaces.
    assert r.text.splitlines()[0] == (
        '{"kind":"segment","segment_id":1,"slot":0,"offset":8192,"sig_verify":"PASS",'
        '"reason":null,"key_epoch":1}')
    assert r.text.splitlines()[-1] == (
        '{"kind":"summary","verdict":"PASS","segments":3,"passed":3,"failed":0,'
        '"signed":true,"sig_alg":"%s","reasons":[]}' % alg)


def test_readable_output(tmp_path):
    w, key = signed_store("hmac")
    code, text = verify(tmp_path, w, key, json_out=False)
    assert code == 0
    assert "verdict PASS: 3 segments, 3 passed, 0 failed; signed with hmac-sha256" in text
    assert "integrity only to holders of the secret, not origin" in text
    change_payload(w, 2)
    code, text = verify(tmp_path, w, key, json_out=False)
    assert code == 1 and "crc_mismatch" in text and "verdict FAIL" in text


def test_payload_byte_changed_is_crc_mismatch(tmp_path):
    w, key = signed_store()
    rec = change_payload(w, 2)
    r = verify(tmp_path, w, key)
    assert r.code == 1
    assert r.reasons == [None, "crc_mismatch", None]
    # The first failing byte range is the record (before body_crc in the marker).
    assert r.segments[1]["offset"] == rec
    assert r.summary["reasons"] == ["crc_mismatch"]


def test_payload_changed_with_crcs_refitted_is_hash_mismatch(tmp_path):
    w, key = signed_store()
    change_payload(w, 2, fix_record=True, fix_body=True)
    r = verify(tmp_path, w, key)
    # Segment 3 is checked against the hash segment 2's seal claims, which is
    # the one it was chained to: it passes.
    assert r.reasons == [None, "hash_mismatch", None]
    assert r.code == 1


def test_seal_hash_recomputed_is_bad_signature(tmp_path):
    w, key = signed_store()
    change_payload(w, 2, fix_record=True, fix_body=True, fix_seal=True)
    r = verify(tmp_path, w, key)
    # Segment 2 now passes its hash check, so its computed hash is what
    # segment 3's prev_hash is compared with: the chain shows the change too.
    assert r.reasons == [None, "bad_signature", "chain_break"]
    assert r.segments[1]["sig_verify"] == "FAIL"


def test_seal_hash_recomputed_on_head_is_bad_signature_only(tmp_path):
    w, key = signed_store()
    change_payload(w, 3, fix_record=True, fix_body=True, fix_seal=True)
    r = verify(tmp_path, w, key)
    assert r.reasons == [None, None, "bad_signature"]
    assert r.findings == []  # hash_head is only compared when the head passed


def test_zeroed_middle_segment_is_gap(tmp_path):
    w, key = signed_store()
    off, _, _ = w.seg_range(2)
    w.buf[off:off + SEG] = bytes(SEG)
    r = verify(tmp_path, w, key)
    assert r.reasons == [None, "gap", None]
    assert r.segments[1] == {"kind": "segment", "segment_id": 2, "slot": 1, "offset": off,
                             "sig_verify": "FAIL", "reason": "gap", "key_epoch": 0}


def test_swapped_segments_are_reordered(tmp_path):
    w, key = signed_store(n=4)
    a, _, _ = w.seg_range(2)
    b, _, _ = w.seg_range(3)
    w.buf[a:a + SEG], w.buf[b:b + SEG] = w.buf[b:b + SEG], w.buf[a:a + SEG]
    r = verify(tmp_path, w, key)
    assert r.reasons == [None, "reordered", "reordered", None]
    # Section 9: "segment_id is always the expected id e, whatever the slot
    # holds"; the offset is the slot's start, and key_epoch 0 (the seal is
    # not read before the id check).
    assert [s["segment_id"] for s in r.segments] == [1, 2, 3, 4]
    assert [s["offset"] for s in r.segments[1:3]] == [a, b]
    assert [s["key_epoch"] for s in r.segments] == [1, 0, 0, 1]


def test_segment_signed_by_unknown_key(tmp_path):
    key, stranger = Signer("ed25519"), Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit(signer=stranger)
    w.commit()
    r = verify(tmp_path, w.close(), key)
    assert r.reasons == [None, "unknown_key", None]
    # Trusting both keys: all pass.
    assert verify(tmp_path, w, key, stranger).code == 0


def test_wrong_epoch_is_unknown_key(tmp_path):
    key = Signer("ecdsa")
    w = Writer(key).open()
    w.commit()
    w.commit(epoch=2)
    assert verify(tmp_path, w.close(), key).reasons == [None, "unknown_key"]


def test_fw_not_allowed(tmp_path):
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit(fw=FW_OTHER)
    w.close()
    assert verify(tmp_path, w, key).code == 0  # no --allow-fw: not checked
    r = verify(tmp_path, w, key, args=["--allow-fw", FW.hex()])
    assert r.code == 1 and r.reasons == [None, "fw_not_allowed"]
    # "a segment to which none applies is PASS, any other FAIL": the
    # signature verified, but the segment has a reason, so sig_verify FAIL.
    assert [s["sig_verify"] for s in r.segments] == ["PASS", "FAIL"]
    assert (r.summary["verdict"], r.summary["passed"], r.summary["failed"],
            r.summary["reasons"]) == ("FAIL", 1, 1, ["fw_not_allowed"])
    assert verify(tmp_path, w, key, args=["--allow-fw", FW.hex(), FW_OTHER.hex()]).code == 0
    assert verify(tmp_path, w, key, args=["--allow-fw", FW.hex(), "--allow-fw",
                                          FW_OTHER.hex().upper()]).code == 0


def test_unsigned_store(tmp_path):
    w = Writer(None).open()
    w.commit()
    w.commit()
    w.close()
    key = Signer("ed25519")
    r = verify(tmp_path, w, key)
    assert r.code == 1 and r.reasons == ["unsigned", "unsigned"]
    assert [s["sig_verify"] for s in r.segments] == ["FAIL", "FAIL"]
    assert r.summary["reasons"] == ["unsigned"] and r.summary["signed"] is False
    r = verify(tmp_path, w, key, args=["--allow-unsigned"])
    assert r.code == 0
    # "then it is no reason": PASS, reason null.
    assert r.reasons == [None, None]
    assert r.text.splitlines()[0] == (
        '{"kind":"segment","segment_id":1,"slot":0,"offset":8192,"sig_verify":"PASS",'
        '"reason":null,"key_epoch":0}')
    assert (r.summary["verdict"], r.summary["passed"], r.summary["signed"],
            r.summary["sig_alg"], r.summary["reasons"]) == ("PASS", 2, False, "unsigned", [])


def test_allow_unsigned_still_checks_fw_and_rollback(tmp_path):
    # "--allow-unsigned ...: then it is no reason and the checks below still
    # apply": fw_not_allowed and rollback are made for unsigned segments too.
    w = Writer(None).open().open().open()  # rollback_ctr 3
    w.commit()
    w.commit(fw=FW_OTHER)
    w.commit(rollback=2)
    w.commit()
    w.close()
    key = Signer("ed25519")
    r = verify(tmp_path, w, key, args=["--allow-unsigned", "--allow-fw", FW.hex()])
    assert r.code == 1
    assert r.reasons == [None, "fw_not_allowed", "rollback", None]
    # A segment with a reason is sig_verify FAIL, one with none PASS.
    assert [s["sig_verify"] for s in r.segments] == ["PASS", "FAIL", "FAIL", "PASS"]
    assert (r.summary["passed"], r.summary["failed"]) == (2, 2)
    assert r.summary["reasons"] == ["fw_not_allowed", "rollback"]
    # Without --allow-fw only the counter is checked.
    r = verify(tmp_path, w, key, args=["--allow-unsigned"])
    assert r.reasons == [None, None, "rollback", None]
    assert [s["sig_verify"] for s in r.segments] == ["PASS", "PASS", "FAIL", "PASS"]
    assert (r.summary["passed"], r.summary["failed"]) == (3, 1)
    # Without --allow-unsigned, `unsigned` is the reason of every segment
    # (the first that applies), and it fails.
    r = verify(tmp_path, w, key, args=["--allow-fw", FW.hex()])
    assert r.code == 1 and r.reasons == ["unsigned"] * 4
    assert r.summary["reasons"] == ["unsigned"]
    # Allowed unsigned segments before signed ones pass; an unsigned one
    # after a verified signature is a downgrade (format version 5).
    w = Writer(None).open()
    w.commit()
    w.signer, w.epoch = key, 1
    w.commit()
    w.commit()
    w.close()
    assert verify(tmp_path, w, key).reasons == ["unsigned", None, None]
    r = verify(tmp_path, w, key, args=["--allow-unsigned"])
    assert r.code == 0 and r.reasons == [None, None, None]
    assert [s["key_epoch"] for s in r.segments] == [0, 1, 1]
    # "signed is true when at least one segment passed and the signature of
    # every segment that passed verified": segment 1 passed unsigned.
    assert (r.summary["signed"], r.summary["sig_alg"]) == (False, "ed25519")


def test_key_rotation_followed(tmp_path):
    old, new = Signer("ed25519"), Signer("ecdsa")
    w = Writer(old).open()
    w.commit()
    w.rotate(new)
    w.commit()
    w.commit()
    r = verify(tmp_path, w.close(), old)  # only the first key is given
    assert r.code == 0 and r.reasons == [None] * 4
    assert [s["key_epoch"] for s in r.segments] == [1, 1, 2, 2]
    assert r.summary["sig_alg"] == "ecdsa-p256"


def test_forged_endorsement_is_bad_signature(tmp_path):
    old, new, forger = Signer("ed25519"), Signer("ed25519"), Signer("ed25519")
    w = Writer(old).open()
    w.commit()
    w.rotate(new, endorse_with=forger)
    w.commit()
    r = verify(tmp_path, w.close(), old)
    # The rotation's segment fails; its key is never trusted.
    assert r.reasons == [None, "bad_signature", "unknown_key"]
    # Both reasons are read from the seal: the lines point at the commit
    # markers (slot + 128 + payload_len).
    assert [s["offset"] for s in r.segments] == [w.seg_range(1)[0], w.seg_range(2)[2],
                                                 w.seg_range(3)[2]]
    # The rotation segment's own signature verified (the endorsement did
    # not): it counts for the summary's signed / sig_alg.
    assert (r.summary["signed"], r.summary["sig_alg"]) == (True, "ed25519")


def test_old_key_is_retired_after_rotation(tmp_path):
    old, new = Signer("ecdsa"), Signer("ed25519")
    w = Writer(old).open()
    w.rotate(new)
    w.commit(signer=old, epoch=1)  # "every later segment is signed by the new one"
    assert verify(tmp_path, w.close(), old).reasons == [None, "unknown_key"]


def test_rotation_to_hmac_needs_the_secret(tmp_path):
    old, new = Signer("ed25519"), Signer("hmac")
    w = Writer(old).open()
    w.rotate(new)
    w.commit()
    w.close()
    r = verify(tmp_path, w, old, new)
    assert r.reasons == [None, None]
    assert (r.summary["signed"], r.summary["sig_alg"]) == (True, "hmac-sha256")
    r = verify(tmp_path, w, old)
    assert r.reasons == [None, "unknown_key"]
    # sig_alg "names the algorithm of the last one that did" verify: the
    # HMAC segment's was never checked.
    assert (r.summary["signed"], r.summary["sig_alg"]) == (True, "ed25519")


def test_rotation_in_segment_signed_by_another_trusted_key(tmp_path):
    # The record names `old` as the old key, but the segment is signed by
    # `other`: the endorsement is not by the key that signed the segment.
    old, other, new = Signer("ed25519"), Signer("ed25519"), Signer("ed25519")
    w = Writer(old).open()
    w.rotate(new, segment_signer=other)
    r = verify(tmp_path, w.close(), old, other)
    assert r.reasons == ["bad_signature"]


# -- key directories (section 9: trusted at key.json's key_epoch) --

def test_key_directory_trusts_its_key_at_its_epoch(tmp_path):
    # K1 -> K2 -> K3 by rotation records, then the ring (6 slots) overwrites
    # them: the retained segments are all signed by K3 at epoch 3, with no
    # rotation record left that endorses K3.  K3 then rotates to K4.
    k1, k2, k3, k4 = (Signer(kind) for kind in ("ed25519", "ecdsa", "ed25519", "ecdsa"))
    w = Writer(k1).open()
    w.commit()
    w.rotate(k2)
    w.rotate(k3)
    for i in range(5):
        w.commit([b'{"t":%d}' % i])
    w.rotate(k4)
    w.commit()
    w.close()

    r = verify(tmp_path, w, k3)  # a key file: epoch 1
    assert r.code == 1
    assert [s["segment_id"] for s in r.segments] == [5, 6, 7, 8, 9, 10]
    assert r.reasons == ["unknown_key"] * 6
    assert r.summary["reasons"] == ["unknown_key"]
    assert verify(tmp_path, w, k1).reasons == ["unknown_key"] * 6

    r = verify(tmp_path, w, k3.key_dir(tmp_path, 3))
    assert r.code == 0 and r.reasons == [None] * 6
    assert [s["key_epoch"] for s in r.segments] == [3, 3, 3, 3, 3, 4]
    assert r.summary["verdict"] == "PASS" and r.summary["sig_alg"] == "ecdsa-p256"

    # A key directory at another epoch than the seals': unknown_key.
    assert verify(tmp_path, w, k3.key_dir(tmp_path, 2)).reasons[:5] == ["unknown_key"] * 5
    # The anchor (segment 10, K4 at epoch 4) is checked with a directory's
    # key, at the anchor's epoch.
    r = verify(tmp_path, w, k3.key_dir(tmp_path, 4), k4.key_dir(tmp_path, 4),
               args=anchor_args(tmp_path, w.head_json()))
    assert r.findings == [] and r.reasons == ["unknown_key"] * 5 + [None]
    # K4 as a key file is trusted at epoch 1 only (and no passing rotation
    # endorses it at 4): the anchor does not verify.
    r = verify(tmp_path, w, k3, k4, args=anchor_args(tmp_path, w.head_json()))
    assert r.findings == [("anchor_bad_signature", 0)]
    assert r.reasons == ["unknown_key"] * 6
    # With K3's directory the walk endorses K4 at epoch 4 (segment 9's
    # rotation): the anchor verifies with a key trusted at a point of the walk.
    r = verify(tmp_path, w, k3.key_dir(tmp_path, 3), args=anchor_args(tmp_path, w.head_json()))
    assert r.findings == [] and r.reasons == [None] * 6


def test_key_directory_agrees_with_retained_rotations(tmp_path):
    # Nothing overwritten: the first key's file alone passes, and so does it
    # with the current key's directory beside it (the rotation endorses that
    # key at the same epoch).
    k1, k2 = Signer("ecdsa"), Signer("ed25519")
    w = Writer(k1).open()
    w.commit()
    w.rotate(k2)
    w.commit()
    w.close()
    assert verify(tmp_path, w, k1).reasons == [None, None, None]
    r = verify(tmp_path, w, k1, k2.key_dir(tmp_path, 2))
    assert r.code == 0 and [s["key_epoch"] for s in r.segments] == [1, 1, 2]
    # The directory's key is not also trusted at epoch 1.
    w = Writer(k2).open()
    w.commit()
    w.epoch = 2
    w.commit()
    r = verify(tmp_path, w.close(), k2.key_dir(tmp_path, 2))
    assert r.reasons == ["unknown_key", None]
    # Given as a key file and as a key directory, it is trusted at both.
    assert verify(tmp_path, w, k2, k2.key_dir(tmp_path, 2)).reasons == [None, None]


def test_hmac_key_directory(tmp_path):
    key = Signer("hmac")
    w = Writer(key).open()
    w.epoch = 3  # rotated twice before this history
    w.commit()
    w.commit()
    w.close()
    assert verify(tmp_path, w, key).reasons == ["unknown_key", "unknown_key"]
    directory = key.key_dir(tmp_path, 3)
    assert sorted(p.name for p in directory.iterdir()) == ["hmac-key.hex", "key.json"]
    loaded = ver.load_trust_key(str(directory))
    assert (loaded.alg, loaded.key_id, loaded.secret, loaded.epoch) == (3, key.key_id,
                                                                          key.secret, 3)
    r = verify(tmp_path, w, directory)
    assert r.code == 0 and r.reasons == [None, None]
    assert [s["key_epoch"] for s in r.segments] == [3, 3]
    assert r.summary["sig_alg"] == "hmac-sha256"
    # key.json's key_id must be the secret's (not, say, a hash of the hex digits).
    wrong = hashlib.sha256(b"EDGELOG-HMAC-KEY-ID" + key.secret.hex().encode()).digest()[:16]
    bad = key.key_dir(tmp_path, 3, key_id=wrong)
    err = io.StringIO()
    assert ver.main(["--device", str(tmp_path / "store.img"), "--trust", str(bad)],
                    out=io.StringIO(), err=err) == 2
    assert "key_id" in err.getvalue() and wrong.hex() in err.getvalue()


def test_key_directory_whose_key_id_does_not_match_is_usage_error(tmp_path):
    w, key = signed_store()
    image = tmp_path / "store.img"
    image.write_bytes(w.image())
    other = Signer("ed25519")
    directory = key.key_dir(tmp_path, 1, key_id=other.key_id)
    out, err = io.StringIO(), io.StringIO()
    assert ver.main(["--device", str(image), "--trust", str(directory)], out=out, err=err) == 2
    assert out.getvalue() == ""
    message = err.getvalue()
    assert message.startswith("edgelog_verify: ") and str(directory) in message
    assert other.key_id.hex() in message and key.key_id.hex() in message
    # Through the executable as well.
    proc = subprocess.run([str(SCRIPT), "--device", str(image), "--trust", str(directory)],
                          capture_output=True)
    assert proc.returncode == 2 and b"key_id" in proc.stderr and proc.stdout == b""
    # The same directory with the right key_id passes.
    (directory / "key.json").write_text(
        '{"alg":"ed25519","key_epoch":1,"key_id":"%s","key_src":"file"}' % key.key_id.hex())
    assert verify(tmp_path, w, directory).code == 0


@pytest.mark.parametrize("edit", [
    "no key.json", "not json", "not an object", "alg unknown", "alg of another key",
    "epoch 0", "epoch a string", "epoch true", "epoch too big", "key_id short",
    "key_id not hex", "no public key", "public key is not a key"])
def test_bad_key_directory_is_usage_error(tmp_path, edit):
    w, key = signed_store("ecdsa")
    directory = key.key_dir(tmp_path, 2)
    meta = json.loads((directory / "key.json").read_text())
    if edit == "no key.json":
        (directory / "key.json").unlink()
    elif edit == "not json":
        (directory / "key.json").write_text("{")
    elif edit == "not an object":
        (directory / "key.json").write_text("[]")
    else:
        changes = {"alg unknown": ("alg", "rsa"), "alg of another key": ("alg", "ed25519"),
                   "epoch 0": ("key_epoch", 0), "epoch a string": ("key_epoch", "2"),
                   "epoch true": ("key_epoch", True), "epoch too big": ("key_epoch", 2**32),
                   "key_id short": ("key_id", key.key_id.hex()[:-2]),
                   "key_id not hex": ("key_id", "zz" + key.key_id.hex()[2:])}
        if edit in changes:
            name, value = changes[edit]
            meta[name] = value
            (directory / "key.json").write_text(json.dumps(meta))
        elif edit == "no public key":
            (directory / "signing-key.pub.pem").unlink()
        else:
            (directory / "signing-key.pub.pem").write_text("0123\n")
    with pytest.raises(ver.UsageError):
        ver.load_trust_key(str(directory))
    image = tmp_path / "store.img"
    image.write_bytes(w.image())
    err = io.StringIO()
    assert ver.main(["--device", str(image), "--trust", str(directory)],
                    out=io.StringIO(), err=err) == 2
    assert str(directory) in err.getvalue()


def test_decreasing_rollback_ctr_is_rollback(tmp_path):
    key = Signer("ed25519")
    w = Writer(key).open().open().open()  # rollback_ctr 3
    w.commit()
    w.commit(rollback=2)
    w.commit()
    r = verify(tmp_path, w.close(), key)
    # Segment 3 (ctr 3) is compared with segment 2's verified ctr 2: fine.
    assert r.reasons == [None, "rollback", None]


def test_fw_not_allowed_and_rollback_are_sig_verify_fail(tmp_path):
    # Section 9 step 2: "The first of these that applies is the segment's
    # reason; a segment to which none applies is PASS", any other FAIL, the
    # two reasons checked after the signature included.
    key = Signer("ed25519")
    w = Writer(key).open().open().open()  # rollback_ctr 3
    w.commit()
    w.commit(fw=FW_OTHER)
    w.commit(rollback=2)
    w.commit()
    w.close()
    r = verify(tmp_path, w, key, args=["--allow-fw", FW.hex()])
    assert r.code == 1 and r.reasons == [None, "fw_not_allowed", "rollback", None]
    assert [s["sig_verify"] for s in r.segments] == ["PASS", "FAIL", "FAIL", "PASS"]
    assert [s["key_epoch"] for s in r.segments] == [1, 1, 1, 1]
    assert r.summary == {"kind": "summary", "verdict": "FAIL", "segments": 4, "passed": 2,
                         "failed": 2, "signed": True, "sig_alg": "ed25519",
                         "reasons": ["fw_not_allowed", "rollback"]}
    # The readable report says the same.
    code, text = verify(tmp_path, w, key, args=["--allow-fw", FW.hex()], json_out=False)
    assert code == 1
    rows = [line.split() for line in text.splitlines()[2:6]]
    assert [(row[0], row[3], row[5].rstrip(":")) for row in rows] == [
        ("1", "PASS", "PASS"), ("2", "FAIL", "fw_not_allowed"), ("3", "FAIL", "rollback"),
        ("4", "PASS", "PASS")]
    assert "4 segments, 2 passed, 2 failed" in text


def test_hash_head_wrong_in_metadata(tmp_path):
    w, key = signed_store()
    base = chosen_base(w)
    change_meta(w, base, 192, b"\x42" * 32)
    r = verify(tmp_path, w, key)
    assert r.reasons == [None, None, None]
    assert r.findings == [("hash_mismatch", base + 192)]
    assert r.code == 1


def test_fake_segment_header_in_payload_passes(tmp_path):
    # A payload carrying a whole signed segment (header, record, marker) of
    # this store, placed on a sector boundary: never read as structure.
    key = Signer("ed25519")
    donor = Writer(key).open()
    donor.commit([b'{"fake":1}'])
    donor.commit([b'{"fake":2}'])
    off, _, _ = donor.seg_range(2)
    fake = donor.buf[off:off + 1024].hex().encode()
    w = Writer(key).open()
    pad = 512 - 128 - 60 - len(b"temp") - len(b'{"x":"')
    payload = b'{"x":"' + b"." * pad + fake[:400] + b'"}'
    w.commit([payload])
    w.commit()
    w.close()
    r = verify(tmp_path, w, key)
    assert r.code == 0 and r.reasons == [None, None]
    # And raw bytes, with EDGELOGS at the sector boundary.
    w = Writer(key).open()
    raw = bytes(donor.buf[off:off + 1024]).replace(b'"', b"'")
    w.commit([b'{"x":"' + b"." * pad + raw + b'"}'])
    assert w.buf[8192 + 512:8192 + 520] == b"EDGELOGS"
    assert verify(tmp_path, w.close(), key).code == 0


def test_chain_break(tmp_path):
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit(prev_hash=b"\x11" * 32)  # signed, well formed, but not chained
    w.commit()
    # Segment 3 chains onto segment 2 as written (2 passed its hash check,
    # so its computed hash is the one compared): only 2 fails.
    assert verify(tmp_path, w.close(), key).reasons == [None, "chain_break", None]


def test_first_segment_needs_zero_prev_hash(tmp_path):
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit(prev_hash=b"\x11" * 32)
    assert verify(tmp_path, w.close(), key).reasons == ["chain_break"]


def test_foreign_segment(tmp_path):
    key = Signer("ed25519")
    w, _ = signed_store(n=3)
    w2 = Writer(key, uuid=bytes(16)).open()
    for _ in range(3):
        w2.commit()
    off, _, _ = w.seg_range(2)
    w.buf[off:off + SEG] = w2.buf[off:off + SEG]
    assert verify(tmp_path, w, key).reasons[1] == "foreign_segment"
    # Same store_uuid, other device_id in the statement.
    w3 = Writer(key, device=OTHER_DEVICE).open()
    for _ in range(3):
        w3.commit()
    w, _ = signed_store(n=3)
    w.buf[off:off + SEG] = w3.buf[off:off + SEG]
    assert verify(tmp_path, w, key).reasons[1] == "foreign_segment"


def test_seal_mismatch(tmp_path):
    w, key = signed_store()
    _, _, mbase = w.seg_range(2)
    struct.pack_into("<I", w.buf, mbase + 40 + 56, 7)  # statement record_count
    refit_marker_crc(w.buf, mbase)
    r = verify(tmp_path, w, key)
    assert r.reasons == [None, "seal_mismatch", None]


def test_sig_len_not_the_algorithms_is_seal_mismatch(tmp_path):
    w, key = signed_store("hmac")
    _, _, mbase = w.seg_range(2)
    w.buf[mbase + 40 + 184] = 1  # says Ed25519 with a 32-byte signature
    refit_marker_crc(w.buf, mbase)
    assert verify(tmp_path, w, key).reasons == [None, "seal_mismatch", None]


def test_neither_head_valid_is_truncated_tail(tmp_path):
    w, key = signed_store()
    for seg_id in (2, 3):
        off, _, _ = w.seg_range(seg_id)
        w.buf[off:off + SEG] = bytes(SEG)
    r = verify(tmp_path, w, key)
    assert r.reasons == [None, "gap", "gap"]
    # Section 9, --json: "truncated_tail of item 3 [gives] the start of the
    # head slot the chosen metadata names".
    assert r.findings == [("truncated_tail", w.seg_range(3)[0])]
    assert w.seg_range(3)[0] == 8192 + 2 * SEG


def test_invalid_metadata_slot(tmp_path):
    # Chosen slot's clean_flag 1: a crc_mismatch finding at the slot's
    # offset that fails the store, whichever slot it is.
    for n in (3, 4):  # the closed store's chosen slot is B, then A
        w, key = signed_store(n=n)
        other = 4096 - chosen_base(w)
        w.buf[other + 100] ^= 1
        r = verify(tmp_path, w, key)
        assert r.code == 1 and r.findings == [("crc_mismatch", other)]
        assert r.notes == [] and r.reasons == [None] * n
        assert r.summary["reasons"] == ["crc_mismatch"]


def test_invalid_metadata_slot_before_recovery_is_a_note(tmp_path):
    # Chosen slot's clean_flag 0 (image taken before recovery): possibly a
    # torn metadata write: a note, not a finding, and the store passes.
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit()
    other = 4096 - chosen_base(w)
    w.buf[other + 100] ^= 1
    r = verify(tmp_path, w, key)
    assert r.code == 0 and r.findings == [] and r.reasons == [None, None]
    assert r.notes == [("torn_metadata_write", 0)]
    assert r.summary["verdict"] == "PASS" and r.summary["reasons"] == []
    note = [line for line in r.text.splitlines() if '"kind":"note"' in line][:-1]
    assert len(note) == 1 and note[0].startswith(
        '{"kind":"note","note":"torn_metadata_write","segment_id":0,"detail":"')
    # The realistic case: the close's metadata write (clean_flag 1) is torn,
    # so the slot before it, written open (clean_flag 0), is chosen.
    w, key = signed_store()
    torn = chosen_base(w)
    w.buf[torn + 4000:torn + 4096] = bytes(96)
    r = verify(tmp_path, w, key)
    assert r.code == 0 and r.findings == [] and r.notes == [("torn_metadata_write", 0)]
    assert r.reasons == [None, None, None]


def test_both_metadata_slots_invalid_is_not_a_store(tmp_path):
    # Section 9 step 1: "Each invalid slot is a finding crc_mismatch (offset
    # 0 or 4096) ...  No valid slot: the verdict is not_a_store."  With no
    # valid slot there is no chosen slot whose clean_flag 0 could make them
    # notes, even when both slots were written open.
    for close in (True, False):
        key = Signer("ed25519")
        w = Writer(key).open()
        w.commit()
        w.commit()
        if close:
            w.close()
        w.buf[100] ^= 1
        w.buf[4096 + 100] ^= 1
        r = verify(tmp_path, w, key)
        assert r.code == 1 and r.segments == [] and r.notes == []
        assert r.findings == [("crc_mismatch", 0), ("crc_mismatch", 4096), ("not_a_store", 0)]
        assert r.summary == {"kind": "summary", "verdict": "FAIL", "segments": 0, "passed": 0,
                             "failed": 0, "signed": False, "sig_alg": "unsigned",
                             "reasons": ["crc_mismatch", "not_a_store"]}


@pytest.mark.parametrize("cut", [8192 + 4 * SEG,         # inside the ring, after the head
                                 8192 + 2 * SEG + 256,   # inside the head segment
                                 8192 + 6 * SEG - 1])    # one byte short
def test_truncated_image_is_not_a_store(tmp_path, cut):
    # Section 2: a slot whose store_size is more than the device holds is
    # refused as "truncated".  Both slots describe the whole store, so an
    # image cut short has no valid slot: not_a_store, never a shorter valid
    # store (even when every committed segment lies before the cut).
    w, key = signed_store(n=3)  # segments in slots 0..2 of 6
    image = w.image()[:cut]
    r = verify(tmp_path, image, key)
    assert r.code == 1 and r.summary["verdict"] == "FAIL"
    assert r.findings == [("crc_mismatch", 0), ("crc_mismatch", 4096), ("not_a_store", 0)]
    assert r.summary["reasons"] == ["crc_mismatch", "not_a_store"]
    assert r.segments == []
    details = [x["detail"] for x in r.lines if x["kind"] == "finding"]
    assert all("truncated" in d for d in details[:2])
    # The whole image, and one with bytes after the store, pass.
    assert verify(tmp_path, w, key).code == 0
    assert verify(tmp_path, w.image() + bytes(SEG), key).code == 0


def test_slot_describing_more_than_the_device_is_crc_mismatch(tmp_path):
    # One slot's store_size is more than the device (CRC refitted): that
    # slot is not valid (a crc_mismatch finding at its offset) and the other
    # slot is used.
    for n in (3, 4):  # the closed store's chosen slot is B, then A
        w, key = signed_store(n=n)
        other = 4096 - chosen_base(w)
        change_meta(w, other, 48, struct.pack("<Q", len(w.buf) + 1))
        r = verify(tmp_path, w, key)
        assert r.code == 1 and r.findings == [("crc_mismatch", other)]
        assert r.reasons == [None] * n and r.notes == []
        assert "truncated" in [x["detail"] for x in r.lines if x["kind"] == "finding"][0]
        assert r.summary["reasons"] == ["crc_mismatch"]
    # The newest slot too big: it is passed over for the older one (both
    # closed cleanly, so still a finding).  Its hash_head is wrong as well:
    # were it used, that would be a hash_mismatch at its offset 192.
    w, key = signed_store(n=3)
    w.close()  # a second clean close: both slots clean, the newest in A
    newest = chosen_base(w)
    change_meta(w, newest, 192, b"\x42" * 32)
    change_meta(w, newest, 48, struct.pack("<Q", len(w.buf) + SEG))
    r = verify(tmp_path, w, key)
    assert r.code == 1 and r.findings == [("crc_mismatch", newest)]
    assert r.reasons == [None, None, None] and r.notes == []


def test_not_a_store(tmp_path):
    r = verify(tmp_path, bytes(8192 + 4 * SEG), Signer("ed25519"))
    assert r.code == 1
    assert r.summary["reasons"] == ["crc_mismatch", "not_a_store"]
    assert ("not_a_store", 0) in r.findings
    # A version 1, 2 or 3 store is not a store this version reads.
    for old in (1, 2, 3, 4):
        w, key = signed_store()
        for base in (0, 4096):
            change_meta(w, base, 8, struct.pack("<H", old))
        r = verify(tmp_path, w, key)
        assert r.code == 1 and "not_a_store" in r.summary["reasons"]


def test_newer_format_is_not_a_store(tmp_path):
    # Version 6 in the chosen slot (CRC not refitted: the version is checked
    # before the CRC, since a newer layout may move it).
    w, key = signed_store()
    struct.pack_into("<H", w.buf, chosen_base(w) + 8, 6)
    r = verify(tmp_path, w, key)
    assert r.code == 1 and r.summary["reasons"] == ["not_a_store"]
    assert ("not_a_store", 0) in r.findings
    assert "newer format" in r.text


@pytest.mark.parametrize("old", [2, 3, 4, 6])
def test_older_version_segment_is_crc_mismatch(tmp_path, old):
    # Segment 2's header says another format version than 5 (section 3.1,
    # header_crc refitted): it is not a valid version 5 segment, reported at
    # its header.
    key = Signer("ed25519")
    w = Writer(key).open()
    for _ in range(3):
        w.commit()
    off, payload_len, mbase = w.seg_range(2)
    struct.pack_into("<H", w.buf, off + 8, old)
    struct.pack_into("<I", w.buf, off + 124, crc(bytes(w.buf[off:off + 124])))
    r = verify(tmp_path, w.close(), key)
    assert r.code == 1 and r.reasons == [None, "crc_mismatch", None]
    assert r.segments[1]["offset"] == off


def test_time_path_store_passes(tmp_path):
    # Two boots; the time records of section 4 (boot, clock_step, time_state
    # under edgelog.time) and every time_flags bit are ordinary records to
    # the verifier: the store passes with no notes.
    key = Signer("ed25519")
    w = Writer(key).open(b"boot-1")
    boot = (b'{"boot_id":"%s","boot_seq":1,"unexpected_reset":false,"mono_resume":0,'
            b'"reason":"start","synced":false}' % w.boot_id.hex().encode())
    w.commit(records=[("edgelog.time", boot, 6, 0), ("temp", b'{"t":1}', 1, 2)])
    w.commit(records=[
        ("edgelog.time", b'{"direction":"backward","magnitude_ns":5,"source":"sync"}', 7, 5),
        ("temp", b'{"t":2}', 1, 1),
        ("edgelog.time", b'{"reason":"sync_change","synced":true}', 9, 1)])
    w.close()
    w.open(b"boot-2")
    assert w.boot_seq == 2
    w.commit(records=[("edgelog.time", b'{"boot_seq":2}', 6, 1), ("temp", b"{}", 1, 7)])
    r = verify(tmp_path, w.close(), key)
    assert r.code == 0 and r.reasons == [None, None, None]
    assert r.notes == [] and r.findings == []


# -- format version 4: the sync sample in every record --

def test_sync_sample_values_are_all_valid(tmp_path):
    # maxerror_us, esterror_us and last_sync_ns have no validity rule
    # (section 3.4): null values (0xFFFFFFFF, 0), saturated ones, negative
    # and extreme wall times all verify, and the parse the verifier uses
    # reads each one back from its own offset (44, 48, 52).
    samples = [(0xFFFFFFFF, 0xFFFFFFFF, 0), (0xFFFFFFFE, 0, -1),
               (0, 0xFFFFFFFE, 2**63 - 1), (0x11223344, 0x55667788, -2**63)]
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit(records=[("temp", b'{"t":%d}' % i, 1, SYNCED, sample)
                      for i, sample in enumerate(samples)])
    w.commit()
    r = verify(tmp_path, w.close(), key)
    assert r.code == 0 and r.reasons == [None, None] and r.findings == []
    store = ver.dec.Store(io.BytesIO(w.image()))
    result = ver.dec.scan(store)
    seg = ver.dec.parse_segment(store, result.meta, 0, 1)
    assert [(rec.maxerror_us, rec.esterror_us, rec.last_sync_ns)
            for rec in seg.records] == samples
    assert [rec.payload for rec in seg.records] == [b'{"t":%d}' % i for i in range(4)]


@pytest.mark.parametrize("field_offset", [44, 48, 52, 59])
def test_sync_sample_is_covered_by_crc_hash_and_signature(tmp_path, field_offset):
    # One byte of maxerror_us (44), esterror_us (48) or last_sync_ns (52..59)
    # changed in segment 2's first record: the record CRC catches it; with
    # the record CRC and body_crc refitted, the hash; with the seal's
    # segment_hash refitted too, the signature.
    def changed(fix_record=False, fix_body=False, fix_seal=False):
        w, key = signed_store()
        off, payload_len, mbase = w.seg_range(2)
        rec = off + 128
        record_len, = struct.unpack_from("<I", w.buf, rec)
        w.buf[rec + field_offset] ^= 0x40
        if fix_record:
            struct.pack_into("<I", w.buf, rec + record_len - 8,
                             crc(bytes(w.buf[rec:rec + record_len - 8])))
        covered = bytes(w.buf[off:off + 128 + payload_len])
        if fix_body:
            struct.pack_into("<I", w.buf, mbase + 32, crc(covered))
        if fix_seal:
            w.buf[mbase + 40 + 152:mbase + 40 + 184] = hashlib.sha256(covered).digest()
        refit_marker_crc(w.buf, mbase)
        return verify(tmp_path, w, key), rec

    r, rec = changed()
    assert r.reasons == [None, "crc_mismatch", None]
    assert r.segments[1]["offset"] == rec  # the record is the failing range
    assert changed(True, True)[0].reasons == [None, "hash_mismatch", None]
    # Segment 2 then passes its hash check with the changed bytes, so
    # segment 3's prev_hash shows the change too.
    assert changed(True, True, True)[0].reasons == [None, "bad_signature", "chain_break"]


def short_record(record_len, mono):
    """A record whose record_len says `record_len` (below 69), with its CRC
    and end marker where that length puts them: the 60-byte header says
    source_len 1, and whatever fits of the source follows."""
    body = bytearray(struct.pack("<IHHQQqqHHIIq", record_len, 1, SYNCED, 1, mono,
                                 1_700_000_000_000_000_000, 5_000, 1, 1, *SAMPLE))
    body += b"t" * max(0, record_len - 8 - len(body))
    body = bytes(body[:record_len - 8])
    return body + struct.pack("<I", crc(body)) + b"RECE"


def test_record_len_69_passes(tmp_path):
    # The shortest record: 60 header bytes, a 1-byte source, no payload,
    # CRC and end marker.
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit(records=[("t", b"", 1), ("temp", b"{}", 1)])
    off, _, _ = w.seg_range(1)
    assert struct.unpack_from("<I", w.buf, off + 128)[0] == 69
    r = verify(tmp_path, w.close(), key)
    assert r.code == 0 and r.reasons == [None]


@pytest.mark.parametrize("followed", [True, False])
def test_record_len_68_is_crc_mismatch(tmp_path, followed):
    # A signed, well-sealed segment whose first record is 68 bytes long
    # (followed by a good record, or alone): not a valid record, so the
    # segment is crc_mismatch at that record.
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    records = [("temp", b"{}", 1)] * (2 if followed else 1)

    def shorten(encoded):
        mono = struct.unpack_from("<Q", encoded[0], 16)[0]
        return [short_record(68, mono)] + encoded[1:]
    w.commit(records=records, edit_records=shorten)
    w.commit()
    off, _, _ = w.seg_range(2)
    assert struct.unpack_from("<I", w.buf, off + 128)[0] == 68
    r = verify(tmp_path, w.close(), key)
    assert r.code == 1 and r.reasons == [None, "crc_mismatch", None]
    assert r.segments[1]["offset"] == off + 128


def test_adopted_segment_and_torn_tail_note(tmp_path):
    # Image taken before recovery: segment 3's metadata write was lost (it
    # is adopted and verified), segment 4 was torn by the cut.
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit()
    w.commit(land_meta=False)
    w.commit(land_meta=False)
    off, _, mbase = w.seg_range(4)
    w.buf[mbase:mbase + 432] = bytes(432)  # the end of the write never landed
    r = verify(tmp_path, w, key)
    assert r.code == 0 and r.reasons == [None, None, None]
    assert r.notes == [("torn_tail_power_cut", 4)]


def test_evidence_records_are_notes(tmp_path):
    key = Signer("ecdsa")
    w = Writer(key).open()
    w.commit()
    w.commit(records=[
        ("edgelog", b'{"reason":"torn_segment","segment_id":3,"slot":2,"records_readable":0,'
                    b'"bytes_quarantined":512}', 3),
        ("edgelog", b'{"unclean_shutdown":true,"metadata_slot":"A","generation":4,'
                    b'"rejected_slots":[],"segments_adopted":0,"torn_segment_id":3,'
                    b'"tail_advanced":false}', 5),
        ("edgelog", b'{"reason":"ring_overwrite","lost_segment_id":1,"lost_records":1,'
                    b'"first_mono":1,"last_mono":1}', 2)])
    r = verify(tmp_path, w.close(), key)
    assert r.code == 0
    # "a note's segment_id is the segment holding the record it reports":
    # the gap record is in segment 2, whatever lost_segment_id it names.
    assert r.notes == [("power_cut_explained", 2), ("power_cut_explained", 2),
                       ("ring_overwrite", 2)]


INCOMPLETE = (b'{"reason":"torn_segment","segment_id":%d,"slot":%d,"records_readable":0,'
              b'"bytes_quarantined":512}')
RECOVERY = (b'{"unclean_shutdown":true,"metadata_slot":"A","generation":4,"rejected_slots":[],'
            b'"segments_adopted":0,"torn_segment_id":%s,'
            b'"tail_advanced":false}')


@pytest.mark.parametrize("close", [True, False])
def test_every_incomplete_and_recovery_record_is_a_note(tmp_path, close):
    # Section 9 step 4: "the verifier lists every incomplete and every
    # recovery record as a note power_cut_explained with the id of the
    # segment that holds it (a recovery record also explains an unclean
    # stop without a torn segment)": one note per record, in order, named by
    # the holding segment (not the torn segment_id in the payload), whether
    # or not the image was taken while a writer had the store open again.
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit(records=[("edgelog", INCOMPLETE % (7, 3), 3),
                      ("edgelog", INCOMPLETE % (9, 5), 3),
                      ("temp", b"{}", 1),
                      ("edgelog", RECOVERY % b"9", 5)])
    w.commit()
    w.commit(records=[("edgelog", RECOVERY % b"null", 5), ("temp", b"{}", 1)])
    w.commit(records=[("edgelog", RECOVERY % b"null", 5)])
    if close:
        w.close()
    r = verify(tmp_path, w, key)
    assert r.code == 0 and r.reasons == [None] * 5 and r.findings == []
    assert r.notes == [("power_cut_explained", 2)] * 3 + [("power_cut_explained", 4),
                                                          ("power_cut_explained", 5)]
    notes = [x for x in r.lines if x["kind"] == "note"][:-1]
    assert ["incomplete" in x["detail"] for x in notes] == [True, True, False, False, False]
    assert ["recovery" in x["detail"] for x in notes] == [False, False, True, True, True]
    assert r.summary["verdict"] == "PASS" and r.summary["reasons"] == []


def test_wrapped_ring_passes(tmp_path):
    # 9 commits in a 6-slot ring: segments 1..3 were overwritten; the tail
    # segment's predecessor is not retained, so it has no chain check.
    w, key = signed_store(n=9)
    r = verify(tmp_path, w, key)
    assert r.code == 0
    assert [s["segment_id"] for s in r.segments] == [4, 5, 6, 7, 8, 9]
    # "when the tail is above segment 1, the note not_retained with
    # segment_id tail_segment_id - 1"; a note, so the store passes.
    assert r.notes == [("not_retained", 3)]
    assert r.summary["verdict"] == "PASS" and r.summary["reasons"] == []


# -- the fields of a --json segment line (section 9) --

EPOCH = 3  # the key_epoch of the stores below, so that it is never a default


def epoch3_store(key, n=3, **kw):
    """A store whose segments are signed at key_epoch 3 (the key is trusted
    by its key directory at epoch 3); rollback_ctr 3."""
    w = Writer(key, **kw)
    w.epoch = EPOCH
    w.open().open().open()
    for _ in range(n):
        w.commit()
    return w


def damage_segment_2(w: Writer, key: Signer, case: str) -> list[str]:
    """Segment 2 of a fresh 1-segment epoch-3 store, committed or damaged
    as `case` says; segment 3 committed after it.  Returns extra args."""
    args: list[str] = []
    slot1 = 8192 + SEG
    if case in ("pass", "gap_header", "crc_mismatch", "seal_mismatch", "hash_mismatch",
                "bad_signature", "reordered", "foreign_uuid", "foreign_device", "gap_by_id",
                "chain_break_by_id"):
        w.commit()
    elif case == "chain_break_prev_hash":
        w.commit(prev_hash=b"\x11" * 32)
    elif case == "unsigned":
        w.commit(signer=None, epoch=EPOCH)  # an unsigned statement may name an epoch
    elif case == "unknown_key":
        w.commit(signer=Signer("ed25519"))
    elif case == "unknown_key_epoch":
        w.commit(epoch=EPOCH + 1)
    elif case == "fw_not_allowed":
        w.commit(fw=FW_OTHER)
        args = ["--allow-fw", FW.hex()]
    elif case == "rollback":
        w.commit(rollback=2)
    elif case == "sequence_regression":
        w.commit(sealed={"records_total": 0})
    w.commit()
    off, _, mbase = w.seg_range(2)
    if case == "gap_header":
        w.buf[off:off + SEG] = bytes(SEG)
    elif case == "crc_mismatch":
        change_payload(w, 2)
    elif case == "seal_mismatch":
        struct.pack_into("<I", w.buf, mbase + 40 + 56, 7)  # statement record_count
        refit_marker_crc(w.buf, mbase)
    elif case == "hash_mismatch":
        change_payload(w, 2, fix_record=True, fix_body=True)
    elif case == "bad_signature":
        w.buf[mbase + 40 + 320] ^= 1
        refit_marker_crc(w.buf, mbase)
    elif case == "reordered":
        a, b = w.seg_range(2)[0], w.seg_range(3)[0]
        w.buf[a:a + SEG], w.buf[b:b + SEG] = w.buf[b:b + SEG], w.buf[a:a + SEG]
    elif case in ("foreign_uuid", "foreign_device", "gap_by_id", "chain_break_by_id"):
        if case == "foreign_uuid":
            other = epoch3_store(key, n=2, uuid=bytes(16))
        elif case == "foreign_device":
            other = epoch3_store(key, n=2, device=OTHER_DEVICE)
        elif case == "gap_by_id":
            # Segment 5, signed and sealed as such, written for slot 1.
            other = epoch3_store(key, n=1)
            other.head_id = 4
            other.commit()
            assert other.slot_of[5] == 1
        else:
            # Segment 1, written for slot 1 (its own slot_index 1).
            other = Writer(key)
            other.epoch, other.tail_slot = EPOCH, 1
            other.open().open().open()
            other.commit()
            assert other.slot_of[1] == 1
        w.buf[slot1:slot1 + SEG] = other.buf[slot1:slot1 + SEG]
    return args


def marker_of_slot(w: Writer, slot: int) -> int:
    off = 8192 + slot * SEG
    return off + 128 + struct.unpack_from("<I", w.buf, off + 60)[0]


# case: (reason, where the offset points, key_epoch)
SEGMENT_LINE_CASES = {
    "pass": (None, "slot", EPOCH),
    "gap_header": ("gap", "slot", 0),
    "crc_mismatch": ("crc_mismatch", "record", 0),
    "foreign_uuid": ("foreign_segment", "slot", 0),
    "foreign_device": ("foreign_segment", "marker", EPOCH),
    "reordered": ("reordered", "slot", 0),
    "gap_by_id": ("gap", "slot", 0),
    "chain_break_by_id": ("chain_break", "slot", 0),
    "seal_mismatch": ("seal_mismatch", "marker", 0),
    "hash_mismatch": ("hash_mismatch", "slot", EPOCH),
    "chain_break_prev_hash": ("chain_break", "slot", EPOCH),
    "unsigned": ("unsigned", "marker", EPOCH),
    "unknown_key": ("unknown_key", "marker", EPOCH),
    "unknown_key_epoch": ("unknown_key", "marker", EPOCH + 1),
    "bad_signature": ("bad_signature", "marker", EPOCH),
    "fw_not_allowed": ("fw_not_allowed", "marker", EPOCH),
    "rollback": ("rollback", "marker", EPOCH),
    "sequence_regression": ("sequence_regression", "marker", EPOCH),
}


@pytest.mark.parametrize("case", list(SEGMENT_LINE_CASES))
def test_segment_line_fields(tmp_path, case):
    # Section 9, --json: "segment_id is always the expected id e, whatever
    # the slot holds; offset is the slot's start, except for crc_mismatch
    # (the first failing byte range) and the reasons read from the seal
    # (seal_mismatch, foreign_segment by device_id, unsigned, unknown_key,
    # bad_signature, fw_not_allowed, rollback): the commit marker's start;
    # key_epoch is the statement's once the seal was read (from
    # foreign_segment by device_id on ...), else 0".
    reason, where, epoch = SEGMENT_LINE_CASES[case]
    key = Signer("ed25519")
    w = epoch3_store(key, n=1)
    args = damage_segment_2(w, key, case)
    r = verify(tmp_path, w, key.key_dir(tmp_path, EPOCH), args=args)
    slot_start = 8192 + SEG
    offset = {"slot": slot_start, "marker": marker_of_slot(w, 1),
              "record": slot_start + 128}[where]
    if where == "marker":
        assert offset > slot_start + 128  # the three are apart
    assert r.segments[1] == {"kind": "segment", "segment_id": 2, "slot": 1, "offset": offset,
                             "sig_verify": "PASS" if reason is None else "FAIL",
                             "reason": reason, "key_epoch": epoch}
    assert r.segments[0]["reason"] is None and r.segments[0]["key_epoch"] == EPOCH
    assert r.summary["verdict"] == ("PASS" if reason is None else "FAIL")


def test_seal_mismatch_offset_is_the_marker_start_not_the_seal(tmp_path):
    # "the commit marker's start": slot + 128 + payload_len, not the seal
    # inside it (marker + 40).
    w, key = signed_store("hmac")
    off, payload_len, mbase = w.seg_range(2)
    w.buf[mbase + 40 + 184] = 1  # sig_alg Ed25519 with HMAC's 32-byte sig_len
    refit_marker_crc(w.buf, mbase)
    r = verify(tmp_path, w, key)
    assert r.reasons == [None, "seal_mismatch", None]
    assert r.segments[1]["offset"] == off + 128 + payload_len == mbase
    assert r.segments[1]["key_epoch"] == 0


def test_allow_unsigned_reasons_point_at_the_marker(tmp_path):
    # fw_not_allowed and rollback of allowed unsigned segments are read
    # from the seal too: offset at the marker, key_epoch the statement's (0).
    w = Writer(None).open().open().open()
    w.commit()
    w.commit(fw=FW_OTHER)
    w.commit(rollback=2)
    w.close()
    r = verify(tmp_path, w, Signer("ed25519"), args=["--allow-unsigned", "--allow-fw", FW.hex()])
    assert r.reasons == [None, "fw_not_allowed", "rollback"]
    assert [s["offset"] for s in r.segments] == [w.seg_range(1)[0], w.seg_range(2)[2],
                                                 w.seg_range(3)[2]]
    assert [s["key_epoch"] for s in r.segments] == [0, 0, 0]
    # Nothing verified a signature: not signed.
    assert (r.summary["signed"], r.summary["sig_alg"]) == (False, "unsigned")


# -- the summary's signed and sig_alg (section 9) --

def test_signed_means_a_signature_verified(tmp_path):
    # "signed is true when at least one segment's signature verified, and
    # sig_alg names the algorithm of the last one that did, unsigned when
    # none did".
    w, key = signed_store()
    # Trusting another key: no signature verifies.
    r = verify(tmp_path, w, Signer("ed25519"))
    assert r.reasons == ["unknown_key"] * 3
    assert (r.summary["signed"], r.summary["sig_alg"]) == (False, "unsigned")
    # Every signature broken.
    for seg_id in (1, 2, 3):
        _, _, mbase = w.seg_range(seg_id)
        w.buf[mbase + 40 + 320] ^= 1
        refit_marker_crc(w.buf, mbase)
    r = verify(tmp_path, w, key)
    assert r.reasons == ["bad_signature"] * 3
    assert (r.summary["signed"], r.summary["sig_alg"]) == (False, "unsigned")
    # One signature left that verifies, of the first segment: signed.
    _, _, mbase = w.seg_range(1)
    w.buf[mbase + 40 + 320] ^= 1
    refit_marker_crc(w.buf, mbase)
    r = verify(tmp_path, w, key)
    assert r.reasons == [None, "bad_signature", "bad_signature"]
    assert (r.summary["signed"], r.summary["sig_alg"]) == (True, "ed25519")


def test_sig_alg_is_the_last_verified_algorithm(tmp_path):
    # ed25519 -> ecdsa-p256 by rotation; the last segment claims Ed25519 at
    # epoch 3 signed by a stranger: its seal is read, its signature is not
    # verified, so sig_alg stays ecdsa-p256.
    old, new = Signer("ed25519"), Signer("ecdsa")
    w = Writer(old).open()
    w.commit()
    w.rotate(new)
    w.commit()
    w.commit(signer=Signer("ed25519"))
    r = verify(tmp_path, w.close(), old)
    assert r.reasons == [None, None, None, "unknown_key"]
    assert (r.summary["signed"], r.summary["sig_alg"]) == (True, "ecdsa-p256")
    # A segment that fails after its signature verified (fw_not_allowed)
    # still names the algorithm; with no segment passed, not signed.
    w, key = signed_store("ecdsa")
    r = verify(tmp_path, w, key, args=["--allow-fw", FW_OTHER.hex()])
    assert r.reasons == ["fw_not_allowed"] * 3 and r.summary["verdict"] == "FAIL"
    assert (r.summary["signed"], r.summary["sig_alg"]) == (False, "ecdsa-p256")


# -- notes: not_retained and the segment a note names (section 9) --

def gap_record(reason: str, lost: int) -> tuple:
    return ("edgelog", b'{"reason":"%s","lost_segment_id":%d,"lost_records":1,'
                       b'"first_mono":%d,"last_mono":%d}' % (reason.encode(), lost, lost, lost), 2)


def test_gap_record_notes_name_the_holding_segment(tmp_path):
    # 8 commits in a 6-slot ring: the tail is segment 3.  Segments 7 and 8
    # hold ring_overwrite gap records for 1 and 2, segment 8 also a
    # tail_unreadable one: each note names the segment holding the record.
    key = Signer("ed25519")
    w = Writer(key).open()
    for _ in range(6):
        w.commit()
    w.commit(records=[gap_record("ring_overwrite", 1), ("temp", b"{}", 1)])
    w.commit(records=[gap_record("ring_overwrite", 2), gap_record("tail_unreadable", 9),
                      ("temp", b"{}", 1)])
    r = verify(tmp_path, w.close(), key)
    assert r.code == 0 and [s["segment_id"] for s in r.segments] == [3, 4, 5, 6, 7, 8]
    assert r.notes == [("not_retained", 2), ("ring_overwrite", 7), ("ring_overwrite", 8),
                       ("tail_unreadable", 8)]
    detail = [x["detail"] for x in r.lines if x["kind"] == "note"][0]
    assert "segments 1 to 2" in detail


def test_not_retained_only_when_the_tail_is_above_1(tmp_path):
    w, key = signed_store(n=6)  # full ring, tail 1: every segment retained
    r = verify(tmp_path, w, key)
    assert r.code == 0 and r.notes == []
    w.open().commit()  # tail 2
    r = verify(tmp_path, w.close(), key)
    assert r.code == 0 and r.notes == [("not_retained", 1)]
    note = [x for x in r.lines if x["kind"] == "note"][0]
    assert note["segment_id"] == 1 and "segment 1 " in note["detail"]


def test_given_up_tail_is_not_retained_not_tail_unreadable(tmp_path):
    # Full 6-slot ring, image before recovery (clean_flag 0), the tail
    # slot's header overwritten by a cut reclaim: the tail (segment 1) is
    # given up (section 5).  No gap record holds it yet, so no
    # tail_unreadable note; not_retained names it (tail 2 - 1).
    key = Signer("ed25519")
    w = Writer(key).open()
    for _ in range(6):
        w.commit()
    off, _, _ = w.seg_range(1)
    w.buf[off:off + 200] = bytes(range(1, 201))
    r = verify(tmp_path, w, key)
    assert r.code == 0 and [s["segment_id"] for s in r.segments] == [2, 3, 4, 5, 6]
    assert r.notes == [("not_retained", 1)]


# -- the anchor (sections 8 and 9 step 5) --

def anchor_args(tmp_path, data: bytes):
    path = tmp_path / "anchor.json"
    path.write_bytes(data)
    return ["--anchor", str(path)]


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "hmac"])
def test_anchor_of_the_same_store_passes(tmp_path, kind):
    w, key = signed_store(kind)
    r = verify(tmp_path, w, key, args=anchor_args(tmp_path, w.head_json()))
    assert r.code == 0 and r.findings == []


def test_anchor_older_than_image_passes(tmp_path):
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    anchor = w.head_json()
    w.commit()
    w.close().open()
    w.commit()
    assert verify(tmp_path, w, key, args=anchor_args(tmp_path, anchor)).code == 0


def test_anchor_rollback(tmp_path):
    # The image is a copy from session 1; the anchor was taken in session 2.
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit()
    old_image, old_base = w.close().image(), chosen_base(w)
    w.open()
    w.commit()
    r = verify(tmp_path, old_image, key, args=anchor_args(tmp_path, w.head_json()))
    assert r.code == 1 and r.reasons == [None, None]
    # "Findings about the anchor have offset 0 (the anchor is not part of
    # the image)", not the slot's rollback_ctr.
    assert old_base + 2832 != 0
    assert r.findings == [("rollback", 0)]


def test_anchor_truncated_tail(tmp_path):
    # Same session, the newest segment cut off (metadata rewritten to the
    # earlier head): only the anchor shows that more existed.
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit()
    earlier = w.image()
    w.commit()
    r = verify(tmp_path, earlier, key, args=anchor_args(tmp_path, w.head_json()))
    assert r.code == 1 and r.findings == [("truncated_tail", 0)]  # about the anchor: 0


def test_anchor_rollback_ctr_is_the_newest_passing_segments(tmp_path):
    # Session 1 commits segment 1 (ctr 1), session 2 segment 2 (ctr 2); the
    # anchor is segment 2's head (ctr 2).  Section 9 item 7: "the newest
    # rollback_ctr of a passing segment below the anchor's is rollback"; the
    # unsigned slot's counter does not count.
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.close().open()
    w.commit()
    anchor = anchor_args(tmp_path, w.head_json())
    base = chosen_base(w)
    # The chosen slot says ctr 1: below the head's sealed 2, a
    # metadata_mismatch; the newest passing seal (2) is not below the anchor.
    change_meta(w, base, 2832, struct.pack("<Q", 1))
    r = verify(tmp_path, w, key, args=anchor)
    assert r.findings == [("metadata_mismatch", base + 2832)] and r.reasons == [None, None]
    # Segment 2's signature broken: the newest passing segment is 1 (ctr 1).
    _, _, mbase = w.seg_range(2)
    w.buf[mbase + 40 + 320] ^= 1
    refit_marker_crc(w.buf, mbase)
    r = verify(tmp_path, w, key, args=anchor)
    assert r.reasons == [None, "bad_signature"]
    assert r.findings == [("rollback", 0)]
    # A slot counter raised to the anchor's does not hide it.
    change_meta(w, base, 2832, struct.pack("<Q", 2))
    r = verify(tmp_path, w, key, args=anchor)
    assert r.findings == [("rollback", 0)]
    assert r.summary["reasons"] == ["bad_signature", "rollback"]


def test_anchor_fork_only_for_a_retained_readable_segment(tmp_path):
    # Two histories of one device and key that differ from segment 2 on; the
    # anchor is segment 2 of history A, the image history B (4 segments).
    key = Signer("ed25519")
    histories = []
    for tag in (b'"a"', b'"b"'):
        w = Writer(key).open()
        w.commit()
        for _ in range(3):
            w.commit([b'{"t":%s}' % tag])
        histories.append(w)
    w_a, w_b = histories
    w_a.head_id = 2  # head_json of segment 2
    anchor = anchor_args(tmp_path, w_a.head_json())
    # Retained and readable, not the head: fork (about the anchor: offset 0).
    r = verify(tmp_path, w_b, key, args=anchor)
    assert r.code == 1 and r.findings == [("fork", 0)]
    assert r.reasons == [None] * 4
    # Unreadable (a record CRC fails): no fork, its own line fails.
    bad = bytearray(w_b.image())
    off, _, _ = w_b.seg_range(2)
    bad[off + 128 + 60] ^= 1
    r = verify(tmp_path, bytes(bad), key, args=anchor)
    assert r.findings == [] and r.reasons == [None, "crc_mismatch", None, None]
    # Not retained (overwritten by the ring): no fork, but nothing shows the
    # image continues the anchored history: anchor_not_retained.
    for _ in range(5):
        w_b.commit([b'{"t":"b"}'])
    assert w_b.tail_id == 4
    r = verify(tmp_path, w_b, key, args=anchor)
    assert r.code == 1 and r.findings == [("anchor_not_retained", 0)]
    assert r.reasons == [None] * 6


def test_anchor_fork(tmp_path):
    # Two histories of the same device and key that differ at segment 3.
    key = Signer("ed25519")
    histories = []
    for last in (b'{"t":"a"}', b'{"t":"b"}'):
        w = Writer(key).open()
        w.commit()
        w.commit()
        w.commit([last])
        histories.append(w)
    r = verify(tmp_path, histories[1], key,
               args=anchor_args(tmp_path, histories[0].head_json()))
    assert r.code == 1
    assert r.findings == [("fork", 0)]
    assert "segment 3 in slot 2" in [x["detail"] for x in r.lines if x["kind"] == "finding"][0]


@pytest.mark.parametrize("edit", [
    lambda a: b"not json",
    lambda a: a.replace(b'"segment_id":3,', b""),                       # key missing
    lambda a: a.replace(b'"statement":"', b'"statement":"00'),          # 193 bytes
    lambda a: a.replace(b'"statement":"4544', b'"statement":"4545'),    # magic EEGESIG1
    lambda a: a.replace(b'"segment_id":3,', b'"segment_id":4,'),        # repeat edited
    lambda a: a.replace(b'"rollback_ctr":1,', b'"rollback_ctr":"1",'),
    lambda a: a.replace(b'"signature":"', b'"signature":"00'),          # 65 bytes
    lambda a: b"[" + a.strip() + b"]",
])
def test_anchor_malformed(tmp_path, edit):
    w, key = signed_store()
    anchor = w.head_json()
    assert b'"segment_id":3,' in anchor and b'"rollback_ctr":1,' in anchor
    assert edit(anchor) != anchor
    r = verify(tmp_path, w, key, args=anchor_args(tmp_path, edit(anchor)))
    assert r.code == 1 and r.findings == [("anchor_malformed", 0)]


def test_anchor_bad_signature(tmp_path):
    w, key = signed_store()
    head = json.loads(w.head_json())
    sig = bytearray(bytes.fromhex(head["signature"]))
    sig[0] ^= 1
    forged = w.head_json().replace(head["signature"].encode(), sig.hex().encode())
    r = verify(tmp_path, w, key, args=anchor_args(tmp_path, forged))
    assert r.findings == [("anchor_bad_signature", 0)]
    # A good anchor signed by a key the verifier does not trust.
    other_w, _ = signed_store()
    r = verify(tmp_path, w, key, args=anchor_args(tmp_path, other_w.head_json()))
    assert r.findings == [("anchor_bad_signature", 0)]


def test_anchor_of_another_device(tmp_path):
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    other = Writer(key, device=OTHER_DEVICE).open()
    other.commit()
    r = verify(tmp_path, w, key, args=anchor_args(tmp_path, other.head_json()))
    assert r.findings == [("foreign_segment", 0)]


def test_unsigned_anchor_needs_allow_unsigned(tmp_path):
    w = Writer(None).open()
    w.commit()
    w.commit()
    args = anchor_args(tmp_path, w.head_json())
    assert b'"sig_alg":"unsigned"' in w.head_json() and b'"signature":""' in w.head_json()
    r = verify(tmp_path, w, Signer("ed25519"), args=args)
    assert r.summary["reasons"] == ["anchor_bad_signature", "unsigned"]
    r = verify(tmp_path, w, Signer("ed25519"), args=[*args, "--allow-unsigned"])
    assert r.code == 0 and r.findings == []


def test_rotation_record_with_garbage_public_key(tmp_path):
    # A rotation whose new_public_key is not a key at all: bad_signature,
    # not a crash.
    old = Signer("ed25519")
    w = Writer(old).open()
    endorsement = struct.pack("<8s16s16sIIB7x16s32s", b"EDGEROT1", DEVICE, old.key_id, 1, 2,
                              1, bytes(16), hashlib.sha256(b"\x30\x00").digest())
    payload = ('{"old_key_id":"%s","old_epoch":1,"new_key_id":"%s","new_epoch":2,'
               '"new_alg":"ed25519","new_public_key":"3000","endorsement":"%s"}'
               % (old.key_id.hex(), bytes(16).hex(), old.sign(endorsement).hex())).encode()
    w.commit(records=[("edgelog", payload, 8)])
    assert verify(tmp_path, w.close(), old).reasons == ["bad_signature"]


def test_anchor_signed_before_rotation_still_verifies(tmp_path):
    old, new = Signer("ed25519"), Signer("ecdsa")
    w = Writer(old).open()
    w.commit()
    anchor = w.head_json()
    w.rotate(new)
    w.commit()
    r = verify(tmp_path, w, old, args=anchor_args(tmp_path, anchor))
    assert r.code == 0 and r.findings == []


# -- command line --

def test_usage_errors_exit_2(tmp_path):
    w, key = signed_store()
    image = tmp_path / "store.img"
    image.write_bytes(w.image())
    trust = str(key.trust_file(tmp_path))
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("0123\n")
    for argv in (["--device", str(tmp_path / "missing.img"), "--trust", trust],
                 ["--device", str(image), "--trust", str(bad_key)],
                 ["--device", str(image), "--trust", str(tmp_path / "missing.pem")],
                 ["--device", str(image), "--trust", trust, "--allow-fw", "abc"],
                 ["--device", str(image), "--trust", trust, "--anchor",
                  str(tmp_path / "missing.json")]):
        assert ver.main(argv, out=io.StringIO(), err=io.StringIO()) == 2
    with pytest.raises(SystemExit) as exc:
        ver.main(["--device", str(image)], out=io.StringIO(), err=io.StringIO())
    assert exc.value.code == 2


def test_hmac_key_file_without_newline_and_p256_only(tmp_path):
    key = Signer("hmac")
    path = tmp_path / "secret.hex"
    path.write_text(key.secret.hex().upper())
    assert ver.load_trust_key(str(path)).key_id == key.key_id
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    path.write_bytes(p384)
    with pytest.raises(ver.UsageError):
        ver.load_trust_key(str(path))


def test_hmac_key_file_as_keys_generate_writes_it(tmp_path):
    # Section 3.5: hmac-key.hex is the 32-byte secret as 64 hex digits and a
    # newline; the HMAC key is the 32 raw bytes, and key_id the first 16
    # bytes of SHA-256(ASCII "EDGELOG-HMAC-KEY-ID" || the 32 raw bytes).
    secret = bytes(range(32))
    path = tmp_path / "hmac-key.hex"
    path.write_text(secret.hex() + "\n")
    path.chmod(0o600)
    key = ver.load_trust_key(str(path))
    assert key.alg == 3 and key.secret == secret
    # Known answer (checked with `openssl dgst -sha256`), so the test does
    # not share the computation with the script.
    assert key.key_id.hex() == "5552758083cd216eecc9a5825d7bb381"
    # Not a hash of the hex digits, not the whole digest.
    assert key.key_id != hashlib.sha256(b"EDGELOG-HMAC-KEY-ID"
                                        + secret.hex().encode()).digest()[:16]
    assert len(key.key_id) == 16
    # A store signed with that secret passes with that file as --trust.
    signer = Signer("hmac")
    signer.secret = secret
    signer.key_id = hashlib.sha256(b"EDGELOG-HMAC-KEY-ID" + secret).digest()[:16]
    w = Writer(signer).open()
    w.commit()
    w.commit()
    r = verify(tmp_path, w.close(), path)
    assert r.code == 0 and r.reasons == [None, None]
    assert r.summary["sig_alg"] == "hmac-sha256"
    # Anything but exactly 64 hex digits (and one optional newline) is refused.
    for text in (secret.hex()[:-2] + "\n", secret.hex() + "00\n", secret.hex() + "\n\n",
                 "zz" + secret.hex()[2:] + "\n"):
        path.write_text(text)
        with pytest.raises(ver.UsageError):
            ver.load_trust_key(str(path))


def test_cli_exit_codes(tmp_path):
    # Through the real executable, to check the shebang, mode and exit codes.
    w, key = signed_store()
    image = tmp_path / "store.img"
    image.write_bytes(w.image())
    trust = str(key.trust_file(tmp_path))
    proc = subprocess.run([str(SCRIPT), "--device", str(image), "--trust", trust, "--json"],
                          capture_output=True)
    assert proc.returncode == 0 and proc.stdout.endswith(b'"reasons":[]}\n')
    change_payload(w, 1)
    image.write_bytes(w.image())
    proc = subprocess.run([str(SCRIPT), "--device", str(image), "--trust", trust],
                          capture_output=True)
    assert proc.returncode == 1 and b"verdict FAIL" in proc.stdout
    proc = subprocess.run([str(SCRIPT), "--device", str(image)], capture_output=True)
    assert proc.returncode == 2


# -- cross-check with openssl --

@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_verifies_the_ed25519_statement(tmp_path):
    w, key = signed_store("ed25519")
    _, _, mbase = w.seg_range(3)
    (tmp_path / "pub.pem").write_bytes(key.pem())
    (tmp_path / "statement.bin").write_bytes(bytes(w.buf[mbase + 40:mbase + 360]))
    (tmp_path / "sig.bin").write_bytes(bytes(w.buf[mbase + 360:mbase + 424]))
    cmd = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin",
           "-in", "statement.bin", "-sigfile", "sig.bin"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert b"Signature Verified Successfully" in proc.stdout
    # And a changed statement does not verify.
    st = bytearray((tmp_path / "statement.bin").read_bytes())
    st[100] ^= 1
    (tmp_path / "statement.bin").write_bytes(bytes(st))
    assert subprocess.run(cmd, cwd=tmp_path, capture_output=True).returncode != 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_verifies_the_ecdsa_statement_in_der_form(tmp_path):
    # r || s as stored, converted to the DER form openssl wants (section 3.5).
    w, key = signed_store("ecdsa")
    _, _, mbase = w.seg_range(2)
    sig = bytes(w.buf[mbase + 360:mbase + 424])
    der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                     int.from_bytes(sig[32:], "big"))
    (tmp_path / "pub.pem").write_bytes(key.pem())
    (tmp_path / "statement.bin").write_bytes(bytes(w.buf[mbase + 40:mbase + 360]))
    (tmp_path / "sig.der").write_bytes(der)
    proc = subprocess.run(["openssl", "dgst", "-sha256", "-verify", "pub.pem", "-signature",
                           "sig.der", "statement.bin"], cwd=tmp_path, capture_output=True)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------
# Format version 5: the sealed state, the range, beyond the head, the anchor
# ---------------------------------------------------------------------------

def busy_store(kind="ed25519"):
    """Three signed segments whose sealed state has no zero counter: an
    unexpected reset, read errors, a brownout, an acknowledged upstream
    cursor, a clock step, lost and dropped records, a bad slot."""
    key = Signer(kind)
    w = Writer(key, bad=[(5, 1, 0)])
    w.ecc, w.bo, w.uplink = 3, 2, 4
    w.open().open()  # unexp_rst 1, rollback_ctr 2, boot_seq 1
    w.commit()
    w.commit(records=[("edgelog.time", b'{"direction":"forward"}', 7), ("temp", b"{}", 1)])
    w.commit(records=[("edgelog", b'{"reason":"backpressure"}', 4), ("temp", b"{}", 1)],
             lost=2, dropped=1)
    return w.close(), key


def meta_value(w, off, fmt):
    return struct.unpack_from(fmt, w.buf, chosen_base(w) + off)[0]


def test_busy_store_passes(tmp_path):
    w, key = busy_store()
    r = verify(tmp_path, w, key)
    assert r.code == 0 and r.findings == [] and r.reasons == [None] * 3
    assert r.all_notes == [("truncation_not_excluded", 3)]
    assert r.text.splitlines()[-2] == (
        '{"kind":"note","note":"truncation_not_excluded","segment_id":3,"detail":"%s"}'
        % json.loads(r.text.splitlines()[-2])["detail"])


# (field, offset in the slot, struct format, the finding's offset)
EQUAL_FIELDS = [("tail_segment_id", 104, "<Q"), ("mono_hwm", 136, "<Q"),
                ("records_total", 152, "<Q"), ("lost_total", 168, "<Q"),
                ("dropped_total", 160, "<Q"), ("wrap_count", 112, "<I"),
                ("bo_event", 124, "<I"), ("clock_steps", 2916, "<I"),
                ("key_epoch", 2888, "<I"), ("sig_alg", 2892, "<B"), ("key_src", 2893, "<B")]
NOT_BELOW_FIELDS = [("unexp_rst", 120, "<I"), ("ecc_err_cnt", 128, "<I"),
                    ("boot_seq", 2912, "<I"), ("uplink_cursor", 144, "<Q"),
                    ("rollback_ctr", 2832, "<Q")]


@pytest.mark.parametrize("name, off, fmt", EQUAL_FIELDS, ids=[f[0] for f in EQUAL_FIELDS])
@pytest.mark.parametrize("delta", [1, -1])
def test_metadata_edit_of_a_sealed_field_is_metadata_mismatch(tmp_path, name, off, fmt, delta):
    # Section 9 item 4: the chosen slot must equal the head's sealed state;
    # each field that does not is a finding at the slot's offset + the
    # field's.  The segments themselves still pass.
    w, key = busy_store()
    base = chosen_base(w)
    value = meta_value(w, off, fmt) + delta
    if value < 0 or (name == "tail_segment_id" and value == 0):
        value = meta_value(w, off, fmt) + 2  # (a tail of 0 makes the slot invalid)
    change_meta(w, base, off, struct.pack(fmt, value))
    expected = [("metadata_mismatch", base + off)]
    if name == "tail_segment_id":
        # The segments fill consecutive good slots from tail_slot to
        # head_slot (section 2): a tail moved alone makes the slot invalid,
        # so tail_slot moves with it (segments 1..3 are in slots 0..2), and
        # both differ from the seal.
        change_meta(w, base, 100, struct.pack("<I", value - 1))
        expected.insert(0, ("metadata_mismatch", base + 100))
    r = verify(tmp_path, w, key)
    assert r.code == 1 and r.reasons == [None] * 3
    assert r.findings == expected
    detail = [x["detail"] for x in r.lines if x["kind"] == "finding"][-1]
    assert name in detail


@pytest.mark.parametrize("name, off, fmt", NOT_BELOW_FIELDS,
                         ids=[f[0] for f in NOT_BELOW_FIELDS])
def test_metadata_counter_below_the_seal_is_metadata_mismatch(tmp_path, name, off, fmt):
    # unexp_rst, ecc_err_cnt, boot_seq, uplink_cursor and rollback_ctr may
    # be raised between commits (not a finding) but never be below the seal.
    w, key = busy_store()
    base = chosen_base(w)
    sealed = meta_value(w, off, fmt)
    assert sealed > 0
    change_meta(w, base, off, struct.pack(fmt, sealed + 5))
    r = verify(tmp_path, w, key)
    assert r.code == 0 and r.findings == []
    change_meta(w, base, off, struct.pack(fmt, sealed - 1))
    r = verify(tmp_path, w, key)
    assert r.code == 1 and r.findings == [("metadata_mismatch", base + off)]
    assert r.reasons == [None] * 3


@pytest.mark.parametrize("edit", ["key_id", "source last_seq", "source name",
                                  "bad block reason", "bad block dropped"])
def test_metadata_tables_and_key_id_are_checked(tmp_path, edit):
    w, key = busy_store()
    base = chosen_base(w)
    if edit == "key_id":
        change_meta(w, base, 2872, b"\x01" * 16)
        where = 2872
    elif edit == "source last_seq":
        # The writer would resume "temp" at 1 and repeat its seqs.
        change_meta(w, base, 1280 + 40, struct.pack("<Q", 0))
        where = 256
    elif edit == "source name":
        change_meta(w, base, 1281, b"TEMP")
        where = 256
    elif edit == "bad block reason":
        change_meta(w, base, 256 + 4, struct.pack("<H", 2))
        where = 256
    else:
        # The bad slot forgotten: the writer would write to a failed slot.
        change_meta(w, base, 176, struct.pack("<I", 0))
        where = 256
    r = verify(tmp_path, w, key)
    assert r.code == 1 and r.reasons == [None] * 3
    assert r.findings == [("metadata_mismatch", base + where)]


def test_several_metadata_edits_are_several_findings_in_offset_order(tmp_path):
    # Section 9 item 4: "... naming the field, the metadata's value and the
    # sealed one, in increasing offset order" (not the order the item names
    # the fields in).
    w, key = busy_store()
    base = chosen_base(w)
    for off, fmt, value in ((2916, "<I", 9), (2832, "<Q", 0), (152, "<Q", 99), (2872, "<16s",
                            b"\x01" * 16), (104, "<Q", 2), (128, "<I", 0), (1280 + 40, "<Q", 0),
                            (124, "<I", 7), (112, "<I", 5), (100, "<I", 1)):
        change_meta(w, base, off, struct.pack(fmt, value))
    r = verify(tmp_path, w, key)
    assert r.findings == [("metadata_mismatch", base + off)
                          for off in (100, 104, 112, 124, 128, 152, 256, 2832, 2872, 2916)]
    assert r.reasons == [None] * 3


def adopted_store(sealed=None):
    """Segments 1 and 2 landed; 3 and 4 committed but their metadata writes
    lost (an image before recovery), so the forward scan adopts them.  They
    carry a clock step, a new source, lost and dropped records, records of
    the sources already in the table.  sealed: what segment 4 seals instead."""
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit(records=[("temp", b"{}", 1), ("edgelog", b'{"x":1}', 4)])
    w.commit(records=[("edgelog.time", b"{}", 7), ("temp", b"{}", 1)], land_meta=False,
             lost=3)
    w.commit(records=[("newsrc", b"{}", 1), ("edgelog", b'{"x":2}', 4), ("temp", b"{}", 1)],
             land_meta=False, dropped=2, sealed=sealed)
    return w, key


def test_adopted_segments_are_applied_to_the_metadata(tmp_path):
    # Section 5 step 3: "Adopting applies the segment as its commit's
    # metadata write would have"; section 9 item 4 compares that with the
    # head's sealed state.  The chosen slot is two commits behind: no
    # mismatch, since applying segments 3 and 4 gives their sealed state
    # (head, keys, mono_hwm, totals, the source table with "newsrc"
    # appended, clock_steps).
    w, key = adopted_store()
    base = chosen_base(w)
    assert struct.unpack_from("<Q", w.buf, base + 88)[0] == 2
    assert struct.unpack_from("<I", w.buf, base + 180)[0] == 2  # temp, edgelog
    r = verify(tmp_path, w, key)
    assert r.code == 0 and r.findings == [] and r.reasons == [None] * 4
    # Counters applying raises to the sealed value (the larger of the two),
    # and fields it sets from the segment, may be anything lower (or other)
    # in the slot: no finding.
    for off, value in ((2832, struct.pack("<Q", 0)), (120, struct.pack("<I", 0)),
                       (128, struct.pack("<I", 0)), (2912, struct.pack("<I", 0)),
                       (144, struct.pack("<Q", 0)), (2916, struct.pack("<I", 77)),
                       (124, struct.pack("<I", 77)),
                       (2872, b"\x05" * 16), (2888, struct.pack("<I", 9)),
                       (136, struct.pack("<Q", 0)), (1280 + 40, struct.pack("<Q", 0))):
        change_meta(w, base, off, value)
    r = verify(tmp_path, w, key)
    assert r.code == 0 and r.findings == [], r.findings


@pytest.mark.parametrize("off, fmt, delta", [
    (104, "<Q", 1),           # tail_segment_id
    (112, "<I", 1),           # wrap_count
    (136, "<Q", 100),         # mono_hwm above the adopted last_mono stays above
    (152, "<Q", 1),           # records_total grows from the slot's
    (160, "<Q", 1),           # dropped_total
    (168, "<Q", 1),           # lost_total
    (1280 + 40, "<Q", 50),    # a last_seq above what the records raise it to
    (2832, "<Q", 5),          # rollback_ctr: not below is fine ...
])
def test_metadata_edits_under_adopted_segments(tmp_path, off, fmt, delta):
    w, key = adopted_store()
    base = chosen_base(w)
    value = struct.unpack_from(fmt, w.buf, base + off)[0] + delta
    change_meta(w, base, off, struct.pack(fmt, value))
    expected = [] if off == 2832 else [("metadata_mismatch", base + (256 if off == 1280 + 40
                                                                     else off))]
    if off == 104:
        # Tail 2 with head 2 (the slot's) is in head_slot 1: tail_slot moves
        # with it (section 2), and differs from the seal too.
        change_meta(w, base, 100, struct.pack("<I", 1))
        expected.insert(0, ("metadata_mismatch", base + 100))
    r = verify(tmp_path, w, key)
    assert r.reasons == [None] * 4
    assert r.findings == expected


def test_adopted_head_sealing_other_counters_is_metadata_mismatch(tmp_path):
    # "(so an adopted segment whose sealed counters disagree with what
    # applying it computes gives metadata_mismatch)": segment 4 seals
    # records_total 5 too high and mono_hwm 100 too high (neither going
    # backward: it passes), and a higher unexp_rst, clock_steps and bo_event
    # (applying takes those from the seal: no finding).
    w, _ = adopted_store()
    totals = w.records_total
    w, key = adopted_store(sealed={"records_total": totals + 2 + 5, "bo_event": 1,
                                   "mono_hwm": 100, "unexp_rst": 9, "clock_steps": 4})
    base = chosen_base(w)
    r = verify(tmp_path, w, key)
    assert r.reasons == [None] * 4
    assert r.findings == [("metadata_mismatch", base + 136), ("metadata_mismatch", base + 152)]
    details = [x["detail"] for x in r.lines if x["kind"] == "finding"]
    assert "mono_hwm" in details[0]
    assert "records_total" in details[1]
    # Its tables_hash sealed over another source table.
    w, key = adopted_store(sealed={"tables_hash": bytes(32)})
    r = verify(tmp_path, w, key)
    assert r.findings == [("metadata_mismatch", chosen_base(w) + 256)]


def test_adopted_segment_that_wraps_adds_one_to_wrap_count(tmp_path):
    # Segment 7 lands in slot 0, below head_slot 5: wrap_count + 1, and the
    # full ring's tail moves on (2).
    key = Signer("ed25519")
    w = Writer(key).open()
    for _ in range(6):
        w.commit()
    base = chosen_base(w)
    assert struct.unpack_from("<I", w.buf, base + 112)[0] == 0
    w.commit(land_meta=False)
    assert w.wrap == 1 and w.tail_id == 2
    r = verify(tmp_path, w, key)
    assert r.code == 0 and r.findings == [] and [s["segment_id"] for s in r.segments] == [
        2, 3, 4, 5, 6, 7]
    # A segment 7 that seals wrap_count 0 disagrees with the applied 1.
    w = Writer(key).open()
    for _ in range(6):
        w.commit()
    w.commit(land_meta=False, sealed={"wrap_count": 0})
    r = verify(tmp_path, w, key)
    assert r.reasons == [None] * 6
    assert r.findings == [("metadata_mismatch", chosen_base(w) + 112)]


def test_adopted_segment_of_a_rotated_key_applies_its_key(tmp_path):
    # The rotation landed; the first segment signed by the new key did not:
    # adopting it makes its key_id, key_epoch, sig_alg and key_src the
    # metadata's, which agree with its seal.
    old, new = Signer("ed25519"), Signer("ecdsa")
    w = Writer(old).open()
    w.commit()
    w.rotate(new)
    w.commit(land_meta=False)
    base = chosen_base(w)
    assert bytes(w.buf[base + 2872:base + 2888]) == old.key_id
    r = verify(tmp_path, w, old)
    assert r.code == 0 and r.findings == [] and r.reasons == [None] * 3
    assert r.summary["sig_alg"] == "ecdsa-p256"


def test_deleted_oldest_segment_with_the_tail_moved_forward_is_gap(tmp_path):
    # An attacker deletes segment 1 and moves the metadata tail to 2: the
    # head's seal still says the store retains 1, so the range starts there.
    w, key = signed_store(n=3)
    off, _, _ = w.seg_range(1)
    w.buf[off:off + SEG] = bytes(SEG)
    base = chosen_base(w)
    change_meta(w, base, 100, struct.pack("<IQ", 1, 2))  # tail_slot 1, tail_segment_id 2
    r = verify(tmp_path, w, key)
    assert r.code == 1 and r.reasons == ["gap", None, None]
    assert r.segments[0]["offset"] == off
    # tail_slot (100) and tail_segment_id (104) both differ from the seal's.
    assert r.findings == [("metadata_mismatch", base + 100), ("metadata_mismatch", base + 104)]
    assert r.notes == []  # the range starts at 1: nothing "not retained"
    # Also with both slots rewritten.
    change_meta(w, 4096 - base, 100, struct.pack("<IQ", 1, 2))
    assert verify(tmp_path, w, key).reasons == ["gap", None, None]


def test_range_longer_than_the_ring_is_cut(tmp_path):
    # The head (segment 9 of a 6-slot ring) seals tail 1: nine segments
    # cannot be in six slots.  The range is cut to 4..9 with a
    # metadata_mismatch at the chosen slot + 104, and segment 9 regresses
    # against segment 8's sealed tail (3).
    key = Signer("ed25519")
    w = Writer(key).open()
    for _ in range(8):
        w.commit()
    w.commit(sealed={"tail_segment_id": 1})
    r = verify(tmp_path, w.close(), key)
    assert [s["segment_id"] for s in r.segments] == [4, 5, 6, 7, 8, 9]
    assert r.reasons == [None] * 5 + ["sequence_regression"]
    assert r.findings == [("metadata_mismatch", chosen_base(w) + 104)]
    assert r.notes == [("not_retained", 3)]


def test_sealed_tail_above_the_head_still_gives_the_head_a_verdict(tmp_path):
    # Section 9 item 2: "start is then kept within 1 .. H (a sealed 0, or one
    # above H, is taken as 1 or H; the segment's own checks then fail it)".
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit(sealed={"tail_segment_id": 2**64 - 1})
    r = verify(tmp_path, w.close(), key)
    assert [s["segment_id"] for s in r.segments] == [2]
    assert r.reasons == ["sequence_regression"]
    assert r.all_notes == [("not_retained", 1), ("truncation_not_excluded", 2)]
    # A metadata tail moved past the head's id makes the slot invalid
    # (the ring is empty only while head_segment_id is 0): the other slot
    # (written open, clean_flag 0) is used, and the edit looks like a cut
    # metadata write.
    change_meta(w, chosen_base(w), 100, struct.pack("<IQ", 2, 3))
    r = verify(tmp_path, w, key)
    assert r.notes == [("torn_metadata_write", 0), ("not_retained", 1)]
    assert r.reasons == ["sequence_regression"]


def test_sealed_tail_of_0_starts_the_range_at_1(tmp_path):
    # A sealed 0 is taken as 1: every segment gets a verdict, and the head
    # fails its own checks (its tail is below segment 2's).
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit()
    w.commit(sealed={"tail_segment_id": 0})
    r = verify(tmp_path, w.close(), key)
    assert [s["segment_id"] for s in r.segments] == [1, 2, 3]
    assert r.reasons == [None, None, "sequence_regression"]
    assert r.all_notes == [("truncation_not_excluded", 3)] and r.findings == []
    # In a wrapped ring the range would otherwise be longer than the ring:
    # 1..9 in 6 slots is cut to 4..9 (the item 2 finding at + 104).
    w = Writer(key).open()
    for _ in range(8):
        w.commit()
    w.commit(sealed={"tail_segment_id": 0})
    r = verify(tmp_path, w.close(), key)
    assert [s["segment_id"] for s in r.segments] == [4, 5, 6, 7, 8, 9]
    assert r.findings == [("metadata_mismatch", chosen_base(w) + 104)]
    assert r.reasons == [None] * 5 + ["sequence_regression"]


def test_sealed_tail_within_the_range_is_used_as_it_is(tmp_path):
    # A sealed tail between 1 and H is the start, whatever the slot says
    # (here the head seals tail 2 of a store that retains 1..3).
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit()
    w.commit(sealed={"tail_segment_id": 2})
    r = verify(tmp_path, w.close(), key)
    assert [s["segment_id"] for s in r.segments] == [2, 3]
    assert r.reasons == [None, None]
    assert r.findings == [("metadata_mismatch", chosen_base(w) + 104)]
    assert r.all_notes == [("not_retained", 1), ("truncation_not_excluded", 3)]


def test_without_a_valid_head_the_range_starts_at_section_5s_tail(tmp_path):
    # A full 4-slot ring (segments 1..4) whose head segment 4 is damaged in
    # both slots' eyes, and segment 5 torn over the tail's slot 0 (a cut
    # reclaim before recovery): section 5 gives the tail up, so its tail is
    # 2 after the forward scan, and with no valid head the range starts
    # there (not at the slots' tail 1).
    key = Signer("ed25519")
    w = Writer(key, slots=4).open()
    for _ in range(4):
        w.commit()
    base = chosen_base(w)
    other = 4096 - base
    w.buf[other:other + 4096] = w.buf[base:base + 4096]  # both slots name head 4
    change_meta(w, other, 40, struct.pack("<Q", w.generation - 1))
    off4, _, mbase4 = w.seg_range(4)
    w.buf[mbase4 + 100] ^= 1  # the head's marker CRC fails
    w.commit(land_meta=False)  # segment 5 into slot 0, over segment 1 ...
    off5, _, mbase5 = w.seg_range(5)
    w.buf[mbase5:mbase5 + 432] = bytes(432)  # ... and cut
    r = verify(tmp_path, w, key)
    assert [s["segment_id"] for s in r.segments] == [2, 3, 4]
    assert r.reasons == [None, None, "crc_mismatch"]
    assert r.findings == [("truncated_tail", off4)]
    assert r.all_notes == [("not_retained", 1), ("torn_tail_power_cut", 5),
                           ("truncation_not_excluded", 4)]


SEQUENCE_CASES = {
    "records_total": dict(records_total=0),
    "lost_total": dict(lost_total=1),
    "dropped_total": dict(dropped_total=0),
    "wrap_count": dict(wrap_count=0),
    "unexp_rst": dict(unexp_rst=0),
    "bo_event": dict(bo_event=1),
    "ecc_err_cnt": dict(ecc_err_cnt=2),
    "clock_steps": dict(clock_steps=0),
    "boot_seq": dict(boot_seq=0),
    "uplink_cursor": dict(uplink_cursor=3),
    "tail_segment_id": dict(tail_segment_id=1),
    "tail above e": dict(tail_segment_id=9),
    # Third review: the ring never changes size, so a ring_slots other than
    # the last passing segment's is one too (not only a lower one).
    "ring_slots above": dict(ring_slots=7),
    "ring_slots below": dict(ring_slots=5),
    "mono_hwm below last_mono": dict(mono_hwm=1),
}


@pytest.mark.parametrize("case", list(SEQUENCE_CASES))
def test_sealed_state_going_backward_is_sequence_regression(tmp_path, case):
    # A 6-slot ring that wrapped (wrap_count 1, tail 2) with every counter
    # above 1; segment 8 seals one of them lower than segment 7 did (or a
    # tail above its own id, or a mono_hwm below its own last record).
    key = Signer("ed25519")
    w = Writer(key)
    w.ecc, w.bo, w.uplink, w.lost_total, w.dropped_total = 3, 2, 4, 2, 1
    w.open().open()
    for _ in range(6):
        w.commit(records=[("edgelog.time", b"{}", 7), ("temp", b"{}", 1)])
    w.commit()
    assert w.tail_id == 2 and w.wrap == 1
    w.commit(sealed=SEQUENCE_CASES[case])
    r = verify(tmp_path, w.close(), key)
    if case == "tail above e":
        # The sealed tail is also the range's start, kept at H: the head is
        # checked alone, and fails its own check.
        assert [s["segment_id"] for s in r.segments] == [8]
        assert r.reasons == ["sequence_regression"]
        assert r.all_notes == [("not_retained", 7), ("truncation_not_excluded", 8)]
        return
    assert [s["segment_id"] for s in r.segments] == [3, 4, 5, 6, 7, 8]
    assert r.reasons == [None] * 5 + ["sequence_regression"]
    line = r.segments[-1]
    assert line["offset"] == w.seg_range(8)[2] and line["key_epoch"] == 1
    assert line["sig_verify"] == "FAIL"
    # The same segment sealed honestly passes.
    w2 = Writer(key)
    w2.ecc, w2.bo, w2.uplink, w2.lost_total, w2.dropped_total = 3, 2, 4, 2, 1
    w2.open().open()
    for _ in range(6):
        w2.commit(records=[("edgelog.time", b"{}", 7), ("temp", b"{}", 1)])
    w2.commit()
    w2.commit()
    assert verify(tmp_path, w2.close(), key).code == 0


def test_first_mono_not_above_the_last_sealed_mono_hwm_is_sequence_regression(tmp_path):
    # Segment 2 seals a mono_hwm far ahead (it passes: its own records are
    # below it); segment 3's records are not above it.
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit(sealed={"mono_hwm": 1000})
    w.commit()
    r = verify(tmp_path, w.close(), key)
    assert r.reasons == [None, None, "sequence_regression"]


def test_lowered_seq_is_sequence_regression(tmp_path):
    # A writer steered by an edited source table (last_seq lowered) repeats
    # seqs: the segment that does is sequence_regression, with its seal
    # read (marker offset, its key_epoch), and the head does not pass, so
    # the metadata is not compared.
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit([b"{}", b"{}"])
    w.commit()
    w.seq["temp"] = 1
    w.commit()
    w.commit()
    r = verify(tmp_path, w.close(), key)
    assert r.reasons == [None, None, "sequence_regression", "sequence_regression"]
    assert r.segments[2]["offset"] == w.seg_range(3)[2] and r.segments[2]["key_epoch"] == 1
    # Within one segment too: two records of one source with the same seq.
    w = Writer(key).open()
    w.commit()

    def repeat(encoded):
        return [encoded[0], record(1, struct.unpack_from("<Q", encoded[1], 16)[0], b"{}")]
    w.commit([b"{}", b"{}"], edit_records=repeat)
    assert verify(tmp_path, w.close(), key).reasons == [None, "sequence_regression"]
    # Seqs of different sources are independent; gaps in a source are fine.
    w = Writer(key).open()
    w.commit(records=[("a", b"{}", 1), ("b", b"{}", 1)])
    w.seq["a"] += 5
    w.commit(records=[("a", b"{}", 1), ("b", b"{}", 1)])
    assert verify(tmp_path, w.close(), key).code == 0


def test_rollback_is_against_the_last_passing_segment(tmp_path):
    # Segment 2 (ctr 5) fails its signature; segment 3 (ctr 3) is compared
    # with segment 1 (ctr 3), the last that passed: no rollback.
    key = Signer("ed25519")
    w = Writer(key).open().open().open()
    w.commit()
    w.commit(rollback=5)
    _, _, mbase = w.seg_range(2)
    w.commit()
    w.buf[mbase + 40 + 320] ^= 1
    refit_marker_crc(w.buf, mbase)
    assert verify(tmp_path, w.close(), key).reasons == [None, "bad_signature", None]
    # Segment 2 passing with ctr 5: segment 3 (ctr 3) is a rollback.
    w = Writer(key).open().open().open()
    w.commit()
    w.commit(rollback=5)
    w.commit()
    assert verify(tmp_path, w.close(), key).reasons == [None, None, "rollback"]


def test_unsigned_after_signed_is_a_downgrade(tmp_path):
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit(signer=None)
    w.commit()
    r = verify(tmp_path, w.close(), key, args=["--allow-unsigned"])
    assert r.code == 1 and r.reasons == [None, "unsigned", None]
    line = r.segments[1]
    assert (line["offset"], line["key_epoch"]) == (w.seg_range(2)[2], 0)
    # A signature that verified in a segment that then failed still counts.
    w = Writer(key).open()
    w.commit(fw=FW_OTHER)
    w.commit(signer=None)
    r = verify(tmp_path, w.close(), key, args=["--allow-unsigned", "--allow-fw", FW.hex()])
    assert r.reasons == ["fw_not_allowed", "unsigned"]
    # A signature that did not verify does not.
    w = Writer(key).open()
    w.commit(signer=Signer("ed25519"))
    w.commit(signer=None)
    r = verify(tmp_path, w.close(), key, args=["--allow-unsigned"])
    assert r.reasons == ["unknown_key", None]


def test_summary_signed_needs_every_passing_segment_signed(tmp_path):
    key = Signer("hmac")
    w = Writer(None).open()
    w.commit()
    w.signer, w.epoch = key, 1
    w.commit()
    r = verify(tmp_path, w.close(), key, args=["--allow-unsigned"])
    assert r.code == 0 and (r.summary["signed"], r.summary["sig_alg"]) == (False,
                                                                           "hmac-sha256")
    w, key = signed_store("hmac")
    r = verify(tmp_path, w, key)
    assert (r.summary["signed"], r.summary["sig_alg"]) == (True, "hmac-sha256")
    r = verify(tmp_path, w, Signer("hmac"))
    assert (r.summary["signed"], r.summary["sig_alg"]) == (False, "unsigned")


def test_uplink_acked_gap_record_is_a_note(tmp_path):
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit(records=[gap_record("uplink_acked", 1), gap_record("no_such_reason", 1),
                      ("edgelog", b'{"reason":' + b"[" * 1100 + b"]" * 1100 + b"}", 2)])
    r = verify(tmp_path, w.close(), key)
    assert r.code == 0 and r.notes == [("uplink_acked", 2)]


# -- metadata slots (item 1) --

def test_wiped_metadata_slot_is_a_finding_even_before_recovery(tmp_path):
    # "the invalid slot is not all zero bytes (... a wiped slot is not one)".
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit()
    other = 4096 - chosen_base(w)
    w.buf[other:other + 4096] = bytes(4096)
    r = verify(tmp_path, w, key)
    assert r.code == 1 and r.findings == [("crc_mismatch", other)] and r.notes == []
    # One stray byte: a possible cut write, a note.
    w.buf[other + 4000] = 1
    r = verify(tmp_path, w, key)
    assert r.code == 0 and r.notes == [("torn_metadata_write", 0)]
    detail = [x["detail"] for x in r.lines if x["kind"] == "note"][0]
    assert "cannot be told from an edit" in detail


# -- beyond the head and torn segments (items 5 and 6) --

def test_valid_signed_segment_beyond_a_torn_one_is_truncated_tail(tmp_path):
    # Before recovery: segment 4 is torn (a power cut, a note), but segment
    # 5, valid and signed, lies beyond it: the history was cut.
    key = Signer("ed25519")
    w = Writer(key).open()
    for _ in range(3):
        w.commit()
    w.commit(land_meta=False)
    w.commit(land_meta=False)
    off4, _, mbase4 = w.seg_range(4)
    w.buf[mbase4:mbase4 + 432] = bytes(432)
    r = verify(tmp_path, w, key)
    assert r.reasons == [None] * 3
    assert r.findings == [("truncated_tail", w.seg_range(5)[0])]
    assert r.notes == [("torn_tail_power_cut", 4)]
    # A segment 5 signed by a key nobody trusts proves nothing.
    w2 = Writer(key).open()
    for _ in range(3):
        w2.commit()
    w2.commit(land_meta=False)
    w2.commit(land_meta=False, signer=Signer("ed25519"))
    w2.buf[mbase4:mbase4 + 432] = bytes(432)
    r = verify(tmp_path, w2, key)
    assert r.code == 0 and r.findings == []


def test_erased_newest_segments_with_metadata_rewritten_is_truncated_tail(tmp_path):
    # Segments 1..5 committed and closed; an attacker restores the metadata
    # of head 2 and erases segment 3 (so nothing is adopted), leaving 4 and
    # 5: both are beyond the head.
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit()
    w.close()
    earlier = bytes(w.buf[:8192])
    w.open()
    for _ in range(3):
        w.commit()
    w.close()
    w.buf[:8192] = earlier
    off3 = w.seg_range(3)[0]
    w.buf[off3:off3 + SEG] = bytes(SEG)
    r = verify(tmp_path, w, key)
    assert r.reasons == [None, None]
    assert r.findings == [("truncated_tail", w.seg_range(4)[0]),
                          ("truncated_tail", w.seg_range(5)[0])]
    # Unsigned segments count only with --allow-unsigned.
    u = Writer(None).open()
    u.commit()
    earlier = bytes(u.buf[:8192])
    u.commit()
    u.commit()
    u.buf[:8192] = earlier
    off2 = u.seg_range(2)[0]
    u.buf[off2:off2 + SEG] = bytes(SEG)
    r = verify(tmp_path, u, key, args=["--allow-unsigned"])
    assert r.findings == [("truncated_tail", u.seg_range(3)[0])]
    r = verify(tmp_path, u, key)
    assert r.findings == [] and r.reasons == ["unsigned"]


def test_segment_beyond_the_head_in_a_bad_slot_is_truncated_tail(tmp_path):
    # "Every ring slot outside the range (bad slots included)" holding a
    # valid signed segment above H + 1.
    key = Signer("ed25519")
    w = Writer(key, bad=[(3, 2, 4)]).open()
    for _ in range(3):
        w.commit()
    w.close()
    off = 8192 + 3 * SEG
    for seg_id, finding in ((4, []), (5, [("truncated_tail", off)])):
        donor = Writer(key).open()
        donor.head_id, donor.head_slot = seg_id - 1, 2
        donor.commit()  # segment seg_id, written for slot 3
        w.buf[off:off + SEG] = donor.buf[off:off + SEG]
        r = verify(tmp_path, w, key)
        assert r.findings == finding and r.reasons == [None] * 3


def test_a_valid_copy_of_segment_h_plus_1_is_not_truncation(tmp_path):
    # Section 9 item 5: "a cut or retried commit can leave a valid copy of
    # segment H + 1 that was never acknowledged".  Segment 4 landed whole
    # but after another segment 4 was given its place: not adopted (it does
    # not chain onto the head's body_crc), not a truncation.
    key = Signer("ed25519")
    w = Writer(key).open()
    for _ in range(3):
        w.commit()
    w.close()
    closed = bytes(w.buf[:8192])
    w.open()
    w.commit()
    off4, _, _ = w.seg_range(4)
    struct.pack_into("<I", w.buf, off4 + 120, 0)  # prev_crc no longer the head's
    struct.pack_into("<I", w.buf, off4 + 124, crc(bytes(w.buf[off4:off4 + 124])))
    w.buf[:8192] = closed
    r = verify(tmp_path, w, key)
    assert r.code == 0 and r.findings == [] and r.reasons == [None] * 3


def test_torn_segment_after_a_clean_close_is_truncated_tail(tmp_path):
    # A cleanly closed store has no commit in flight: a torn segment after
    # its head is not a power cut but a cut history (or a plant).
    key = Signer("ed25519")
    w = Writer(key).open()
    for _ in range(3):
        w.commit()
    w.close()
    closed = bytes(w.buf[:8192])
    w.open()
    w.commit()
    w.buf[:8192] = closed
    off4, _, mbase4 = w.seg_range(4)
    w.buf[mbase4 + 100] ^= 1  # the marker CRC fails
    r = verify(tmp_path, w, key)
    assert r.code == 1 and r.reasons == [None] * 3
    assert r.findings == [("truncated_tail", off4)] and r.notes == []


# -- the anchor (item 7) --

def test_anchor_of_another_store_is_foreign_segment(tmp_path):
    # Same device and key, another store_uuid (a reformat): foreign_segment.
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    other = Writer(key, uuid=bytes(range(1, 17))).open()
    other.commit()
    r = verify(tmp_path, w, key, args=anchor_args(tmp_path, other.head_json()))
    assert r.findings == [("foreign_segment", 0)]


def test_anchor_just_before_the_range_is_checked_by_prev_hash(tmp_path):
    # Nine commits in a 6-slot ring: the range is 4..9.  An anchor on
    # segment 3 is compared with segment 4's prev_hash.
    key = Signer("ed25519")
    histories = []
    for tag in (b'"a"', b'"b"'):
        w = Writer(key).open()
        w.commit()
        w.commit()
        w.commit([b'{"t":%s}' % tag])
        histories.append(w)
    w_a, w_b = histories
    anchor_a = w_a.head_json()
    anchor_b = w_b.head_json()
    for _ in range(6):
        w_b.commit()
    assert w_b.tail_id == 4
    r = verify(tmp_path, w_b, key, args=anchor_args(tmp_path, anchor_b))
    assert r.code == 0 and r.findings == []
    r = verify(tmp_path, w_b, key, args=anchor_args(tmp_path, anchor_a))
    assert r.findings == [("fork", 0)]
    # An anchor on segment 2: not retained.
    r = verify(tmp_path, w_b, key, args=anchor_args(tmp_path, w_a.head_json(2)))
    assert r.findings == [("anchor_not_retained", 0)]


def test_anchor_whose_segment_is_overwritten_is_anchor_not_retained(tmp_path):
    w, key = signed_store(n=3)
    anchor = w.head_json(1)
    w.open()
    for _ in range(6):
        w.commit()
    r = verify(tmp_path, w.close(), key, args=anchor_args(tmp_path, anchor))
    assert r.code == 1 and r.findings == [("anchor_not_retained", 0)]
    assert r.reasons == [None] * 6
    # The head itself as the anchor passes, and without --anchor the note
    # truncation_not_excluded names H.
    r = verify(tmp_path, w, key, args=anchor_args(tmp_path, w.head_json()))
    assert r.code == 0
    r = verify(tmp_path, w, key)
    assert r.all_notes[-1] == ("truncation_not_excluded", 9)


def anchor_edits():
    return {
        "spaces": lambda a: a.replace(b'","', b'", "'),
        "space after colon": lambda a: a.replace(b'":', b'": ', 1),
        "pretty": lambda a: json.dumps(json.loads(a), indent=1).encode() + b"\n",
        "key order": lambda a: json.dumps(dict(reversed(list(json.loads(a).items()))),
                                          separators=(",", ":")).encode() + b"\n",
        "extra key": lambda a: a[:-2] + b',"note":"x"}\n',
        "uppercase hex": lambda a: a.replace(b'"statement":"', b'"statement":"').replace(
            json.loads(a)["key_id"].encode(), json.loads(a)["key_id"].upper().encode()),
        "uppercase statement": lambda a: a.replace(
            json.loads(a)["statement"].encode(), json.loads(a)["statement"].upper().encode()),
        "no newline": lambda a: a[:-1],
        "crlf": lambda a: a[:-1] + b"\r\n",
        "two newlines": lambda a: a + b"\n",
        "leading space": lambda a: b" " + a,
        "trailing bytes": lambda a: a + b"x",
        "two heads": lambda a: a + a,
        "bom": lambda a: b"\xef\xbb\xbf" + a,
        "version 1": lambda a: a.replace(b'"version":2', b'"version":1'),
        "repeat edited": lambda a: a.replace(b'"segment_id":3,', b'"segment_id":4,'),
        "rollback a string": lambda a: a.replace(b'"rollback_ctr":1,', b'"rollback_ctr":"1",'),
        "leading zero": lambda a: a.replace(b'"rollback_ctr":1,', b'"rollback_ctr":01,'),
        "sig_alg a list": lambda a: a.replace(b'"sig_alg":"ed25519"', b'"sig_alg":["ed25519"]'),
        "sig_alg an object": lambda a: a.replace(b'"sig_alg":"ed25519"', b'"sig_alg":{"a":1}'),
        "sig_alg a number": lambda a: a.replace(b'"sig_alg":"ed25519"', b'"sig_alg":1'),
        "statement a list": lambda a: a.replace(b'"statement":"', b'"statement":["').replace(
            b'","signature"', b'"],"signature"'),
        "statement 321 bytes": lambda a: a.replace(b'"statement":"', b'"statement":"00'),
        "statement odd": lambda a: a.replace(b'"statement":"', b'"statement":"0'),
        "magic EDGESIG1": lambda a: a.replace(b'"statement":"4544474553494732',
                                              b'"statement":"4544474553494731'),
        "signature 65 bytes": lambda a: a.replace(b'"signature":"', b'"signature":"00'),
        "signature missing": lambda a: a.replace(b',"signature":"', b',"sig":"'),
        "nested 1100 deep": lambda a: b"[" * 1100 + a[:-1] + b"]" * 1100 + b"\n",
        "nested inside": lambda a: a[:-2] + b',"x":' + b"[" * 1100 + b"]" * 1100 + b"}\n",
        "huge number": lambda a: a.replace(b'"rollback_ctr":1,',
                                           b'"rollback_ctr":' + b"9" * 5000 + b","),
        "long file": lambda a: a + b" " * 10_000_000,
        "not json": lambda a: b"not json",
        "empty": lambda a: b"",
        "version 1 head": lambda a: (
            b'{"format":"edgelog-head","version":1,"device_id":"%s","segment_id":3}\n'
            % DEVICE.hex().encode()),
    }


@pytest.mark.parametrize("edit", list(anchor_edits()))
def test_anchor_malformed(tmp_path, edit):
    # Section 8: a head is well formed only if printing it again from its
    # statement and signature gives exactly its bytes, final newline
    # included; an anchor file holds exactly one such line.
    w, key = signed_store()
    anchor = w.head_json()
    assert b'"segment_id":3,' in anchor and b'"rollback_ctr":1,' in anchor
    assert anchor == ver.render_head(bytes.fromhex(json.loads(anchor)["statement"]),
                                     bytes.fromhex(json.loads(anchor)["signature"]))
    edited = anchor_edits()[edit](anchor)
    assert edited != anchor
    r = verify(tmp_path, w, key, args=anchor_args(tmp_path, edited))
    assert r.code == 1 and r.findings == [("anchor_malformed", 0)]
    assert r.reasons == [None] * 3


def test_anchor_with_a_bad_seal_field_is_malformed(tmp_path):
    # A statement with sig_alg 4 or an HMAC sig_len of 64 printed faithfully
    # is still not a well-formed head.
    w, key = signed_store()
    head = json.loads(w.head_json())
    st = bytearray(bytes.fromhex(head["statement"]))
    for alg, sig_len in ((4, 64), (3, 64), (0, 64)):
        st[184], st[186:188] = alg, struct.pack("<H", sig_len)
        line = head_line(bytes(st), b"\x01" * sig_len) if alg < 4 else (
            w.head_json().replace(head["statement"].encode(), bytes(st).hex().encode()))
        r = verify(tmp_path, w, key, args=anchor_args(tmp_path, line))
        assert r.findings == [("anchor_malformed", 0)]


def test_anchor_text_output_is_escaped(tmp_path):
    # Section 9: every byte of a detail outside 0x20..0x7E is printed \xNN.
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit(records=[("edgelog", b'{"reason":"torn_segment","x":"\x1b[2J\x07\xc3\xa9"}', 3)])
    code, text = verify(tmp_path, w.close(), key, json_out=False)
    assert code == 0
    assert "\x1b" not in text and "\x07" not in text and "é" not in text
    assert "\\x1b[2J\\x07\\xc3\\xa9" in text
    assert all(0x20 <= ord(c) <= 0x7E for c in text.replace("\n", ""))


# -- hostile input never raises, every walk is bounded --

def test_hostile_rotation_payloads_do_not_crash(tmp_path):
    key = Signer("ed25519")
    for payload in (b'{"old_key_id":' + b"[" * 1100 + b"]" * 1100 + b"}",
                    b'{"old_key_id":"%s","old_epoch":true,"new_key_id":"%s","new_epoch":2,'
                    b'"new_alg":"ed25519","new_public_key":"","endorsement":""}'
                    % (key.key_id.hex().encode(), key.key_id.hex().encode()),
                    b'{"old_key_id":{},"old_epoch":1e999,"new_alg":[]}',
                    b'{"new_epoch":' + b"9" * 3000 + b"}",
                    b"\xff\xfe", b"[]", b"null"):
        w = Writer(key).open()
        w.commit(records=[("edgelog", payload, 8)])
        r = verify(tmp_path, w.close(), key)
        assert r.reasons == ["bad_signature"]


def test_huge_counters_and_ids_do_not_crash(tmp_path):
    # Counters and ids at 2^64 - 1 in a seal, a segment header id of
    # 2^64 - 1 in a spare slot: findings, never an exception.
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit(sealed={name: 2**64 - 1 for name in ("mono_hwm", "records_total", "lost_total",
                                                   "dropped_total", "uplink_cursor",
                                                   "rollback_ctr")})
    w.commit(sealed={name: 2**32 - 1 for name in ("wrap_count", "unexp_rst", "bo_event",
                                                   "ecc_err_cnt", "clock_steps",
                                                   "boot_seq")})
    w.close()
    spare = Writer(key).open()
    spare.head_id, spare.head_slot = 2**64 - 2, 4
    spare.commit()
    off = 8192 + 5 * SEG
    w.buf[off:off + SEG] = spare.buf[off:off + SEG]
    r = verify(tmp_path, w, key)
    assert r.reasons == [None, "rollback"]  # 2^32 - 1 is below 2^64 - 1
    assert ("truncated_tail", off) in r.findings
    code, text = verify(tmp_path, w, key, json_out=False)
    assert code == 1 and "verdict FAIL" in text


@pytest.mark.parametrize("bad", [[], [(0, 1, 0)], [(5, 1, 0), (4, 2, 0)],
                                 [(1, 3, 0), (2, 3, 0), (3, 3, 0), (4, 3, 0)]])
def test_bad_block_tables_wrap_and_verify(tmp_path, bad):
    # The writer and the verifier skip the same slots; a full ring of the
    # good slots wraps; every id of the range gets a verdict.
    key = Signer("ed25519")
    w = Writer(key, bad=bad).open()
    for _ in range(9):
        w.commit()
    r = verify(tmp_path, w.close(), key)
    good = 6 - len(bad)
    assert r.code == 0 and [s["segment_id"] for s in r.segments] == list(range(10 - good, 10))
    assert [s["slot"] for s in r.segments] == [w.slot_of[i] for i in range(10 - good, 10)]
    assert r.notes == [("not_retained", 9 - good)]


def test_metadata_reset_to_an_empty_store_shows_the_segments_beyond(tmp_path):
    # Both slots rewritten as freshly formatted (head 0) and segment 1
    # erased so that the forward scan adopts nothing: H is 0, the range is
    # empty, and every committed segment left is beyond the head.
    w, key = signed_store(n=3)
    fresh = Writer(key)
    fresh.buf[8192:] = w.buf[8192:]
    fresh.write_meta()  # generation 1 in slot B, beside generation 0 in A
    off1 = w.seg_range(1)[0]
    fresh.buf[off1:off1 + SEG] = bytes(SEG)
    r = verify(tmp_path, fresh, key)
    assert r.segments == []
    assert r.findings == [("truncated_tail", w.seg_range(2)[0]),
                          ("truncated_tail", w.seg_range(3)[0])]
    assert r.all_notes == [("truncation_not_excluded", 0)]
    assert r.summary["verdict"] == "FAIL" and r.summary["signed"] is False


def test_metadata_with_a_huge_head_tail_distance_is_not_valid(tmp_path):
    # Section 2's bounds make such a slot invalid (a crc_mismatch finding
    # at its start); the other slot is used and the walk stays bounded.
    w, key = signed_store(n=3)
    base = chosen_base(w)  # the close's write, clean_flag 1
    change_meta(w, 4096 - base, 88, struct.pack("<Q", 2**61))  # head_segment_id
    r = verify(tmp_path, w, key)
    assert r.findings == [("crc_mismatch", 4096 - base)] and r.reasons == [None] * 3
    # The newest slot so edited instead: the older one (clean_flag 0) is
    # chosen, and a slot that is not all zero may be a cut write: a note.
    w, key = signed_store(n=3)
    change_meta(w, base, 88, struct.pack("<Q", 2**64 - 1))
    r = verify(tmp_path, w, key)
    assert r.findings == [] and r.notes == [("torn_metadata_write", 0)]
    change_meta(w, 4096 - base, 88, struct.pack("<Q", 2**61))
    r = verify(tmp_path, w, key)
    assert r.findings == [("crc_mismatch", 0), ("crc_mismatch", 4096), ("not_a_store", 0)]


# ---------------------------------------------------------------------------
# FORMAT clarifications (section 9): hash_head of the chosen slot's own head,
# torn segments, beyond the head, empty segments, the anchor's rollback rule,
# the order of findings and notes
# ---------------------------------------------------------------------------

def test_hash_head_is_checked_against_the_slots_own_head_not_the_adopted_one(tmp_path):
    # Item 4: "the hash of the segment that slot names as its head (its own
    # head_segment_id, before any adoption), when that segment passed".  The
    # slot's hash_head is edited and segment 3 (metadata write lost) chains
    # onto the edited value, so it is adopted (H = 3) but fails its chain
    # check: segment 2, the slot's own head, passed, so hash_head is checked.
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit()
    fake = b"\x42" * 32
    w.commit(land_meta=False, prev_hash=fake)
    base = chosen_base(w)
    change_meta(w, base, 192, fake)
    r = verify(tmp_path, w, key)
    assert [s["segment_id"] for s in r.segments] == [1, 2, 3]
    assert r.reasons == [None, None, "chain_break"]
    assert r.findings == [("hash_mismatch", base + 192)]
    # The slot's own head failing: no hash_head check.
    _, _, mbase = w.seg_range(2)
    w.buf[mbase + 40 + 320] ^= 1
    refit_marker_crc(w.buf, mbase)
    r = verify(tmp_path, w, key)
    assert r.reasons == [None, "bad_signature", "chain_break"] and r.findings == []


def test_torn_segment_must_chain_onto_the_heads_body_crc(tmp_path):
    # Item 6: a torn segment is one whose "header [is] valid for the expected
    # id and slot, whose prev_crc equals the head's body_crc, and the segment
    # is not valid".  A cut segment 4 whose prev_crc is not segment 3's
    # body_crc (the adopted head's) is neither a power cut note ...
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit()
    w.commit(land_meta=False)
    w.commit(land_meta=False)
    off3, len3, _ = w.seg_range(3)
    off4, _, mbase4 = w.seg_range(4)
    w.buf[mbase4:mbase4 + 432] = bytes(432)
    assert verify(tmp_path, w, key).notes == [("torn_tail_power_cut", 4)]
    struct.pack_into("<I", w.buf, off4 + 120, 0x12345678)
    struct.pack_into("<I", w.buf, off4 + 124, crc(bytes(w.buf[off4:off4 + 124])))
    r = verify(tmp_path, w, key)
    assert r.code == 0 and r.notes == [] and r.findings == [] and r.reasons == [None] * 3
    # ... nor, in a cleanly closed store (clean_flag 1), a truncated_tail
    # finding.
    change_meta(w, chosen_base(w), 116, struct.pack("<I", 1))
    r = verify(tmp_path, w, key)
    assert r.code == 0 and r.findings == []
    struct.pack_into("<I", w.buf, off4 + 120, crc(bytes(w.buf[off3:off3 + 128 + len3])))
    struct.pack_into("<I", w.buf, off4 + 124, crc(bytes(w.buf[off4:off4 + 124])))
    r = verify(tmp_path, w, key)
    assert r.findings == [("truncated_tail", off4)]


@pytest.mark.parametrize("donor_kw, commit_kw, counts", [
    ({}, {}, True),
    ({"device": OTHER_DEVICE}, {}, False),              # another device's statement
    ({"uuid": bytes(16)}, {}, False),                   # another store
    ({}, {"epoch": 2}, False),                          # not trusted at its key_epoch
    ({}, {"signer": None}, False),                      # unsigned, no --allow-unsigned
])
def test_segment_beyond_the_head_counts_only_of_this_store_device_and_keys(
        tmp_path, donor_kw, commit_kw, counts):
    # Item 5: "valid for its own header's id and slot, of this store
    # (store_uuid) and device (the statement's device_id), with a segment_id
    # above H + 1 ... whose signature verifies with a key trusted, at its
    # key_epoch, at any point of the walk".
    key = Signer("ed25519")
    w = Writer(key).open()
    for _ in range(3):
        w.commit()
    w.close()
    donor = Writer(key, **donor_kw).open()
    donor.head_id, donor.head_slot = 4, 3
    donor.commit(**commit_kw)  # segment 5, written for slot 4
    off = 8192 + 4 * SEG
    w.buf[off:off + SEG] = donor.buf[off:off + SEG]
    r = verify(tmp_path, w, key)
    assert r.reasons == [None] * 3
    assert r.findings == ([("truncated_tail", off)] if counts else [])


def test_key_endorsed_during_the_walk_counts_beyond_the_head(tmp_path):
    # "a key trusted, at its key_epoch, at any point of the walk": a key a
    # rotation of the range endorsed (epoch 2), even though a segment beyond
    # the head signed by it is not in the walk.
    old, new = Signer("ed25519"), Signer("ed25519")
    w = Writer(old).open()
    w.commit()
    w.rotate(new)
    w.commit()
    w.close()
    closed = bytes(w.buf[:8192])
    w.open()
    w.commit()
    w.commit()  # segment 5
    w.buf[:8192] = closed
    off4 = w.seg_range(4)[0]
    w.buf[off4:off4 + SEG] = bytes(SEG)
    r = verify(tmp_path, w, old)
    assert r.reasons == [None] * 3
    assert r.findings == [("truncated_tail", w.seg_range(5)[0])]


def test_mono_checks_only_for_a_segment_with_records(tmp_path):
    # Item 3: "first_mono not above that segment's sealed mono_hwm, a sealed
    # mono_hwm below last_mono (these two only for a segment with records)".
    # A segment without records has first_mono and last_mono 0.
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit(records=[])
    w.commit()
    w.commit(records=[], sealed={"mono_hwm": 0})  # not compared with last_mono
    r = verify(tmp_path, w.close(), key)
    assert r.reasons == [None] * 4
    # (the head seals mono_hwm 0, the metadata holds 2: item 4 says so)
    assert r.findings == [("metadata_mismatch", chosen_base(w) + 136)]
    # Mono going backward is still caught once a segment has records.
    w = Writer(key).open()
    w.commit([b"{}", b"{}"])
    w.commit(records=[])
    w.mono = 1
    w.commit()
    assert verify(tmp_path, w.close(), key).reasons == [None, None, "sequence_regression"]


def test_anchor_rollback_only_when_a_segment_passed(tmp_path):
    # Item 7: "when a segment passed, the newest rollback_ctr of a passing
    # segment below the anchor's is rollback; otherwise H below the
    # anchor's segment_id is truncated_tail".  The image is session 1's
    # (segments 1 and 2), the anchor session 2's head (segment 3).
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit()
    old_image = w.close().image()
    w.open()
    w.commit()
    anchor = anchor_args(tmp_path, w.head_json())
    r = verify(tmp_path, old_image, key, args=anchor)
    assert r.findings == [("rollback", 0)]
    # No segment passes (firmware not allowed): the next rule decides.
    r = verify(tmp_path, old_image, key, args=anchor + ["--allow-fw", FW_OTHER.hex()])
    assert r.reasons == ["fw_not_allowed"] * 2
    assert r.findings == [("truncated_tail", 0)]


def test_findings_come_in_item_order(tmp_path):
    # "in the order of the items above: 1, 2, 4, 5 by slot, 6, 7": a wiped
    # metadata slot (1), a metadata_mismatch (4), a committed segment beyond
    # the head (5, slot 4), a torn segment after the head of a cleanly closed
    # store (6, slot 3: before item 5's in the image, after it here), and a
    # malformed anchor (7).
    key = Signer("ed25519")
    w = Writer(key).open()
    for _ in range(3):
        w.commit()
    w.close()
    closed, base = bytes(w.buf[:8192]), chosen_base(w)
    w.open()
    w.commit()
    w.commit()
    w.buf[:8192] = closed
    off4, _, mbase4 = w.seg_range(4)
    off5 = w.seg_range(5)[0]
    w.buf[mbase4 + 100] ^= 1
    w.buf[4096 - base:8192 - base] = bytes(4096)
    change_meta(w, base, 124, struct.pack("<I", 7))
    r = verify(tmp_path, w, key, args=anchor_args(tmp_path, b"{}\n"))
    assert r.findings == [("crc_mismatch", 4096 - base), ("metadata_mismatch", base + 124),
                          ("truncated_tail", off5), ("truncated_tail", off4),
                          ("anchor_malformed", 0)]
    kinds = [x["kind"] for x in r.lines]
    assert kinds == ["segment"] * 3 + ["finding"] * 5 + ["summary"]


def test_notes_come_in_the_documented_order(tmp_path):
    # "in the order torn_metadata_write, not_retained, the notes of the
    # segments' records in walk order, torn_tail_power_cut,
    # truncation_not_excluded".  A 6-slot ring: segment 8 (adopted) holds a
    # gap record and a recovery record with refused_segment_id (section 4);
    # segment 9 was cut while reclaiming the tail (given up); the slot not
    # chosen holds garbage (a cut metadata write, before recovery).
    key = Signer("ed25519")
    w = Writer(key).open()
    for _ in range(7):
        w.commit()
    recovery = (b'{"unclean_shutdown":true,"metadata_slot":"A","generation":9,'
                b'"rejected_slots":[],"segments_adopted":0,"torn_segment_id":null,'
                b'"refused_segment_id":8,"tail_advanced":false}')
    w.commit(records=[gap_record("ring_overwrite", 2), ("edgelog", recovery, 5)],
             land_meta=False)
    w.commit(land_meta=False)
    _, _, mbase9 = w.seg_range(9)
    w.buf[mbase9:mbase9 + 432] = bytes(432)
    other = 4096 - chosen_base(w)
    w.buf[other + 100:other + 108] = b"\xff" * 8  # CRC fails
    r = verify(tmp_path, w, key)
    assert r.code == 0 and r.findings == [] and r.reasons == [None] * 5
    assert [s["segment_id"] for s in r.segments] == [4, 5, 6, 7, 8]
    assert r.all_notes == [("torn_metadata_write", 0), ("not_retained", 3),
                           ("ring_overwrite", 8), ("power_cut_explained", 8),
                           ("torn_tail_power_cut", 9), ("truncation_not_excluded", 8)]
    assert "refused_segment_id" in [x for x in r.lines if x["kind"] == "note"][3]["detail"]


# -- second review of format 5 --

def test_statement_seals_tail_slot_and_ring_slots(tmp_path):
    # Section 3.5: statement offsets 312 (tail_slot) and 316 (ring_slots),
    # no longer reserved; the intact store passes with them checked.
    key = Signer("ed25519")
    w = Writer(key, slots=5).open()
    for _ in range(7):
        w.commit()
    _, _, mbase = w.seg_range(7)
    tail_slot, ring_slots = struct.unpack_from("<II", w.buf, mbase + 40 + 312)
    assert (tail_slot, ring_slots) == (w.tail_slot, 5) and tail_slot == 2
    seal = ver.dec.parse_seal(bytes(w.buf[mbase + 40:mbase + 40 + 384]))
    assert (seal.tail_slot, seal.ring_slots) == (2, 5)
    r = verify(tmp_path, w.close(), key)
    assert r.code == 0 and r.findings == []


def test_sealed_ring_slots_and_tail_slot_other_than_the_metadata(tmp_path):
    # Section 9 item 4: ring_slots (72) and tail_slot (100) are compared
    # with the head's seal, findings in increasing metadata offset order,
    # before tail_segment_id (104) and the rest (bo_event, 124).  Every
    # segment seals ring_slots 7 (a ring_slots other than the last passing
    # segment's would be sequence_regression, item 3).
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit(sealed={"ring_slots": 7})
    w.commit(sealed={"ring_slots": 7})
    w.commit(sealed={"ring_slots": 7, "tail_slot": 3, "bo_event": 1})
    r = verify(tmp_path, w.close(), key)
    base = chosen_base(w)
    assert r.code == 1 and r.reasons == [None] * 3
    assert r.findings == [("metadata_mismatch", base + 72), ("metadata_mismatch", base + 100),
                          ("metadata_mismatch", base + 124)]
    details = [x["detail"] for x in r.lines if x["kind"] == "finding"]
    assert "ring_slots 6 " in details[0] and " 7" in details[0]
    assert "tail_slot 0 " in details[1] and " 3" in details[1]
    assert r.summary["reasons"] == ["metadata_mismatch"]


@pytest.mark.parametrize("field, offset, value", [
    ("ring_slots", 72, 5),     # still valid: 5 slots of the 6 fit, head and tail below 5
])
def test_metadata_ring_slots_edited(tmp_path, field, offset, value):
    # The metadata's ring_slots edited (slot still valid): a metadata_mismatch
    # at that field, nothing else.  (tail_slot cannot be edited alone and
    # keep the slot valid since the third review: section 2 wants next()
    # applied head - tail times to tail_slot to give head_slot; see
    # test_ring_not_in_consecutive_good_slots_makes_the_slot_invalid.)
    w, key = signed_store(n=3)
    base = chosen_base(w)
    change_meta(w, base, offset, struct.pack("<I", value))
    r = verify(tmp_path, w, key)
    assert r.code == 1 and r.reasons == [None] * 3
    assert r.findings == [("metadata_mismatch", base + offset)]
    assert field in [x["detail"] for x in r.lines if x["kind"] == "finding"][0]


def given_up_ring(key, *, bad=(), sealed_tail_slot=None):
    """A full ring before recovery (clean_flag 0) whose tail slot's header a
    cut reclaim overwrote: section 5 gives the tail (segment 1) up."""
    w = Writer(key, bad=bad).open()
    good = 6 - len(bad)
    for i in range(good):
        w.commit(sealed={"tail_slot": sealed_tail_slot}
                 if sealed_tail_slot is not None and i == good - 1 else None)
    off, _, _ = w.seg_range(1)
    w.buf[off:off + 200] = bytes(range(1, 201))
    return w


def test_tail_given_up_moves_the_sealed_tail_slot_on_by_one_good_slot(tmp_path):
    # Section 9 item 4: the expected tail_slot is the sealed one moved on by
    # one good slot per tail given up, skipping bad_block_tbl slots as next(s)
    # does: with slot 1 bad, tail slot 0 moves on to 2, not 1.
    key = Signer("ed25519")
    w = given_up_ring(key, bad=[(1, 1, 0)])
    assert w.slot_of[1] == 0 and w.slot_of[2] == 2
    r = verify(tmp_path, w, key)
    assert r.code == 0 and r.findings == []
    assert [s["segment_id"] for s in r.segments] == [2, 3, 4, 5]
    assert r.notes == [("not_retained", 1)]
    # Without bad slots: 0 moves on to 1.
    w = given_up_ring(key)
    r = verify(tmp_path, w, key)
    assert r.code == 0 and r.findings == []


@pytest.mark.parametrize("bad", [(), ((1, 1, 0),)])
def test_tail_given_up_with_a_wrong_sealed_tail_slot(tmp_path, bad):
    # The head seals tail_slot 2 (it is 0): moved on by one good slot it is
    # 3, not the metadata's tail after the give-up (1, or 2 past the bad
    # slot 1): a metadata_mismatch at the chosen slot + 100.
    key = Signer("ed25519")
    w = given_up_ring(key, bad=list(bad), sealed_tail_slot=2)
    r = verify(tmp_path, w, key)
    assert r.code == 1 and r.findings == [("metadata_mismatch", chosen_base(w) + 100)]


@pytest.mark.parametrize("offset, fmt, value", [
    (116, "<I", 2), (116, "<I", 2**32 - 1),   # clean_flag not 0 or 1
    (80, "<Q", 2), (80, "<Q", 4), (80, "<Q", 0),   # commit_id not head_segment_id (3)
    (2832, "<Q", 2**62), (2832, "<Q", 2**64 - 1),  # rollback_ctr not below 2^62
])
def test_metadata_slot_validity_of_the_second_review(tmp_path, offset, fmt, value):
    # Section 2: clean_flag is 0 or 1, commit_id equals head_segment_id and
    # rollback_ctr is below 2^62, else the slot is invalid: the older slot
    # so edited is a crc_mismatch finding at its start (the chosen slot is
    # the close's, clean_flag 1).
    w, key = signed_store(n=3)
    other = 4096 - chosen_base(w)
    change_meta(w, other, offset, struct.pack(fmt, value))
    r = verify(tmp_path, w, key)
    assert r.code == 1 and r.findings == [("crc_mismatch", other)]
    assert r.reasons == [None] * 3 and r.notes == []


@pytest.mark.parametrize("offset, fmt, value", [
    (116, "<I", 0), (116, "<I", 1), (2832, "<Q", 2**62 - 1),
])
def test_metadata_slot_values_still_valid(tmp_path, offset, fmt, value):
    w, key = signed_store(n=3)
    other = 4096 - chosen_base(w)
    change_meta(w, other, offset, struct.pack(fmt, value))
    r = verify(tmp_path, w, key)
    assert r.code == 0 and r.findings == [] and r.reasons == [None] * 3


def refit_segment(w: Writer, seg_id, payload_len=None):
    """Refit header_crc, body_crc and marker_crc of a committed segment after
    an edit (the statement, its hash and signature untouched)."""
    off, stored_len, mbase = w.seg_range(seg_id)
    payload_len = stored_len if payload_len is None else payload_len
    struct.pack_into("<I", w.buf, off + 124, crc(bytes(w.buf[off:off + 124])))
    struct.pack_into("<I", w.buf, mbase + 32, crc(bytes(w.buf[off:off + 128 + payload_len])))
    refit_marker_crc(w.buf, mbase)


def refit_record(w: Writer, pos):
    length, = struct.unpack_from("<I", w.buf, pos)
    struct.pack_into("<I", w.buf, pos + length - 8, crc(bytes(w.buf[pos:pos + length - 8])))


@pytest.mark.parametrize("case, at", [
    ("header_crc", "slot"), ("format_version", "slot"), ("header_size", "slot"),
    ("payload_len", "payload_len"), ("payload_len_max", "payload_len"),
    ("payload_len_short", "rec3"),
    ("record_len", "rec2"), ("record_crc", "rec2"), ("record_end", "rec2"),
    ("record_source", "rec2"), ("record_seq", "rec2"), ("record_mono", "rec2"),
    ("record_mono_equal", "rec3"), ("record_mono_below", "rec2"),
    ("commit_id", "marker"), ("record_count", "marker"), ("first_mono", "marker"),
    ("last_mono", "marker"), ("body_crc", "marker"), ("marker_magic", "marker"),
    ("marker_crc", "marker"), ("marker_segment_id", "marker"),
])
def test_crc_mismatch_offset_rule(tmp_path, case, at):
    # Section 9 item 3: crc_mismatch at the slot's start when the header
    # itself does not check; else at the payload_len field (slot offset 60)
    # when payload_len overruns the segment; else at the first record that
    # does not parse, has a seq or mono_ctr of 2^62 or more, or a mono_ctr
    # not above the record before it; else at the commit marker's start.
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit([b'{"a":1}', b'{"b":2}', b'{"c":3}'])
    w.commit()
    w.close()
    off, payload_len, mbase = w.seg_range(2)
    rec1 = off + 128
    rec2 = rec1 + struct.unpack_from("<I", w.buf, rec1)[0]
    rec3 = rec2 + struct.unpack_from("<I", w.buf, rec2)[0]
    len2 = rec3 - rec2
    mono1, = struct.unpack_from("<Q", w.buf, rec1 + 16)
    buf = w.buf
    if case == "header_crc":
        buf[off + 124] ^= 1
    elif case == "format_version":
        struct.pack_into("<H", buf, off + 8, 4)
        refit_segment(w, 2)
    elif case == "header_size":
        struct.pack_into("<H", buf, off + 10, 127)
        refit_segment(w, 2)
    elif case in ("payload_len", "payload_len_max", "payload_len_short"):
        new = {"payload_len": SEG - 128 - 432 + 1, "payload_len_max": 2**32 - 1,
               "payload_len_short": payload_len - 1}[case]
        struct.pack_into("<I", buf, off + 60, new)
        struct.pack_into("<I", buf, off + 124, crc(bytes(buf[off:off + 124])))
    elif case == "record_len":
        struct.pack_into("<I", buf, rec2, 68)
    elif case == "record_crc":
        buf[rec2 + 64] ^= 1
    elif case == "record_end":
        buf[rec2 + len2 - 1] ^= 1
    elif case == "record_source":
        buf[rec2 + 60] = ord("=")
        refit_record(w, rec2)
    elif case in ("record_seq", "record_mono"):
        struct.pack_into("<Q", buf, rec2 + (8 if case == "record_seq" else 16), 2**62)
        refit_record(w, rec2)
    elif case == "record_mono_equal":
        struct.pack_into("<Q", buf, rec3 + 16, mono1 + 1)  # rec2's mono_ctr
        refit_record(w, rec3)
    elif case == "record_mono_below":
        struct.pack_into("<Q", buf, rec2 + 16, mono1 - 1 if mono1 else 0)
        refit_record(w, rec2)
    elif case == "commit_id":
        # Header and marker agree on another commit_id (segment 2's is 2).
        struct.pack_into("<Q", buf, off + 40, 7)
        struct.pack_into("<Q", buf, mbase + 16, 7)
    elif case == "record_count":
        struct.pack_into("<I", buf, off + 56, 2)
        struct.pack_into("<I", buf, mbase + 24, 2)
    elif case == "first_mono":
        struct.pack_into("<Q", buf, off + 64, mono1 - 1)
    elif case == "last_mono":
        struct.pack_into("<Q", buf, off + 72, mono1 + 5)
    elif case == "body_crc":
        buf[mbase + 32] ^= 1
        refit_marker_crc(buf, mbase)
    elif case == "marker_magic":
        buf[mbase] ^= 1
    elif case == "marker_crc":
        buf[mbase + 428] ^= 1
    elif case == "marker_segment_id":
        struct.pack_into("<Q", buf, mbase + 8, 3)
        refit_marker_crc(buf, mbase)
    if case in ("record_source", "record_seq", "record_mono", "record_mono_equal",
                "record_mono_below", "commit_id", "record_count", "first_mono", "last_mono"):
        refit_segment(w, 2)  # every other check over the bytes refitted
    r = verify(tmp_path, w, key)
    assert r.code == 1 and r.reasons == [None, "crc_mismatch", None], case
    expected = {"slot": off, "payload_len": off + 60, "rec2": rec2, "rec3": rec3,
                "marker": mbase}[at]
    assert r.segments[1]["offset"] == expected
    assert r.segments[1]["key_epoch"] == 0 and r.segments[1]["sig_verify"] == "FAIL"


def test_segment_commit_id_other_than_segment_id_even_when_sealed_so(tmp_path):
    # Section 3.4: commit_id equals segment_id.  A segment whose header,
    # marker and signed statement all say commit_id 9 is crc_mismatch at
    # its commit marker (section 9 item 3), not a passing segment.
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit(sealed={"commit_id": 9})
    w.commit()
    off, _, mbase = w.seg_range(2)
    struct.pack_into("<Q", w.buf, off + 40, 9)
    struct.pack_into("<Q", w.buf, mbase + 16, 9)
    refit_segment(w, 2)
    r = verify(tmp_path, w.close(), key)
    assert r.reasons == [None, "crc_mismatch", None]
    assert r.segments[1]["offset"] == mbase


def test_gap_records_with_null_counts_are_still_notes(tmp_path):
    # Section 4: a gap record's counts are null when the writer cannot show
    # the lost segment is its own; the note is named by its reason all the
    # same, and a null count adds nothing to lost_total.
    key = Signer("ed25519")
    w = Writer(key).open()
    for _ in range(6):
        w.commit()
    nulls = b'"lost_records":null,"first_mono":null,"last_mono":null}'
    w.commit(records=[("edgelog", b'{"reason":"ring_overwrite","lost_segment_id":1,' + nulls,
                       2), ("temp", b"{}", 1)])
    w.commit(records=[("edgelog", b'{"reason":"tail_unreadable","lost_segment_id":2,' + nulls,
                       2), ("temp", b"{}", 1)])
    r = verify(tmp_path, w.close(), key)
    assert r.code == 0 and r.findings == []
    assert r.notes == [("not_retained", 2), ("ring_overwrite", 7), ("tail_unreadable", 8)]


def two_histories(key):
    """Two histories of one device and key that differ from segment 2 on
    (4 segments each)."""
    histories = []
    for tag in (b'"a"', b'"b"'):
        w = Writer(key).open()
        w.commit()
        for _ in range(3):
            w.commit([b'{"t":%s}' % tag])
        histories.append(w)
    return histories


@pytest.mark.parametrize("damage", ["seal_magic", "signature", "payload_refitted"])
def test_anchor_fork_judged_on_a_readable_segment_whatever_its_verdict(tmp_path, damage):
    # Section 9 item 7: the anchored segment is readable when its slot holds
    # it valid for its id and slot apart from its seal, whatever its
    # verdict; its computed SHA-256 against the anchor's hash_head decides.
    key = Signer("ed25519")
    w_a, w_b = two_histories(key)
    anchor_a = anchor_args(tmp_path, w_a.head_json(2))
    own = w_b.head_json(2)
    off, payload_len, mbase = w_b.seg_range(2)
    if damage == "seal_magic":
        w_b.buf[mbase + 40] ^= 1          # statement magic: seal_mismatch
        refit_marker_crc(w_b.buf, mbase)
        verdict = "seal_mismatch"
    elif damage == "signature":
        w_b.buf[mbase + 40 + 320] ^= 1    # bad_signature
        refit_marker_crc(w_b.buf, mbase)
        verdict = "bad_signature"
    else:
        change_payload(w_b, 2, fix_record=True, fix_body=True)   # hash_mismatch
        verdict = "hash_mismatch"
    r = verify(tmp_path, w_b, key, args=anchor_a)
    assert r.reasons[1] == verdict and r.findings == [("fork", 0)]
    # Against B's own anchor: a fork exactly when the bytes no longer hash
    # to what was anchored.
    r = verify(tmp_path, w_b, key, args=anchor_args(tmp_path, own))
    assert r.reasons[1] == verdict
    assert r.findings == ([("fork", 0)] if damage == "payload_refitted" else [])


@pytest.mark.parametrize("damage", ["slot_index", "store_uuid", "commit_id"])
def test_anchor_fork_not_judged_on_a_segment_not_valid_for_its_id_and_slot(tmp_path, damage):
    # A slot whose segment names another slot or store (or breaks the
    # structure, commit_id other than segment_id) does not hold the anchored
    # segment readably: no fork, its own line fails the store.
    key = Signer("ed25519")
    w_a, w_b = two_histories(key)
    anchor_a = anchor_args(tmp_path, w_a.head_json(2))
    anchor_b = anchor_args(tmp_path, w_b.head_json(2))
    off, _, mbase = w_b.seg_range(2)
    if damage == "slot_index":
        struct.pack_into("<I", w_b.buf, off + 48, 3)
    elif damage == "store_uuid":
        w_b.buf[off + 16] ^= 1
    else:
        struct.pack_into("<Q", w_b.buf, off + 40, 5)
        struct.pack_into("<Q", w_b.buf, mbase + 16, 5)
    refit_segment(w_b, 2)
    verdict = {"slot_index": "reordered", "store_uuid": "foreign_segment",
               "commit_id": "crc_mismatch"}[damage]
    for anchor in (anchor_a, anchor_b):
        r = verify(tmp_path, w_b, key, args=anchor)
        assert r.reasons == [None, verdict, None, None] and r.findings == []


# -- third review of format 5 --

def put_bad_blocks(w: Writer, base, slots):
    """bad_block_tbl of one metadata slot replaced by `slots` (reason 1)."""
    for i, slot in enumerate(slots):
        change_meta(w, base, 256 + 16 * i, struct.pack("<IHHQ", slot, 1, 0, 0))
    change_meta(w, base, 176, struct.pack("<I", len(slots)))


def inconsistent_ring_edit(w: Writer, base, edit):
    """Segments 1..3 are in slots 0..2: an edit of one metadata slot that
    breaks section 2's consecutive good slots rule."""
    if edit == "tail_slot":
        change_meta(w, base, 100, struct.pack("<I", 1))     # 1 -> 2 -> 3, not 2
    elif edit == "head_slot":
        change_meta(w, base, 96, struct.pack("<I", 3))
    elif edit == "tail_slot bad":
        put_bad_blocks(w, base, [0])
    elif edit == "head_slot bad":
        put_bad_blocks(w, base, [2])
    elif edit == "bad slot between":
        put_bad_blocks(w, base, [1])                         # 0 -> 2 -> 3, not 2
    else:
        change_meta(w, base, 100, struct.pack("<I", 5))     # 5 -> 0 -> 1, not 2


@pytest.mark.parametrize("edit", ["tail_slot", "head_slot", "tail_slot bad", "head_slot bad",
                                  "bad slot between", "wrapped walk"])
def test_ring_not_in_consecutive_good_slots_makes_the_slot_invalid(tmp_path, edit):
    # Section 2: a non-empty ring's segments fill consecutive good slots:
    # neither tail_slot nor head_slot is in bad_block_tbl, and next()
    # applied head - tail times to tail_slot gives head_slot.  The older
    # slot (the last commit's, clean_flag 0) so edited is not valid: a
    # crc_mismatch finding at its start (the chosen slot is the close's,
    # clean_flag 1).
    w, key = signed_store(n=3)
    base = chosen_base(w)
    other = 4096 - base
    inconsistent_ring_edit(w, other, edit)
    r = verify(tmp_path, w, key)
    assert r.code == 1 and r.findings == [("crc_mismatch", other)]
    assert r.reasons == [None] * 3 and r.notes == []
    detail = [x["detail"] for x in r.lines if x["kind"] == "finding"][0]
    assert "bad_block_tbl" in detail or "head_slot" in detail
    # Both slots so edited: not a store.
    inconsistent_ring_edit(w, base, edit)
    r = verify(tmp_path, w, key)
    assert r.code == 1 and r.summary["reasons"] == ["crc_mismatch", "not_a_store"]
    assert r.findings == [("crc_mismatch", 0), ("crc_mismatch", 4096), ("not_a_store", 0)]
    # Only the chosen slot: the older slot (clean_flag 0) is chosen, and the
    # edit looks like a cut metadata write.
    w, key = signed_store(n=3)
    inconsistent_ring_edit(w, base, edit)
    r = verify(tmp_path, w, key)
    assert r.code == 0 and r.findings == [] and r.reasons == [None] * 3
    assert r.notes == [("torn_metadata_write", 0)]


def test_ring_in_consecutive_good_slots_past_a_bad_slot_and_the_ring_end(tmp_path):
    # next() skips bad_block_tbl slots and wraps: a ring that wrapped past a
    # bad slot is valid, and passes.
    key = Signer("ed25519")
    w = Writer(key, bad=[(4, 1, 0)]).open()
    for _ in range(7):
        w.commit()
    assert (w.tail_slot, w.head_slot, w.tail_id) == (2, 1, 3)  # 2 -> 3 -> 5 -> 0 -> 1
    r = verify(tmp_path, w.close(), key)
    assert r.code == 0 and r.findings == [] and r.reasons == [None] * 5


def test_range_starts_at_the_heads_seal_whatever_head_crc_says(tmp_path):
    # Section 9 item 2: when section 5 chose a slot whose head did not check
    # (here: both slots' head_crc edited, the head segment itself intact),
    # the range starts at segment H's sealed tail as read from head_slot.
    # Both slots also claim tail 2 (in slot 1, still a valid slot): without
    # the head's seal the range would start there.
    w, key = signed_store(n=3)
    for base in (0, 4096):
        head_crc = struct.unpack_from("<I", w.buf, base + 224)[0]
        change_meta(w, base, 224, struct.pack("<I", head_crc ^ 1))
        change_meta(w, base, 100, struct.pack("<IQ", 1, 2))
    base = chosen_base(w)
    r = verify(tmp_path, w, key)
    assert [s["segment_id"] for s in r.segments] == [1, 2, 3]
    assert r.reasons == [None] * 3
    # Item 4: neither slot's head checks (truncated_tail at the head slot),
    # and the head passed, so the metadata is compared with its seal.
    assert r.findings == [("truncated_tail", w.seg_range(3)[0]),
                          ("metadata_mismatch", base + 100), ("metadata_mismatch", base + 104)]
    assert r.notes == []


def downgrade_store(key):
    """Segments 1 and 2 signed, 3 to 8 unsigned in a 6-slot ring: the range
    (3..8) has no signed segment left; the anchor is segment 2's head."""
    w = Writer(key).open()
    w.commit()
    w.commit()
    anchor = w.head_json()
    w.signer, w.epoch = None, 0
    for _ in range(6):
        w.commit()
    assert w.tail_id == 3
    return w.close(), anchor


def test_signed_anchor_that_verifies_forbids_unsigned_segments(tmp_path):
    # Section 9 item 3: sig_alg 0 is `unsigned` even with --allow-unsigned
    # when the anchor is a signed head whose signature verifies with a key
    # given with --trust at its key_epoch: the store signed once.
    key = Signer("ed25519")
    w, anchor = downgrade_store(key)
    r = verify(tmp_path, w, key, args=["--allow-unsigned"])
    assert r.code == 0 and r.reasons == [None] * 6
    r = verify(tmp_path, w, key, args=["--allow-unsigned", *anchor_args(tmp_path, anchor)])
    assert r.code == 1 and r.reasons == ["unsigned"] * 6
    assert r.segments[0]["offset"] == w.seg_range(3)[2]
    code, text = verify(tmp_path, w, key, args=["--allow-unsigned",
                                                *anchor_args(tmp_path, anchor)], json_out=False)
    assert code == 1 and "the anchor is a signed head" in text and "downgrade" in text
    # Nothing passed: no fork judged by segment 3's prev_hash, no finding.
    assert r.findings == []
    # The same key as a key directory at epoch 1: the same.
    r = verify(tmp_path, w, key.key_dir(tmp_path, 1),
               args=["--allow-unsigned", *anchor_args(tmp_path, anchor)])
    assert r.reasons == ["unsigned"] * 6
    # A key directory at epoch 2: the anchor does not verify at its epoch
    # (anchor_bad_signature), so it proves nothing and the segments pass.
    r = verify(tmp_path, w, key.key_dir(tmp_path, 2),
               args=["--allow-unsigned", *anchor_args(tmp_path, anchor)])
    assert r.reasons == [None] * 6 and r.findings == [("anchor_bad_signature", 0)]
    # An anchor signed by a key not given: the same.
    r = verify(tmp_path, w, Signer("ed25519"), key.key_dir(tmp_path, 2),
               args=["--allow-unsigned", *anchor_args(tmp_path, anchor)])
    assert r.reasons == [None] * 6 and r.findings == [("anchor_bad_signature", 0)]
    # A malformed anchor is no signed head: anchor_malformed only.
    r = verify(tmp_path, w, key, args=["--allow-unsigned",
                                       *anchor_args(tmp_path, anchor[:-1])])
    assert r.reasons == [None] * 6 and r.findings == [("anchor_malformed", 0)]


def test_unsigned_anchor_does_not_forbid_unsigned_segments(tmp_path):
    w = Writer(None).open()
    for _ in range(3):
        w.commit()
    w.close()
    r = verify(tmp_path, w, Signer("ed25519"),
               args=["--allow-unsigned", *anchor_args(tmp_path, w.head_json(2))])
    assert r.code == 0 and r.reasons == [None] * 3 and r.findings == []


def test_signed_anchor_forbids_unsigned_segments_before_its_own_too(tmp_path):
    # The rule names no position: with the anchor on segment 3 (signed),
    # the unsigned segments 1 and 2 of the range are `unsigned` as well.
    key = Signer("ed25519")
    w = Writer(None).open()
    w.commit()
    w.commit()
    w.signer, w.epoch = key, 1
    w.commit()
    w.close()
    r = verify(tmp_path, w, key, args=["--allow-unsigned"])
    assert r.code == 0 and r.reasons == [None] * 3
    r = verify(tmp_path, w, key,
               args=["--allow-unsigned", *anchor_args(tmp_path, w.head_json())])
    assert r.reasons == ["unsigned", "unsigned", None] and r.findings == []


@pytest.mark.parametrize("payload", [
    b"not json",
    b'["ring_overwrite"]',
    b' {"reason":"ring_overwrite"}',                    # not a printable payload
    b'{"reason":"ring_overwrite","x":"\x1b"}',          # a raw control character
    b'{"reason":"ring_overwrite"',
    b'{"lost_segment_id":1}',                           # no reason
    b'{"reason":1}',
    b'{"reason":["ring_overwrite"]}',
    b'{"reason":{"ring_overwrite":1}}',
    b'{"reason":"RING_OVERWRITE"}',
    b'{"reason":"backpressure"}',
])
def test_gap_record_that_does_not_parse_or_names_another_reason_is_no_note(tmp_path, payload):
    # Section 9 item 6: "a gap record whose payload does not parse or names
    # another reason is no note".  The segment still passes.
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit(records=[("edgelog", payload, 2), gap_record("uplink_acked", 1),
                      ("temp", b"{}", 1)])
    r = verify(tmp_path, w.close(), key)
    assert r.code == 0 and r.reasons == [None] and r.findings == []
    assert r.notes == [("uplink_acked", 1)]


def test_gap_record_note_needs_only_its_reason(tmp_path):
    # The other keys of a gap payload are not looked at: a printable object
    # naming one of the three reasons is a note of that name.
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit(records=[("edgelog", b'{"reason":"tail_unreadable"}', 2),
                      ("edgelog", b'{"lost_segment_id":"x","reason":"ring_overwrite"}', 2)])
    r = verify(tmp_path, w.close(), key)
    assert r.code == 0 and r.notes == [("tail_unreadable", 1), ("ring_overwrite", 1)]


def anchored_history(key, anchor_sealed=None, third_sealed=None):
    """Segments 1 and 2 (the anchor: segment 2's head, sealing anchor_sealed
    instead), then 3 (sealing third_sealed instead) to 8 in a 6-slot ring:
    the range is 3..8, segment 2 just before it."""
    w = Writer(key).open()
    w.commit()
    w.commit(sealed=anchor_sealed)
    anchor = w.head_json()
    w.commit(sealed=third_sealed)
    for _ in range(5):
        w.commit()
    assert w.tail_id == 3
    return w.close(), anchor


@pytest.mark.parametrize("anchor_sealed, third_sealed", [
    (None, {"records_total": 1}),           # below the anchor's 2
    (None, {"uplink_cursor": 0}),
    (None, {"rollback_ctr": 1, "boot_seq": 0}),
    ({"ring_slots": 7}, None),              # the anchor's ring_slots is 7, segment 3's 6
    ({"mono_hwm": 1000}, None),             # segment 3's first_mono 3 not above 1000
])
def test_first_segment_after_the_anchor_is_checked_against_its_seal(tmp_path, anchor_sealed,
                                                                   third_sealed):
    # Section 9 item 7: when no anchor finding applies, the first segment
    # above the anchor's id that passed is checked by the sequence_regression
    # rules with the anchor's statement as the previous passing segment.
    # Segment 3 is the first of the range: the walk has nothing before it to
    # compare with, and segment 4 does not go backward against it.
    key = Signer("ed25519")
    w, anchor = anchored_history(key, anchor_sealed, third_sealed)
    r = verify(tmp_path, w, key)
    assert r.code == 0 and r.reasons == [None] * 6
    r = verify(tmp_path, w, key, args=anchor_args(tmp_path, anchor))
    assert r.code == 1 and r.reasons == [None] * 6
    assert r.findings == [("sequence_regression", 0)]
    assert r.summary["reasons"] == ["sequence_regression"]
    assert "segment 3" in [x["detail"] for x in r.lines if x["kind"] == "finding"][0]
    # Against an anchor on segment 3 itself (in the range, hashing to it):
    # segment 4, the first above it, goes forward.
    r = verify(tmp_path, w, key, args=anchor_args(tmp_path, w.head_json(3)))
    assert r.code == 0 and r.findings == []


def test_honest_history_after_the_anchor_passes(tmp_path):
    key = Signer("ed25519")
    w, anchor = anchored_history(key)
    r = verify(tmp_path, w, key, args=anchor_args(tmp_path, anchor))
    assert r.code == 0 and r.findings == []


def test_anchor_sequence_check_when_the_anchored_segment_is_unreadable(tmp_path):
    # The anchored segment 2 is in the range but unreadable (crc_mismatch):
    # no fork; segment 3 passed the walk against segment 1 (records_total 1
    # is not below segment 1's 1) but goes backward against the anchor's 2.
    key = Signer("ed25519")
    w = Writer(key).open()
    w.commit()
    w.commit()
    anchor = w.head_json()
    w.commit(sealed={"records_total": 1})
    w.commit()
    w.close()
    change_payload(w, 2)
    r = verify(tmp_path, w, key, args=anchor_args(tmp_path, anchor))
    assert r.reasons == [None, "crc_mismatch", None, None]
    assert r.findings == [("sequence_regression", 0)]


def test_anchor_sequence_check_only_when_no_other_anchor_finding(tmp_path):
    # A fork (the anchored segment rewritten) is the only anchor finding,
    # even when the segment after it also goes backward against the anchor.
    key = Signer("ed25519")
    w_a = Writer(key).open()
    w_a.commit()
    w_a.commit([b'{"t":"a"}'])
    anchor = w_a.head_json()
    w_b = Writer(key).open()
    w_b.commit()
    w_b.commit([b'{"t":"b"}'])
    w_b.commit(sealed={"records_total": 1})
    w_b.commit()
    r = verify(tmp_path, w_b.close(), key, args=anchor_args(tmp_path, anchor))
    assert r.findings == [("fork", 0)]
    # Nothing passed above the anchor's id: no check.
    w, anchor = anchored_history(key, None, {"records_total": 1})
    r = verify(tmp_path, w, key, args=anchor_args(tmp_path, w.head_json()))
    assert r.code == 0 and r.findings == []


def test_json_details_escape_everything_outside_printable_ascii(tmp_path):
    # Section 9 --json: a detail with controls, DEL, non-ASCII, U+2028 and a
    # bidi control is printed with \u escapes only: every byte of the output
    # is printable ASCII or the line's newline, and it reads back the same.
    key = Signer("ed25519")
    w = Writer(key).open()
    text = '{"reason":"torn_segment","x":"\x1b[2J\x07\x7f\u00e9\u2028\u202e\t"}'
    w.commit(records=[("edgelog", text.encode(), 3)])
    out = io.StringIO()
    path = tmp_path / "store.img"
    path.write_bytes(w.close().image())
    assert ver.main(["--device", str(path), "--trust", str(key.trust_file(tmp_path)),
                     "--json"], out=out, err=io.StringIO()) == 0
    raw = out.getvalue()
    assert all(0x20 <= ord(c) <= 0x7E for c in raw.replace("\n", ""))
    assert "\\u001b" in raw and "\\u007f" in raw and "\\u00e9" in raw and "\\u2028" in raw
    assert "\\u202e" in raw and "\\t" in raw
    notes = [json.loads(line) for line in raw.splitlines() if '"kind":"note"' in line]
    assert any(text in n["detail"] for n in notes)
