#!/usr/bin/env python3
"""Independent verifier for edgelog stores (FORMAT.md section 9, format version 5).

Written from docs/FORMAT.md alone, without looking at the Swift sources, so
that it can catch disagreements between the spec and `edgelog verify`.  The
image is parsed by edgelog_decode.py (same directory): one Python view of the
format, so the layouts (the 432-byte commit marker, the 320-byte statement
with its sealed state) and the format_version checks live there and nowhere
here.  A store of an older version has no valid metadata slot (not_a_store),
a segment of another version is crc_mismatch at its header.  Signatures are
checked with the `cryptography` package (Debian python3-cryptography) and
the standard library's hmac.

Usage:
    edgelog_verify.py --device IMAGE --trust KEY [--trust KEY ...]
                      [--anchor HEADFILE] [--allow-fw HEX64 ...]
                      [--allow-unsigned] [--json]

A format 6 image (a valid A.8 metadata slot at offset 0 or 16384) is handed
to edgelog_verify6.py (FORMAT.md appendix A.11), with the same options.

A trust KEY is a key file or a key directory (section 9).  A key file is a
`PUBLIC KEY` PEM (Ed25519 or ECDSA P-256) or an HMAC secret file
(`hmac-key.hex`, section 3.5): the 32-byte secret as 64 hex digits and a
newline (the newline may be missing).  A key file is trusted at epoch 1; a
key directory (key.json beside signing-key.pub.pem or hmac-key.hex) at
key.json's key_epoch.  A key.json that does not parse, a key file of another
algorithm than key.json's alg, or a key whose key_id is not key.json's is a
usage error (exit 2).

Exit codes: 0 the verdict is PASS, 1 FAIL, 2 usage error or a file that
cannot be read.

Hostile input never raises: every walk is bounded by the geometry the
metadata slot was checked against (ring_slots, which the device's size
bounds), a payload is parsed as JSON only when it is a printable payload
(section 7: every value inside at most 63 containers), and the anchor is
never parsed as JSON at all (section 8: its two hex fields are decoded, the
head printed again and compared with the file; at most 4096 bytes of it are
read).

Choices where FORMAT.md leaves room (the most literal reading each time):
- not_a_store (and a newer format version, the verifier has no exit 5) is
  printed as verdict FAIL with reason not_a_store.
- Every finding fails the store; notes never do.  sig_verify is PASS
  exactly when the segment has no reason.
- The range (item 2): H and its slot are section 5's (the last adopted
  segment, else the chosen slot's head).  The range starts at the head
  segment's sealed tail_segment_id T when segment H is valid in that slot
  (with a well-formed seal; when section 5 chose a slot whose head did not
  check, segment H as read from head_slot, whatever head_crc says: its
  body_crc is not compared), at T + 1 when section 5 gave the tail up and
  its tail is T + 1, else at section 5's tail (the chosen slot's, moved by
  adoption and a given-up tail); start is then kept within 1..H (a sealed
  0 is taken as 1, one above H as H, and the head's own checks fail it).
- The metadata check (item 4): "the chosen slot with the adopted segments
  applied" is dec.applied_metadata (section 5 step 3: each adopted segment
  applied as its commit's metadata write would have), compared field by
  field with the head's sealed state; findings in increasing offset order
  (ring_slots at 72, tail_slot at 100, tables_hash at 256).  The expected
  tail_slot is the sealed one, moved on by next(s) (skipping bad_block_tbl
  slots of the chosen slot) when section 5 gave the tail up (it gives up
  one tail at most).  hash_head is compared with the hash of the
  segment the chosen slot names as its own head (before any adoption),
  when that segment passed.
- sequence_regression: a segment without records is not compared by
  first_mono or last_mono (it has no mono_ctr); a ring_slots other than
  the last passing segment's is one.  The downgrade rule counts every
  signature that verified earlier in the range, whatever failed after it,
  and so does the summary's sig_alg.  An anchor that is a well-formed
  signed head (sig_alg not 0) whose signature verifies with a key given
  with --trust at its key_epoch (a key file at 1, a key directory at its
  key.json's; not a key a rotation endorsed) makes every unsigned segment
  of the range `unsigned` even with --allow-unsigned, whatever its id and
  whatever item 7 then says of the anchor (another store's included).
- Beyond the head (item 5) and the anchor (item 7): "a key trusted, at its
  key_epoch, at any point of the walk" is a --trust key or a key a rotation
  endorsed (in a passing segment), at an epoch it was trusted at.  A
  segment beyond the head counts when it is valid for its own header's id
  and slot, of this store (store_uuid) and device (its statement's
  device_id), with an id above H + 1, its hash matching its seal.
- Anchor rollback: only when at least one segment passed (the newest
  passing segment's rollback_ctr); otherwise the next rule (H below the
  anchor's id) decides.
- Anchor fork: the anchored segment is "readable" when its slot in the
  range holds a segment that passes dec.read_segment (header, records,
  marker, body_crc, commit_id = segment_id) and names this store, the
  anchored id and the slot, whatever its seal and its verdict; its
  computed SHA-256 is compared with the anchor's hash_head.
- After the anchor: when no anchor finding applies (an unreadable anchored
  segment included), the first passing segment with an id above the
  anchor's is checked by the sequence_regression rules with the anchor's
  statement as the previous passing segment: its first_mono (when it has
  records) above the anchor's sealed mono_hwm, none of its sealed counters
  or tail_segment_id below the anchor's, its ring_slots the anchor's (the
  rules about its own records and tail were checked by the walk, and the
  anchor carries no records).  A hit is one finding sequence_regression
  at offset 0; no passing segment above the anchor, no check.
- crc_mismatch offsets (item 3) come from dec.read_segment's range_start:
  the slot's start for the header, slot offset 60 for a payload_len that
  overruns, the first record that does not parse (or has a seq or mono_ctr
  of 2^62 or more, or a mono_ctr not above the one before it), else the
  commit marker's start.
- Evidence notes: every incomplete (type 3) and recovery (type 5) record of
  a passing segment is a note power_cut_explained with the id of the
  segment holding it; a gap record of a passing segment whose payload is a
  printable object with reason ring_overwrite, uplink_acked or
  tail_unreadable is a note of that name, any other gap record no note
  ("a gap record whose payload does not parse or names another reason is
  no note": a payload that is not a printable JSON object does not parse;
  a reason missing, not a string or another string names another reason;
  the other keys are not looked at, so null counts still make a note).
- A rotation retires the old key: "every later segment is signed by the new
  one" (section 4), so a later segment signed by the old key is unknown_key.
- Findings come in the order of the items: 1 (slot A, then B), 2 (the
  range cut), 4 (hash_mismatch of hash_head, truncated_tail, then the
  metadata_mismatch findings by offset), 5 (by slot), 6, 7 (the anchor).
  Notes: torn_metadata_write, not_retained, the notes of the segments'
  records in walk order, torn_tail_power_cut, truncation_not_excluded.
- A torn segment (item 6) is one in the slot where the forward scan
  stopped whose header is valid for the id and the slot expected there,
  whose prev_crc is the head's body_crc (the last adopted segment's, else
  the chosen slot's head_crc), and which is not valid.
- The text output escapes every byte outside 0x20..0x7E of a detail (and of
  the image name) as \\xNN; --json escapes every character of a detail
  outside printable ASCII as \\uXXXX (json.dumps ensure_ascii; control
  characters as \\n, \\t and so on).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import edgelog_decode as dec  # noqa: E402  (needs the path above)

try:
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, utils
except ImportError:  # pragma: no cover - depends on the machine
    sys.stderr.write("edgelog_verify: needs the Python 'cryptography' package "
                     "(Debian: apt-get install python3-cryptography)\n")
    sys.exit(2)

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_USAGE = 2

ALG_ED25519, ALG_ECDSA, ALG_HMAC = 1, 2, 3
ALG_BY_NAME = {name: num for num, name in dec.SIG_ALG_NAMES.items()}
HMAC_KEY_ID_PREFIX = b"EDGELOG-HMAC-KEY-ID"
ROTATION_MAGIC = b"EDGEROT1"
ROTATION_SIZE = 104
HEX64 = re.compile(r"[0-9a-fA-F]{64}")
HEX_BYTES = re.compile(r"(?:[0-9a-fA-F]{2})*")


class UsageError(Exception):
    """Bad arguments or a file that cannot be read: exit 2."""


# ---------------------------------------------------------------------------
# Keys (section 3.5)
# ---------------------------------------------------------------------------

@dataclass
class Key:
    alg: int                 # ALG_ED25519, ALG_ECDSA or ALG_HMAC
    key_id: bytes
    public: object = None    # Ed25519PublicKey / EllipticCurvePublicKey
    secret: bytes = b""      # HMAC secret (the 32 bytes the 64 hex digits stand for)
    origin: str = ""         # where it came from, for messages
    epoch: int = 1           # the epoch a --trust key is trusted at (section 9)


def spki_der(public) -> bytes:
    return public.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id_of_public(public) -> bytes:
    # First 16 bytes of SHA-256 of the DER SubjectPublicKeyInfo.
    return hashlib.sha256(spki_der(public)).digest()[:16]


def key_id_of_secret(secret: bytes) -> bytes:
    return hashlib.sha256(HMAC_KEY_ID_PREFIX + secret).digest()[:16]


def public_key(public, origin: str) -> Key:
    """A Key from a loaded public key, refusing anything but Ed25519 and P-256."""
    if isinstance(public, ed25519.Ed25519PublicKey):
        return Key(ALG_ED25519, key_id_of_public(public), public=public, origin=origin)
    if isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1":
        return Key(ALG_ECDSA, key_id_of_public(public), public=public, origin=origin)
    raise ValueError("not an Ed25519 or ECDSA P-256 public key")


KEY_DIR_JSON = "key.json"
KEY_DIR_PUBLIC = "signing-key.pub.pem"
KEY_DIR_HMAC = "hmac-key.hex"
HEX32 = re.compile(r"[0-9a-fA-F]{32}")


def load_trust_key(path: str) -> Key:
    """A --trust argument: a key directory, else a key file (epoch 1)."""
    if Path(path).is_dir():
        return load_key_dir(path)
    return load_key_file(path)


def load_key_dir(path: str) -> Key:
    """A key directory (section 9): the key beside key.json, trusted at
    key.json's key_epoch; its key_id must be key.json's."""
    directory = Path(path)
    json_path = directory / KEY_DIR_JSON
    try:
        data = json_path.read_bytes()
    except OSError as exc:
        raise UsageError(f"trust key directory {path}: cannot read {KEY_DIR_JSON}: "
                         f"{exc.strerror}") from exc
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"trust key directory {path}: {KEY_DIR_JSON} is not JSON") from exc
    if not isinstance(obj, dict):
        raise UsageError(f"trust key directory {path}: {KEY_DIR_JSON} is not a JSON object")
    alg = obj.get("alg")
    if alg not in ("ed25519", "ecdsa-p256", "hmac-sha256"):
        raise UsageError(f"trust key directory {path}: {KEY_DIR_JSON} alg {alg!r} is not "
                         "ed25519, ecdsa-p256 or hmac-sha256")
    epoch = obj.get("key_epoch")
    if type(epoch) is not int or not 1 <= epoch < 2**32:
        raise UsageError(f"trust key directory {path}: {KEY_DIR_JSON} key_epoch {epoch!r} "
                         "is not an integer from 1 to 2^32 - 1")
    key_id_hex = obj.get("key_id")
    if not isinstance(key_id_hex, str) or not HEX32.fullmatch(key_id_hex):
        raise UsageError(f"trust key directory {path}: {KEY_DIR_JSON} key_id "
                         f"{key_id_hex!r} is not 32 hex digits")
    key_file = directory / (KEY_DIR_HMAC if alg == "hmac-sha256" else KEY_DIR_PUBLIC)
    if not key_file.is_file():
        raise UsageError(f"trust key directory {path}: no {key_file.name} beside "
                         f"{KEY_DIR_JSON} (alg {alg})")
    key = load_key_file(str(key_file))
    if key.alg != ALG_BY_NAME[alg]:
        raise UsageError(f"trust key directory {path}: {key_file.name} is an "
                         f"{dec.SIG_ALG_NAMES[key.alg]} key, {KEY_DIR_JSON} says {alg}")
    if key.key_id != bytes.fromhex(key_id_hex):
        raise UsageError(f"trust key directory {path}: {KEY_DIR_JSON} key_id "
                         f"{key_id_hex.lower()} is not the key_id of {key_file.name} "
                         f"({key.key_id.hex()})")
    key.epoch = epoch
    key.origin = str(path)
    return key


def load_key_file(path: str) -> Key:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read trust key {path}: {exc.strerror}") from exc
    if b"-----BEGIN PUBLIC KEY-----" in data:
        try:
            return public_key(serialization.load_pem_public_key(data), path)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise UsageError(f"trust key {path}: {exc}") from exc
    # An HMAC secret file: exactly 64 hex digits, optionally one newline.
    text = data[:-1] if data.endswith(b"\n") else data
    if HEX64.fullmatch(text.decode("ascii", "replace")):
        secret = bytes.fromhex(text.decode("ascii"))
        return Key(ALG_HMAC, key_id_of_secret(secret), secret=secret, origin=path)
    raise UsageError(f"trust key {path}: neither a PUBLIC KEY PEM nor 64 hex digits")


def signature_verifies(key: Key, alg: int, message: bytes, signature: bytes) -> bool:
    """The signature rules of section 3.5 (statements and endorsements alike)."""
    if key.alg != alg:
        return False  # a key of one algorithm never verifies another's signature
    try:
        if alg == ALG_ED25519:
            if len(signature) != 64:
                return False
            key.public.verify(signature, message)
            return True
        if alg == ALG_ECDSA:
            # Stored as r || s (32 bytes each, big-endian); the library wants DER.
            if len(signature) != 64:
                return False
            r = int.from_bytes(signature[:32], "big")
            s = int.from_bytes(signature[32:], "big")
            key.public.verify(utils.encode_dss_signature(r, s), message,
                              ec.ECDSA(hashes.SHA256()))
            return True
        if alg == ALG_HMAC:
            mac = hmac.new(key.secret, message, hashlib.sha256).digest()
            return hmac.compare_digest(mac, signature)
    except (InvalidSignature, ValueError):
        return False
    return False


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

@dataclass
class SegmentLine:
    segment_id: int
    slot: int
    offset: int
    sig_verify: bool = False
    reason: str | None = None
    key_epoch: int = 0
    failed: bool = False
    detail: str = ""
    verified: bool = False   # its signature verified (whatever failed after)


@dataclass
class Finding:
    reason: str
    offset: int
    detail: str


@dataclass
class Note:
    note: str
    segment_id: int
    detail: str


@dataclass
class Report:
    segments: list[SegmentLine] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    # sig_alg of each segment whose signature verified, in walk order.
    verified_algs: list[int] = field(default_factory=list)

    def finding(self, reason: str, offset: int, detail: str) -> None:
        self.findings.append(Finding(reason, offset, detail))

    def note(self, note: str, segment_id: int, detail: str) -> None:
        self.notes.append(Note(note, segment_id, detail))

    @property
    def reasons(self) -> list[str]:
        codes = {s.reason for s in self.segments if s.failed}
        codes |= {f.reason for f in self.findings}  # every finding fails the store
        return sorted(codes)

    @property
    def verdict(self) -> str:
        return "FAIL" if self.reasons else "PASS"

    @property
    def signed(self) -> bool:
        # "signed is true when at least one segment passed and the signature
        # of every segment that passed verified".
        passed = [s for s in self.segments if not s.failed]
        return bool(passed) and all(s.verified for s in passed)

    @property
    def sig_alg(self) -> str:
        # "the algorithm of the last signature that verified, unsigned when
        # none did" (a rotation may change it).
        if not self.verified_algs:
            return "unsigned"
        return dec.SIG_ALG_NAMES.get(self.verified_algs[-1], str(self.verified_algs[-1]))


# ---------------------------------------------------------------------------
# Key rotation (section 4, type 8)
# ---------------------------------------------------------------------------

def endorsement_bytes(device_id: bytes, old_key_id: bytes, old_epoch: int, new_epoch: int,
                      new_alg: int, new_key_id: bytes, new_spki: bytes) -> bytes:
    spki_hash = hashlib.sha256(new_spki).digest() if new_spki else bytes(32)
    data = struct.pack("<8s16s16sIIB7x16s32s", ROTATION_MAGIC, device_id, old_key_id,
                       old_epoch, new_epoch, new_alg, new_key_id, spki_hash)
    assert len(data) == ROTATION_SIZE
    return data


@dataclass
class Rotation:
    new_key_id: bytes
    new_epoch: int
    new_key: Key | None  # None: an HMAC key whose secret was not given with --trust


def payload_object(payload: bytes) -> dict | None:
    """The JSON object of a printable payload (section 7), else None.  Only a
    printable payload is handed to json.loads: it nests at most 64 deep (63
    containers around any value), so a hostile payload never reaches the
    parser's recursion."""
    if not dec.is_printable_payload(payload):
        return None
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def check_rotation(payload: bytes, seal: dec.Seal, signer: Key | None, device_id: bytes,
                   trust_keys: list[Key]) -> Rotation | str:
    """Check one key_rotation record of a segment that passed: the Rotation
    when its endorsement verifies, else why not."""
    obj = payload_object(payload)
    if obj is None:
        return "key_rotation record is not a printable JSON object"
    try:
        old_key_id = bytes.fromhex(obj["old_key_id"])
        old_epoch = obj["old_epoch"]
        new_key_id = bytes.fromhex(obj["new_key_id"])
        new_epoch = obj["new_epoch"]
        new_alg = ALG_BY_NAME[obj["new_alg"]]
        new_spki = bytes.fromhex(obj["new_public_key"])
        endorsement = bytes.fromhex(obj["endorsement"])
    except (ValueError, KeyError, TypeError) as exc:
        return f"key_rotation record does not parse ({exc.__class__.__name__})"
    if not (type(old_epoch) is int and type(new_epoch) is int
            and 0 <= old_epoch < 2**32 and 0 <= new_epoch < 2**32
            and len(old_key_id) == 16 and len(new_key_id) == 16 and new_alg != 0):
        return "key_rotation record has a field out of range"
    if signer is None:
        return "key_rotation in an unsigned segment: nothing endorses it"
    # The endorsement is the old key's: the record must name the key and the
    # epoch that signed this segment, and move to the next epoch.
    if old_key_id != seal.key_id or old_epoch != seal.key_epoch:
        return "key_rotation names an old key other than the segment's signer"
    if new_epoch != old_epoch + 1:
        return f"key_rotation new_epoch {new_epoch} is not old_epoch + 1"
    message = endorsement_bytes(device_id, old_key_id, old_epoch, new_epoch, new_alg,
                                new_key_id, new_spki)
    if not signature_verifies(signer, signer.alg, message, endorsement):
        return "key_rotation endorsement does not verify with the segment's key"
    if new_alg == ALG_HMAC:
        # No public key to carry: the secret must have been given with --trust.
        if new_spki:
            return "key_rotation to HMAC carries a public key"
        for key in trust_keys:
            if key.alg == ALG_HMAC and key.key_id == new_key_id:
                return Rotation(new_key_id, new_epoch, key)
        return Rotation(new_key_id, new_epoch, None)
    try:
        new_key = public_key(serialization.load_der_public_key(new_spki), "rotation record")
    except (ValueError, UnsupportedAlgorithm):
        return "key_rotation new_public_key is not an Ed25519 or P-256 key"
    if new_key.alg != new_alg or new_key.key_id != new_key_id:
        return "key_rotation new_key_id or new_alg does not match new_public_key"
    return Rotation(new_key_id, new_epoch, new_key)


# ---------------------------------------------------------------------------
# Trust (section 9: the keys given and every key a rotation endorsed)
# ---------------------------------------------------------------------------

@dataclass
class Trust:
    """Which keys are trusted at this point of the walk, at which epochs, and
    which were trusted at any point of it."""
    given: list[Key]                                    # the --trust keys
    # key_id -> (key, the epochs it is trusted at)
    active: dict[bytes, tuple[Key, frozenset[int]]] = field(default_factory=dict)
    ever: dict[bytes, tuple[Key, frozenset[int]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in self.given:
            # "a key file is a key of epoch 1; a key directory is a key of
            # the key_epoch its key.json names"
            self.trust(key.key_id, key, frozenset({key.epoch}))

    def trust(self, key_id: bytes, key: Key, epochs: frozenset[int]) -> None:
        trusted, old = self.active.get(key_id, (key, frozenset()))
        self.active[key_id] = (trusted, old | epochs)
        trusted, old = self.ever.get(key_id, (key, frozenset()))
        self.ever[key_id] = (trusted, old | epochs)

    def verifies_ever(self, st: dec.Seal, signature: bytes) -> bool:
        """The statement's signature verifies with a key trusted, at the
        statement's key_epoch, at some point of the walk."""
        entry = self.ever.get(st.key_id)
        if entry is None or st.key_epoch not in entry[1]:
            return False
        return signature_verifies(entry[0], st.sig_alg, st.statement, signature)


# ---------------------------------------------------------------------------
# The walk over the range (section 9, items 2 and 3)
# ---------------------------------------------------------------------------

def sequence_problem(seg: dec.Segment, e: int, prev: dec.Seal | None, prev_name: str,
                     seq_high: dict[bytes, int]) -> str | None:
    """Section 9 item 3, sequence_regression: the sealed state goes backward
    against the last segment that passed before it (prev, its statement;
    prev_name names it in the detail), or a record repeats an order.  A
    segment without records has no mono_ctr to compare (its first_mono and
    last_mono are not a record's).  Item 7 passes the anchor's statement as
    prev."""
    st = seg.seal
    if prev is not None:
        if seg.record_count and seg.first_mono <= prev.mono_hwm:
            return (f"first_mono {seg.first_mono} is not above {prev_name}'s "
                    f"sealed mono_hwm {prev.mono_hwm}")
        for name in ("records_total", "lost_total", "dropped_total", "wrap_count",
                     "unexp_rst", "bo_event", "ecc_err_cnt", "clock_steps", "boot_seq",
                     "uplink_cursor", "tail_segment_id"):
            if getattr(st, name) < getattr(prev, name):
                return (f"sealed {name} {getattr(st, name)} is below {prev_name}'s "
                        f"{getattr(prev, name)}")
        # The ring never changes size: ring_slots is the same in every seal.
        if st.ring_slots != prev.ring_slots:
            return (f"sealed ring_slots {st.ring_slots} is not {prev_name}'s "
                    f"{prev.ring_slots}")
    if seg.record_count and st.mono_hwm < seg.last_mono:
        return f"sealed mono_hwm {st.mono_hwm} is below last_mono {seg.last_mono}"
    if st.tail_segment_id > e:
        return f"sealed tail_segment_id {st.tail_segment_id} is above the segment's id {e}"
    own: dict[bytes, int] = {}
    for rec in seg.records:
        high = own.get(rec.source, seq_high.get(rec.source))
        if high is not None and rec.seq <= high:
            return (f"record seq {rec.seq} of source {rec.source.decode('ascii')} is not "
                    f"above {high}")
        own[rec.source] = rec.seq
    return None


class Walker:
    def __init__(self, store: dec.Store, meta: dec.Metadata, trust: Trust,
                 allow_fw: set[bytes] | None, allow_unsigned: bool, report: Report,
                 signed_anchor: bool = False):
        self.store, self.meta, self.trust = store, meta, trust
        self.allow_fw, self.allow_unsigned, self.report = allow_fw, allow_unsigned, report
        # The anchor is a signed head whose signature verifies with a
        # --trust key at its key_epoch: the store signed once (item 3).
        self.signed_anchor = signed_anchor
        # Hash of segment id -> the value its successor's prev_hash must hold:
        # computed when it passed its hash check, else what its seal claims.
        self.chain_hash: dict[int, bytes] = {}
        self.last_passed: dec.Segment | None = None  # rollback and sealed state
        self.seq_high: dict[bytes, int] = {}         # source -> highest seq that passed
        self.any_verified = False                    # a signature of the range verified
        self.passed: dict[int, dec.Segment] = {}     # segment id -> segment that passed
        self.endorsed_without_secret: set[bytes] = set()

    def walk(self, plan: list[tuple[int, int | None]]) -> None:
        """plan: (expected id, slot or None when no slot is left), in id order."""
        for e, slot in plan:
            if slot is None:
                line = SegmentLine(segment_id=e, slot=0, offset=0, reason="gap", failed=True,
                                   detail="no ring slot is left for this id")
                self.report.segments.append(line)
                continue
            line, seg = self.check(slot, e)
            self.report.segments.append(line)
            if seg is not None and not line.failed:
                self.passed[e] = seg
                self.last_passed = seg
                for rec in seg.records:
                    self.seq_high[rec.source] = max(rec.seq, self.seq_high.get(rec.source, 0))
                self.list_evidence(seg)

    def check(self, slot: int, e: int) -> tuple[SegmentLine, dec.Segment | None]:
        """One segment, reasons in the order of section 9 item 3: the first
        that applies is its reason.

        The line's fields as section 9's --json paragraph pins them:
        segment_id is always the expected id e, whatever the slot holds;
        offset is the slot's start, except for crc_mismatch (the first
        failing byte range) and the reasons read from the seal
        (seal_mismatch, foreign_segment by device_id, unsigned, unknown_key,
        bad_signature, fw_not_allowed, rollback, sequence_regression): the
        commit marker's start; key_epoch is the statement's for PASS and the
        reasons from foreign_segment by device_id on (seal_mismatch aside),
        else 0."""
        meta = self.meta
        base = meta.slot_offset(slot)
        line = SegmentLine(segment_id=e, slot=slot, offset=base)

        def fail(reason: str, detail: str, offset: int | None = None):
            # "a segment to which none applies is PASS, any other FAIL".
            line.reason, line.failed, line.detail = reason, True, detail
            line.sig_verify = False
            if offset is not None:
                line.offset = offset
            return line, None

        if not dec.slot_has_header_magic(self.store, meta, slot):
            return fail("gap", "no segment header in the slot (deleted)")
        try:
            seg = dec.read_segment(self.store, meta, slot)
        except dec.DecodeError as exc:
            return fail("crc_mismatch", f"{exc.reason} (at offset {exc.offset})",
                        exc.range_start)
        seal = seg.seal
        marker = seg.marker_offset  # where the reasons read from the seal point

        if seg.store_uuid != meta.store_uuid:
            return fail("foreign_segment", "store_uuid is not this store's")
        if seal.magic == dec.STATEMENT_MAGIC and seal.device_id != meta.device_id:
            line.key_epoch = seal.key_epoch
            return fail("foreign_segment", "statement device_id is not this store's", marker)
        if seg.segment_id != e or seg.slot_index != slot:
            detail = (f"segment {seg.segment_id} written for slot {seg.slot_index}, "
                      f"expected segment {e} in slot {slot}")
            if seg.slot_index != slot:
                return fail("reordered", detail)
            return fail("gap" if seg.segment_id > e else "chain_break", detail)
        problem = dec.seal_problem(seg)
        if problem is not None:
            return fail("seal_mismatch", problem, marker)
        line.key_epoch = seal.key_epoch  # the seal is read

        if seg.computed_hash != seal.segment_hash:
            # One damaged segment fails once: its successor is checked
            # against the hash its seal claims.
            self.chain_hash[e] = seal.segment_hash
            return fail("hash_mismatch", "SHA-256 of header and records is not the "
                        "seal's segment_hash")
        self.chain_hash[e] = seg.computed_hash
        if e == 1:
            if seg.prev_hash != dec.ZERO_HASH:
                return fail("chain_break", "segment 1 has a non-zero prev_hash")
        elif e - 1 in self.chain_hash and seg.prev_hash != self.chain_hash[e - 1]:
            return fail("chain_break", f"prev_hash is not the hash of segment {e - 1}")
        # (No entry for e - 1: unreadable or outside the range, no check.)

        key: Key | None = None
        if seal.sig_alg == 0:
            if not self.allow_unsigned:
                return fail("unsigned", "segment is not signed", marker)
            if self.any_verified:
                return fail("unsigned", "segment is not signed after a segment whose "
                            "signature verified (a downgrade)", marker)
            if self.signed_anchor:
                return fail("unsigned", "segment is not signed, and the anchor is a signed "
                            "head that verifies with a --trust key (a downgrade)", marker)
        else:
            trusted = self.trust.active.get(seal.key_id)
            if trusted is None:
                why = (" (an endorsed HMAC key: give its secret with --trust)"
                       if seal.key_id in self.endorsed_without_secret else "")
                return fail("unknown_key",
                            f"key_id {seal.key_id.hex()} is not trusted here{why}", marker)
            key, epochs = trusted
            if seal.key_epoch not in epochs:
                at = ", ".join(str(n) for n in sorted(epochs))
                return fail("unknown_key", f"key_epoch {seal.key_epoch}, the trusted key "
                            f"{seal.key_id.hex()} is at epoch {at}", marker)
            if not signature_verifies(key, seal.sig_alg, seal.statement, seal.signature):
                return fail("bad_signature", "the statement's signature does not verify",
                            marker)
            # The summary's sig_alg and the downgrade rule count every
            # signature that verified, whatever fails after it.
            self.report.verified_algs.append(seal.sig_alg)
            self.any_verified = True
            line.verified = True
        last = self.last_passed
        if self.allow_fw is not None and seal.fw_ver_hash not in self.allow_fw:
            return fail("fw_not_allowed", f"fw_ver_hash {seal.fw_ver_hash.hex()} "
                        "is not in --allow-fw", marker)
        if last is not None and seal.rollback_ctr < last.seal.rollback_ctr:
            return fail("rollback", f"rollback_ctr {seal.rollback_ctr} is below segment "
                        f"{last.segment_id}'s {last.seal.rollback_ctr}", marker)
        problem = sequence_problem(seg, e, None if last is None else last.seal,
                                   "" if last is None else f"segment {last.segment_id}",
                                   self.seq_high)
        if problem is not None:
            return fail("sequence_regression", problem, marker)
        # No reason applies: PASS (unless an endorsement in it fails, below).
        line.sig_verify = True
        self.rotations(seg, key, line)
        return line, seg

    def rotations(self, seg: dec.Segment, signer: Key | None, line: SegmentLine) -> None:
        """Key rotation records of a segment that passed: their keys count
        from the next segment on; one endorsement that does not verify fails
        the segment (bad_signature) and adds nothing."""
        added: list[Rotation] = []
        for rec in seg.records:
            if rec.type != dec.TYPE_KEY_ROTATION:
                continue
            rotation = check_rotation(rec.payload, seg.seal, signer, self.meta.device_id,
                                      self.trust.given)
            if isinstance(rotation, str):
                # bad_signature is one of the reasons whose line points at
                # the commit marker.
                line.reason, line.failed, line.sig_verify = "bad_signature", True, False
                line.detail, line.offset = rotation, seg.marker_offset
                return
            added.append(rotation)
        for rotation in added:
            # The old key is retired: every later segment is the new key's.
            self.trust.active.pop(seg.seal.key_id, None)
            if rotation.new_key is None:
                # An endorsed HMAC key whose secret was not given: segments
                # signed by it cannot be checked (unknown_key, detail says why).
                self.endorsed_without_secret.add(rotation.new_key_id)
                continue
            self.trust.trust(rotation.new_key_id, rotation.new_key,
                             frozenset({rotation.new_epoch}))

    def list_evidence(self, seg: dec.Segment) -> None:
        """Section 9 item 6: evidence records of a segment that passed become
        notes, named by the segment that holds the record: every incomplete
        (type 3) and recovery (type 5) record a power_cut_explained note, and
        every gap record a note named by its reason; a gap record whose
        payload does not parse (not a printable JSON object) or names
        another reason is no note."""
        for rec in seg.records:
            if rec.type not in (dec.TYPE_GAP, dec.TYPE_INCOMPLETE, dec.TYPE_RECOVERY):
                continue
            text = rec.payload.decode("utf-8", "replace")
            if rec.type == dec.TYPE_GAP:
                obj = payload_object(rec.payload)
                code = None if obj is None else obj.get("reason")
                if not isinstance(code, str) or code not in GAP_REASONS:
                    continue  # does not parse, or names another reason: no note
                self.report.note(code, seg.segment_id,
                                 f"gap record in segment {seg.segment_id}: {text}")
            else:
                kind = "incomplete" if rec.type == dec.TYPE_INCOMPLETE else "recovery"
                self.report.note("power_cut_explained", seg.segment_id, f"{kind} record: {text}")


GAP_REASONS = ("ring_overwrite", "uplink_acked", "tail_unreadable")


# ---------------------------------------------------------------------------
# The signed head and the anchor (sections 8 and 9, item 7)
# ---------------------------------------------------------------------------

ANCHOR_MAX = 4096  # a signed head is under 1,500 bytes; anything longer is malformed
_HEX_FIELD = {name: re.compile(rb'"%s":"([0-9a-f]{0,%d})"' % (name, limit))
              for name, limit in ((b"statement", 2 * dec.STATEMENT_SIZE),
                                  (b"signature", 2 * dec.SIG_MAX))}


def render_head(statement: bytes, signature: bytes) -> bytes:
    """The signed head line of section 8 for a statement and its signature."""
    st = dec.parse_seal(statement + bytes(dec.SEAL_AREA - dec.STATEMENT_SIZE))
    return ('{"format":"edgelog-head","version":2,"device_id":"%s","store_uuid":"%s",'
            '"segment_id":%d,"commit_id":%d,"hash_head":"%s","rollback_ctr":%d,'
            '"tail_segment_id":%d,"key_epoch":%d,"key_id":"%s","sig_alg":"%s",'
            '"statement":"%s","signature":"%s"}\n'
            % (st.device_id.hex(), st.store_uuid.hex(), st.segment_id, st.commit_id,
               st.segment_hash.hex(), st.rollback_ctr, st.tail_segment_id, st.key_epoch,
               st.key_id.hex(), dec.SIG_ALG_NAMES[st.sig_alg], statement.hex(),
               signature.hex())).encode()


@dataclass
class Anchor:
    statement: dec.Seal  # the statement fields (parse_seal of the 320 bytes)
    signature: bytes


def parse_anchor(data: bytes) -> Anchor | str:
    """An anchor file of exactly one well-formed signed head (section 8), or
    why not.  Nothing but the two hex fields is interpreted: the head is
    printed again from them and must be the file, byte for byte."""
    if len(data) > ANCHOR_MAX:
        return f"more than {ANCHOR_MAX} bytes"
    raw = {}
    for name, pattern in _HEX_FIELD.items():
        m = pattern.search(data)
        if m is None or len(m.group(1)) % 2:
            return f"no lowercase hex {name.decode()} field"
        raw[name] = bytes.fromhex(m.group(1).decode("ascii"))
    statement, signature = raw[b"statement"], raw[b"signature"]
    if len(statement) != dec.STATEMENT_SIZE:
        return f"statement is {len(statement)} bytes, not {dec.STATEMENT_SIZE}"
    st = dec.parse_seal(statement + bytes(dec.SEAL_AREA - dec.STATEMENT_SIZE))
    problem = dec.statement_problem(st)
    if problem is not None:
        return problem
    if len(signature) != st.sig_len:
        return f"signature is {len(signature)} bytes, the statement's sig_len is {st.sig_len}"
    if render_head(statement, signature) != data:
        return ("not exactly the signed head its statement and signature print (one line, "
                "keys in order, no spaces, lowercase hex, a final newline)")
    return Anchor(statement=st, signature=signature)


# ---------------------------------------------------------------------------
# Putting it together
# ---------------------------------------------------------------------------

# Item 4: the metadata fields checked against the head's sealed state, in
# increasing offset order (the order of the findings): (name, offset in the
# slot, rule).  "tables" is tables_hash computed from the metadata.
METADATA_CHECKS = (("ring_slots", 72, "eq"), ("tail_slot", 100, "eq"),
                   ("tail_segment_id", 104, "eq"), ("wrap_count", 112, "eq"),
                   ("unexp_rst", 120, "ge"), ("bo_event", 124, "eq"),
                   ("ecc_err_cnt", 128, "ge"), ("mono_hwm", 136, "eq"),
                   ("uplink_cursor", 144, "ge"), ("records_total", 152, "eq"),
                   ("dropped_total", 160, "eq"), ("lost_total", 168, "eq"),
                   ("tables", 256, "eq"), ("rollback_ctr", 2832, "ge"),
                   ("key_id", 2872, "eq"), ("key_epoch", 2888, "eq"),
                   ("sig_alg", 2892, "eq"), ("key_src", 2893, "eq"),
                   ("boot_seq", 2912, "ge"), ("clock_steps", 2916, "eq"))
assert [c[1] for c in METADATA_CHECKS] == sorted(c[1] for c in METADATA_CHECKS)


@dataclass
class Range:
    head_id: int                  # H
    head_slot: int
    start: int
    plan: list[tuple[int, int | None]]  # (id, slot), start..H
    head: dec.Segment | None      # segment H, when valid with a well-formed seal
    given_up_start: bool          # start is T + 1 because section 5 gave the tail up


def plan_range(store: dec.Store, result: dec.ScanResult, report: Report) -> Range:
    """Section 9 item 2: which ids are checked, and in which slots."""
    meta = result.meta
    if result.adopted:
        head_id, head_slot = result.last_segment_id, result.last_slot
    else:
        head_id, head_slot = meta.head_segment_id, meta.head_slot
    head = None
    if head_id > 0:
        try:
            head = dec.parse_segment(store, meta, head_slot, head_id)
        except dec.DecodeError:
            head = None
    given_up_start = False
    if head is not None:
        sealed_tail = head.seal.tail_segment_id
        start = sealed_tail
        if result.given_up is not None and result.tail_segment_id == sealed_tail + 1:
            start, given_up_start = sealed_tail + 1, True
    else:
        start = result.tail_segment_id
    # "start is then kept within 1 .. H (a sealed 0, or one above H, is taken
    # as 1 or H; the segment's own checks then fail it)".  With H = 0 (nothing
    # committed, nothing adopted) the range is empty and start stays 1.
    start = max(1, min(start, head_id))
    good = meta.ring_slots - meta.bad_block_count
    if head_id >= start and head_id - start + 1 > good:
        cut = head_id - good + 1
        report.finding("metadata_mismatch", meta.base + dec.TAIL_OFFSET,
                       f"the range {start}..{head_id} is longer than the {good} good ring "
                       f"slots: cut to {cut}..{head_id}")
        start = cut
    slots: dict[int, int | None] = {}
    used: set[int] = set()
    slot: int | None = head_slot
    for e in range(head_id, start - 1, -1):
        if e != head_id and slot is not None:
            slot = dec.prev_slot(meta, slot)
            if slot in used:
                slot = None  # the walk came round: no slot left for this id
        if slot is not None:
            used.add(slot)
        slots[e] = slot
    plan = [(e, slots[e]) for e in range(start, head_id + 1)]
    return Range(head_id, head_slot, start, plan, head, given_up_start)


def check_metadata(meta: dec.Metadata, result: dec.ScanResult, rng: Range,
                   head: dec.Segment, report: Report) -> None:
    """Section 9 item 4: the metadata of section 5 (the chosen slot with the
    adopted segments applied, dec.applied_metadata) against the head's
    sealed state, one metadata_mismatch per field that does not agree, in
    increasing offset order, at the chosen slot's offset plus the field's.
    An adopted segment whose sealed state is not what applying it computes
    is so reported."""
    st = head.seal
    applied = dec.applied_metadata(result)
    given_up = result.given_up is not None
    expected_tail = st.tail_segment_id + (1 if given_up else 0)
    # The sealed tail_slot moved on by one good slot (next(s): skipping
    # bad_block_tbl slots) per tail given up; section 5 gives up one at most.
    expected_tail_slot = dec.next_slot(applied, st.tail_slot) if given_up else st.tail_slot
    values = {"tail_segment_id": (applied.tail_segment_id, expected_tail),
              "tail_slot": (applied.tail_slot, expected_tail_slot)}
    for name in ("ring_slots", "mono_hwm", "records_total", "lost_total", "dropped_total",
                 "wrap_count", "bo_event", "clock_steps", "key_epoch", "sig_alg",
                 "key_src", "unexp_rst", "ecc_err_cnt", "boot_seq", "uplink_cursor",
                 "rollback_ctr"):
        values[name] = (getattr(applied, name), getattr(st, name))
    values["tables"] = (applied.tables_hash().hex(), st.tables_hash.hex())
    values["key_id"] = (applied.key_id.hex(), st.key_id.hex())
    for name, offset, rule in METADATA_CHECKS:
        have, sealed = values[name]
        if (have != sealed) if rule == "eq" else (have < sealed):
            relation = "is not" if rule == "eq" else "is below"
            label = "tables_hash" if name == "tables" else name
            report.finding("metadata_mismatch", meta.base + offset,
                           f"metadata slot {meta.slot_name} {label} {have} {relation} the "
                           f"head segment {rng.head_id}'s sealed {sealed}")


def beyond_the_head(store: dec.Store, meta: dec.Metadata, rng: Range, trust: Trust,
                    allow_unsigned: bool, report: Report) -> None:
    """Section 9 item 5: a valid, signed segment of this store above H + 1 in
    a ring slot outside the range means the newest history was cut away (a
    cut or retried commit can leave a valid, never acknowledged copy of
    segment H + 1; two beyond the head cannot come from a power cut)."""
    in_range = {slot for _, slot in rng.plan if slot is not None}
    for slot in range(meta.ring_slots):
        if slot in in_range:
            continue
        header = store.read_upto(meta.slot_offset(slot), dec.SEG_HEADER_SIZE)
        if len(header) != dec.SEG_HEADER_SIZE or header[:8] != dec.SEG_MAGIC:
            continue
        seg_id = struct.unpack_from("<Q", header, 32)[0]
        if header[16:32] != meta.store_uuid or seg_id <= rng.head_id + 1:
            continue
        try:
            seg = dec.parse_segment(store, meta, slot, seg_id)
        except dec.DecodeError:
            continue
        st = seg.seal
        if st.device_id != meta.device_id or seg.computed_hash != st.segment_hash:
            continue
        if st.sig_alg == 0:
            if not allow_unsigned:
                continue
        elif not trust.verifies_ever(st, st.signature):
            continue
        report.finding("truncated_tail", meta.slot_offset(slot),
                       f"slot {slot} holds committed segment {seg_id}, beyond the head "
                       f"segment {rng.head_id} + 1: the newest history was cut away")


def anchor_verifies_with_given_key(data: bytes | None, keys: list[Key]) -> bool:
    """Section 9 item 3 (the downgrade rule): the anchor is a signed head
    (well formed, section 8, and signed: sig_alg not 0) whose signature
    verifies with a key given with --trust at its key_epoch (a key file at
    epoch 1, a key directory at its key.json's; not a key a rotation
    endorsed)."""
    if data is None:
        return False
    anchor = parse_anchor(data)
    if isinstance(anchor, str) or anchor.statement.sig_alg == 0:
        return False
    st = anchor.statement
    return any(key.key_id == st.key_id and key.epoch == st.key_epoch
               and signature_verifies(key, st.sig_alg, st.statement, anchor.signature)
               for key in keys)


def check_anchor(data: bytes, store: dec.Store, meta: dec.Metadata, rng: Range, trust: Trust,
                 walker: Walker, allow_unsigned: bool, report: Report) -> None:
    # "Findings about the anchor have offset 0 (the anchor is not part of
    # the image)": every finding made here.
    anchor = parse_anchor(data)
    if isinstance(anchor, str):
        report.finding("anchor_malformed", 0, f"anchor: {anchor}")
        return
    st = anchor.statement
    if st.sig_alg == 0:
        if not allow_unsigned:
            report.finding("anchor_bad_signature", 0, "anchor is unsigned")
            return
    elif not trust.verifies_ever(st, anchor.signature):
        report.finding("anchor_bad_signature", 0,
                       f"anchor signature does not verify with a key trusted at its epoch "
                       f"{st.key_epoch} (key_id {st.key_id.hex()})")
        return
    if st.device_id != meta.device_id or st.store_uuid != meta.store_uuid:
        report.finding("foreign_segment", 0, "anchor device_id or store_uuid is not this "
                       "store's")
        return
    newest = walker.passed[max(walker.passed)] if walker.passed else None
    anchored = st.segment_id
    if newest is not None and newest.seal.rollback_ctr < st.rollback_ctr:
        report.finding("rollback", 0,
                       f"rollback_ctr {newest.seal.rollback_ctr} of the newest passing "
                       f"segment {newest.segment_id} is below the anchor's {st.rollback_ctr}")
        return
    if rng.head_id < anchored:
        report.finding("truncated_tail", 0,
                       f"store head is segment {rng.head_id}, the anchor's is {anchored}")
        return
    if rng.start <= anchored:
        slot = dict(rng.plan).get(anchored)
        # "Readable": the slot holds it, valid for its id and slot apart
        # from its seal (section 3.4 without the seal's form), whatever its
        # verdict in the walk; its computed SHA-256 is what counts.  An
        # unreadable one is no fork (its own line already fails the store).
        seg = None
        if slot is not None:
            try:
                seg = dec.read_segment(store, meta, slot)
            except dec.DecodeError:
                seg = None
        if (seg is not None and seg.store_uuid == meta.store_uuid
                and seg.segment_id == anchored and seg.slot_index == slot
                and seg.computed_hash != st.segment_hash):
            report.finding("fork", 0, f"segment {anchored} in slot {slot} does not hash to "
                           "the anchor's hash_head")
            return
    elif anchored == rng.start - 1:
        first = walker.passed.get(rng.start)
        if first is not None and first.prev_hash != st.segment_hash:
            report.finding("fork", 0, f"segment {rng.start}'s prev_hash is not the anchor's "
                           f"hash_head (segment {anchored})")
            return
    else:
        report.finding("anchor_not_retained", 0,
                       f"the anchored segment {anchored} is no longer in the ring (it starts "
                       f"at {rng.start}): nothing shows that this history continues it; "
                       "verify against a newer head")
        return
    # None of these applies: the first segment above the anchor's that
    # passed is checked against the anchor's statement by the
    # sequence_regression rules of item 3, the anchor's statement acting as
    # the previous passing segment.  (The record seq rule is about the
    # segments that passed before it in the range, which the walk checked.)
    after = [e for e in walker.passed if e > anchored]
    if after:
        seg = walker.passed[min(after)]
        problem = sequence_problem(seg, seg.segment_id, st, f"the anchor (segment {anchored})",
                                   {})
        if problem is not None:
            report.finding("sequence_regression", 0,
                           f"segment {seg.segment_id}, the first after the anchor that passed, "
                           f"goes backward against what the anchor sealed: {problem}")


def verify(store: dec.Store, keys: list[Key], anchor: bytes | None,
           allow_fw: set[bytes] | None, allow_unsigned: bool) -> Report:
    report = Report()
    # A slot whose store_size is more than the device holds is refused as
    # "truncated" (section 2) by dec.read_slots and dec.scan alike, so it is
    # a crc_mismatch finding like any invalid slot, and a copy cut short
    # (both slots too big) is not_a_store, not a shorter valid store.
    try:
        valid, rejected = dec.read_slots(store)
    except dec.NewerFormatError as exc:
        report.finding("not_a_store", 0, f"newer format: {exc}")
        return report
    if not valid:
        for name, exc in rejected.items():
            report.finding("crc_mismatch", dec.META_SLOT_OFFSETS[name],
                           f"metadata slot {name} is not valid: {exc.reason}")
        report.finding("not_a_store", 0, "no valid metadata slot")
        return report
    try:
        result = dec.scan(store)
    except dec.DecodeError as exc:
        report.finding("not_a_store", exc.offset, exc.reason)
        return report
    meta = result.meta

    # Item 1: metadata slots.  Before recovery (the chosen slot's clean_flag
    # 0) an invalid slot that is not all zero may be a cut metadata write: a
    # note.  Otherwise a crc_mismatch finding that fails the store.
    for name, exc in rejected.items():
        offset = dec.META_SLOT_OFFSETS[name]
        wiped = not any(store.read_upto(offset, dec.META_SLOT_SIZE))
        if meta.clean_flag == 0 and not wiped:
            report.note("torn_metadata_write", 0,
                        f"metadata slot {name} (offset {offset}) is not valid ({exc.reason}); "
                        f"chosen slot {meta.slot_name} has clean_flag 0 (image taken before "
                        "recovery): a cut metadata write cannot be told from an edit of an "
                        "unsigned slot")
        else:
            report.finding("crc_mismatch", offset,
                           f"metadata slot {name} is not valid: {exc.reason}"
                           + (" (all zero)" if wiped else ""))

    # Item 2: the range start..H and the slot of every id.
    rng = plan_range(store, result, report)
    if rng.start > 1:
        last_lost = rng.start - 1
        report.note("not_retained", last_lost,
                    ("segment 1 is" if last_lost == 1 else f"segments 1 to {last_lost} are")
                    + " no longer in the ring")

    # Item 3: each segment of the range.
    trust = Trust(keys)
    walker = Walker(store, meta, trust, allow_fw, allow_unsigned, report,
                    signed_anchor=anchor_verifies_with_given_key(anchor, keys))
    walker.walk(rng.plan)

    # Item 4: the head and the metadata.
    own_head = walker.passed.get(meta.head_segment_id)
    if (own_head is not None and own_head.slot == meta.head_slot
            and meta.hash_head != own_head.computed_hash):
        report.finding("hash_mismatch", meta.base + dec.HASH_HEAD_OFFSET,
                       f"metadata slot {meta.slot_name} hash_head is not the hash of head "
                       f"segment {meta.head_segment_id}")
    if result.head_missing is not None:
        # Offset: "the start of the head slot the chosen metadata names".
        report.finding("truncated_tail", meta.slot_offset(meta.head_slot),
                       f"neither slot's head segment is valid (segment "
                       f"{meta.head_segment_id}: {result.head_missing.reason})")
    head = walker.passed.get(rng.head_id)
    if head is not None and head.slot == rng.head_slot:
        check_metadata(meta, result, rng, head, report)

    # Item 5: committed segments beyond the head.
    beyond_the_head(store, meta, rng, trust, allow_unsigned, report)

    # Item 6: a torn segment after the head (the slot where the forward scan
    # stopped holds a header valid for the expected id and slot, whose
    # prev_crc is the head's body_crc, and the segment is not valid).
    if dec.torn_after_head(store, result):
        if meta.clean_flag == 0:
            report.note("torn_tail_power_cut", result.stop_segment_id,
                        f"segment {result.stop_segment_id} in slot {result.stop_slot} after "
                        "the head is torn (image taken before recovery)")
        else:
            report.finding("truncated_tail", meta.slot_offset(result.stop_slot),
                           f"segment {result.stop_segment_id} in slot {result.stop_slot} "
                           "after the head is torn, but the store was closed cleanly: no "
                           "commit was in flight")

    # Item 7: the anchor.
    if anchor is not None:
        check_anchor(anchor, store, meta, rng, trust, walker, allow_unsigned, report)
    else:
        report.note("truncation_not_excluded", rng.head_id,
                    "no --anchor: a shorter copy of this history (an older image, or one "
                    "whose newest segments were erased with the metadata rewritten) cannot "
                    "be excluded")
    return report


def dumps(obj: dict) -> str:
    # Keys in insertion order, no spaces (section 9).  ensure_ascii: every
    # character of a detail outside printable ASCII (controls, DEL, anything
    # not ASCII) is a \uXXXX escape, so a line cannot draw on a terminal.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True)


def render_json(report: Report) -> str:
    lines = []
    for s in report.segments:
        lines.append(dumps({"kind": "segment", "segment_id": s.segment_id, "slot": s.slot,
                            "offset": s.offset,
                            "sig_verify": "PASS" if s.sig_verify else "FAIL",
                            "reason": s.reason, "key_epoch": s.key_epoch}))
    for f in report.findings:
        lines.append(dumps({"kind": "finding", "reason": f.reason, "offset": f.offset,
                            "detail": f.detail}))
    for n in report.notes:
        lines.append(dumps({"kind": "note", "note": n.note, "segment_id": n.segment_id,
                            "detail": n.detail}))
    failed = sum(1 for s in report.segments if s.failed)
    lines.append(dumps({"kind": "summary", "verdict": report.verdict,
                        "segments": len(report.segments),
                        "passed": len(report.segments) - failed, "failed": failed,
                        "signed": report.signed, "sig_alg": report.sig_alg,
                        "reasons": report.reasons}))
    return "".join(line + "\n" for line in lines)


def escape_text(text: str) -> str:
    """Section 9: every byte of a detail outside printable ASCII (0x20 to
    0x7E) is printed as \\xNN, so a record cannot draw on the terminal."""
    return "".join(chr(b) if 0x20 <= b <= 0x7E else f"\\x{b:02x}"
                   for b in text.encode("utf-8", "surrogateescape"))


def render_text(report: Report, image: str) -> str:
    out = [f"edgelog verify {escape_text(image)}",
           f"{'segment':>10} {'slot':>6} {'offset':>12} {'sig':>5} {'epoch':>6}  result"]
    for s in report.segments:
        result = "PASS" if s.reason is None else s.reason
        out.append(f"{s.segment_id:>10} {s.slot:>6} {s.offset:>12} "
                   f"{'PASS' if s.sig_verify else 'FAIL':>5} {s.key_epoch:>6}  {result}"
                   + (f": {escape_text(s.detail)}" if s.detail else ""))
    for f in report.findings:
        out.append(f"finding {f.reason} at offset {f.offset}: {escape_text(f.detail)}")
    for n in report.notes:
        out.append(f"note {n.note} (segment {n.segment_id}): {escape_text(n.detail)}")
    failed = sum(1 for s in report.segments if s.failed)
    signed = (f"signed with {report.sig_alg}" if report.signed
              else "not signed throughout" + (f" (last signature verified: {report.sig_alg})"
                                              if report.verified_algs else ""))
    out.append(f"verdict {report.verdict}: {len(report.segments)} segments, "
               f"{len(report.segments) - failed} passed, {failed} failed; {signed}"
               + (f"; reasons: {', '.join(report.reasons)}" if report.reasons else ""))
    if report.sig_alg == "hmac-sha256":
        out.append("note: HMAC-SHA256 proves integrity only to holders of the secret, "
                   "not origin")
    return "".join(line + "\n" for line in out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Verify an edgelog store (FORMAT.md section 9, format version 5).")
    parser.add_argument("--device", required=True, metavar="IMAGE")
    parser.add_argument("--trust", action="append", required=True, metavar="KEY",
                        help="PUBLIC KEY PEM (Ed25519, P-256) or HMAC secret (64 hex digits), "
                        "trusted at epoch 1; or a key directory (key.json with "
                        "signing-key.pub.pem or hmac-key.hex), trusted at key.json's key_epoch")
    parser.add_argument("--anchor", metavar="HEADFILE")
    parser.add_argument("--allow-fw", action="extend", nargs="+", metavar="HEX64")
    parser.add_argument("--allow-unsigned", action="store_true")
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def read_anchor(path: str) -> bytes:
    """At most ANCHOR_MAX + 1 bytes: a longer file is malformed whatever it
    holds, and is never read whole."""
    try:
        with open(path, "rb") as fh:
            return fh.read(ANCHOR_MAX + 1)
    except OSError as exc:
        raise UsageError(f"cannot read anchor {path}: {exc.strerror}") from exc


def main(argv: list[str] | None = None, out=None, err=None) -> int:
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    args = parse_args(argv)  # exits 2 on usage errors
    try:
        keys = [load_trust_key(path) for path in args.trust]
        allow_fw = None
        if args.allow_fw is not None:
            for value in args.allow_fw:
                if not HEX64.fullmatch(value):
                    raise UsageError(f"--allow-fw {value!r} is not 64 hex digits")
            allow_fw = {bytes.fromhex(value) for value in args.allow_fw}
        anchor = None if args.anchor is None else read_anchor(args.anchor)
        try:
            fh = open(args.device, "rb")  # read only: the image is never changed
        except OSError as exc:
            raise UsageError(f"cannot read {args.device}: {exc.strerror}") from exc
    except UsageError as exc:
        err.write(f"edgelog_verify: {exc}\n")
        return EXIT_USAGE
    with fh:
        try:
            store = dec.Store(fh)
            # A format 6 store (FORMAT.md appendix A.11) is edgelog_verify6's.
            import edgelog_verify6
            if edgelog_verify6.is_format6(store):
                return edgelog_verify6.run(store, keys, anchor, allow_fw, args.allow_unsigned,
                                           args.json, args.device, out)
            report = verify(store, keys, anchor, allow_fw, args.allow_unsigned)
        except OSError as exc:
            err.write(f"edgelog_verify: cannot read {args.device}: {exc.strerror}\n")
            return EXIT_USAGE
    out.write(render_json(report) if args.json else render_text(report, args.device))
    out.flush()
    return EXIT_PASS if report.verdict == "PASS" else EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
