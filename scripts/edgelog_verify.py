#!/usr/bin/env python3
"""Independent verifier for edgelog stores (FORMAT.md section 9).

Written from docs/FORMAT.md alone, without looking at the Swift sources, so
that it can catch disagreements between the spec and `edgelog verify`.  The
image is parsed by edgelog_decode.py (same directory): one Python view of the
format, so the record layout (format version 4: 60 fixed bytes before the
source, at least 69 in all) and the format_version checks live there and
nowhere here.  A store of an older version has no valid metadata slot
(not_a_store), a segment of another version is crc_mismatch at its header.
The records' sync sample (maxerror_us, esterror_us, last_sync_ns) has no
rule of its own in section 9: it is covered, like every record byte, by the
record CRC, body_crc, the segment hash and so the signature.  Signatures are
checked with the `cryptography` package (Debian python3-cryptography) and
the standard library's hmac.

Usage:
    edgelog_verify.py --device IMAGE --trust KEY [--trust KEY ...]
                      [--anchor HEADFILE] [--allow-fw HEX64 ...]
                      [--allow-unsigned] [--json]

A trust KEY is a key file or a key directory (section 9).  A key file is a
`PUBLIC KEY` PEM (Ed25519 or ECDSA P-256) or an HMAC secret file
(`hmac-key.hex`, section 3.5): the 32-byte secret as 64 hex digits and a
newline (the newline may be missing).  The HMAC key is the 32 raw bytes; its
key_id is the first 16 bytes of SHA-256 of the ASCII `EDGELOG-HMAC-KEY-ID`
followed by those 32 bytes.  A key file is trusted at epoch 1.

A key directory (what `edgelog keys generate --out DIR` writes) holds
`key.json` ({"alg":..., "key_epoch":N, "key_id":"32 hex digits", ...}) and
beside it `signing-key.pub.pem` (alg ed25519 or ecdsa-p256) or `hmac-key.hex`
(alg hmac-sha256); the private key, if there, is never read.  Its key is
trusted at epoch N.  A key.json that does not parse, a key file of another
algorithm than key.json's alg, or a key whose key_id is not key.json's is a
usage error (exit 2).

Exit codes: 0 the verdict is PASS, 1 FAIL, 2 usage error or a file that
cannot be read.

Choices where FORMAT.md leaves room (the most literal reading each time):
- A verdict of `not_a_store` is printed as verdict FAIL with reason
  not_a_store (the summary's verdict is PASS or FAIL); a newer format
  version is reported the same way (the verifier has no exit 5).
- An invalid metadata slot (step 1): when the chosen slot's clean_flag is 0
  (image taken before recovery) it is not a finding but a note
  `torn_metadata_write` (segment_id 0) and does not fail the store;
  otherwise it is a crc_mismatch finding at the slot's offset (0 or 4096)
  and fails it.  Every finding fails the store; notes never do.  The
  summary's reasons are the codes of the failures, so a PASS always has an
  empty list.
- sig_alg 0 (step 2): without --allow-unsigned the reason is `unsigned` and
  the segment fails.  With it, `unsigned` is no reason at all: there is no
  key or signature to check (unknown_key, bad_signature), and the checks
  after them (fw_not_allowed, rollback) are made as for a signed segment;
  a segment with no other problem is PASS (sig_verify PASS, reason null).
  An unsigned signed head (anchor) is accepted only with --allow-unsigned.
- sig_verify is PASS exactly when the segment has no reason (reason null):
  "a segment to which none applies is PASS, any other FAIL" (step 2).  So a
  segment that fails fw_not_allowed or rollback is sig_verify FAIL although
  its signature verified, and it counts as failed in the summary.  Its
  rollback_ctr is still the reference for the next segment's (the
  signature vouches for it).
- Evidence notes (step 4): every incomplete (type 3) and recovery (type 5)
  record is a note power_cut_explained with the id of the segment holding
  it, one note per record, whatever the chosen slot's clean_flag (a store
  open again after a recovery still holds that recovery's records).  Only
  segments that passed are read for them, as for rotation records: the
  content of a segment that failed is not evidence.
- A rotation retires the old key: "every later segment is signed by the new
  one" (section 4), so a later segment signed by the old key is unknown_key.
- The anchor's signature is checked with any key the verifier knows by its
  key_id (the --trust keys and the keys rotation records endorsed), whatever
  its epoch.
- A key directory's key.json must have alg one of the three names, key_epoch
  an integer from 1 to 2^32 - 1 (epoch 0 means unsigned) and key_id 32 hex
  digits (either case); key_src and any other member are not checked.
- The same key given more than once at different epochs (say as a key file
  and as a key directory) is trusted at each of them.
- key_epoch of a segment line: "the statement's once the seal was read (from
  foreign_segment by device_id on in the list above), else 0" is read with
  the list of seal reasons just before it, where seal_mismatch comes before
  foreign_segment by device_id: so foreign_segment by device_id has the
  statement's key_epoch, gap, reordered and chain_break by id (checked
  before the seal), crc_mismatch, foreign_segment by store_uuid and
  seal_mismatch have 0, and every check after seal_mismatch (hash_mismatch
  and chain_break by prev_hash included, and PASS) the statement's.
- A bad_signature for a key rotation endorsement points at the commit
  marker like any bad_signature.
- A tail given up before recovery (section 5) has no gap record yet, so no
  tail_unreadable note ("a note's segment_id is the segment holding the
  record it reports"); the note not_retained (tail_segment_id - 1, the tail
  the walk starts at) names it.  Notes come in this order:
  torn_metadata_write, not_retained, the walk's (record order), then
  torn_tail_power_cut.
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
        # "signed is true when at least one segment's signature verified".
        return bool(self.verified_algs)

    @property
    def sig_alg(self) -> str:
        # "the algorithm of the last one that did, unsigned when none did"
        # (a rotation may change it).
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


def check_rotation(payload: bytes, seal: dec.Seal, signer: Key | None, device_id: bytes,
                   trust_keys: list[Key]) -> Rotation | str:
    """Check one key_rotation record of a segment that passed: the Rotation
    when its endorsement verifies, else why not."""
    try:
        obj = json.loads(payload)
        old_key_id = bytes.fromhex(obj["old_key_id"])
        old_epoch = obj["old_epoch"]
        new_key_id = bytes.fromhex(obj["new_key_id"])
        new_epoch = obj["new_epoch"]
        new_alg = ALG_BY_NAME[obj["new_alg"]]
        new_spki = bytes.fromhex(obj["new_public_key"])
        endorsement = bytes.fromhex(obj["endorsement"])
    except (ValueError, KeyError, TypeError) as exc:
        return f"key_rotation record does not parse ({exc.__class__.__name__})"
    if not (isinstance(old_epoch, int) and isinstance(new_epoch, int)
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
# The walk over the committed segments (section 9, step 2)
# ---------------------------------------------------------------------------

@dataclass
class Trust:
    """Which keys are trusted at this point of the walk, and at which epoch."""
    given: list[Key]                                    # the --trust keys
    # key_id -> (key, the epochs it is trusted at)
    active: dict[bytes, tuple[Key, frozenset[int]]] = field(default_factory=dict)
    known: dict[bytes, Key] = field(default_factory=dict)  # every key ever trusted

    def __post_init__(self) -> None:
        for key in self.given:
            # "a key file is a key of epoch 1; a key directory is a key of
            # the key_epoch its key.json names"
            trusted, epochs = self.active.get(key.key_id, (key, frozenset()))
            self.active[key.key_id] = (trusted, epochs | {key.epoch})
            self.known.setdefault(key.key_id, key)


def extra_seal_problem(seal: dec.Seal) -> str | None:
    """Malformed beyond section 3.4's power-cut rules: an algorithm this
    format does not have, or a sig_len that algorithm does not produce."""
    if seal.sig_alg not in dec.SIG_LEN_FOR_ALG:
        return f"unknown sig_alg {seal.sig_alg}"
    if seal.sig_len != dec.SIG_LEN_FOR_ALG[seal.sig_alg]:
        return (f"sig_len {seal.sig_len} is not what "
                f"{dec.SIG_ALG_NAMES[seal.sig_alg]} produces")
    return None


class Walker:
    def __init__(self, store: dec.Store, meta: dec.Metadata, trust: Trust,
                 allow_fw: set[bytes] | None, allow_unsigned: bool, report: Report):
        self.store, self.meta, self.trust = store, meta, trust
        self.allow_fw, self.allow_unsigned, self.report = allow_fw, allow_unsigned, report
        # Hash of segment id -> the value its successor's prev_hash must hold:
        # computed when it passed its hash check, else what its seal claims.
        self.chain_hash: dict[int, bytes] = {}
        # rollback_ctr of the last segment whose signature verified (or that
        # was accepted unsigned, --allow-unsigned): "the previous segment's"
        # that can be trusted.
        self.prev_rollback: int | None = None
        self.passed: dict[int, dec.Segment] = {}   # segment id -> segment that passed
        self.endorsed_without_secret: set[bytes] = set()

    def walk(self, committed: list[tuple[int, int]]) -> None:
        for slot, expected in committed:
            line, seg = self.check(slot, expected)
            self.report.segments.append(line)
            if seg is not None and not line.failed:
                self.passed[seg.segment_id] = seg
                self.list_evidence(seg)

    def check(self, slot: int, e: int) -> tuple[SegmentLine, dec.Segment | None]:
        """One segment, reasons in the order of section 9 step 2: the first
        that applies is its reason.

        The line's fields as section 9's --json paragraph pins them:
        segment_id is always the expected id e, whatever the slot holds;
        offset is the slot's start, except for crc_mismatch (the first
        failing byte range) and the reasons read from the seal
        (seal_mismatch, foreign_segment by device_id, unsigned, unknown_key,
        bad_signature, fw_not_allowed, rollback): the commit marker's start
        (slot + 128 + payload_len); key_epoch is the statement's once the
        seal was read (foreign_segment by device_id, then every check after
        seal_mismatch, PASS included), else 0."""
        meta = self.meta
        base = meta.slot_offset(slot)
        line = SegmentLine(segment_id=e, slot=slot, offset=base)

        def fail(reason: str, detail: str, offset: int | None = None):
            # "a segment to which none applies is PASS, any other FAIL":
            # sig_verify is FAIL whatever the reason, fw_not_allowed and
            # rollback (which come after the signature check) included.
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
        problem = dec.seal_problem(seg) or extra_seal_problem(seal)
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
        # (No entry for e - 1: unreadable or older than the tail, no check.)

        key: Key | None = None
        if seal.sig_alg == 0:
            # "sig_alg 0: unsigned, unless --allow-unsigned is given: then it
            # is no reason and the checks below still apply."  With no key
            # and no signature, those are fw_not_allowed and rollback.
            if not self.allow_unsigned:
                return fail("unsigned", "segment is not signed", marker)
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
            # The summary's signed / sig_alg count the segments whose
            # signature verified, whatever fails after it.
            self.report.verified_algs.append(seal.sig_alg)
        # A verified (or allowed unsigned) seal's counter is the reference
        # for the next segment, whatever else fails here (one bad segment
        # fails once).
        previous = self.prev_rollback
        self.prev_rollback = seal.rollback_ctr
        if self.allow_fw is not None and seal.fw_ver_hash not in self.allow_fw:
            return fail("fw_not_allowed", f"fw_ver_hash {seal.fw_ver_hash.hex()} "
                        "is not in --allow-fw", marker)
        if previous is not None and seal.rollback_ctr < previous:
            return fail("rollback", f"rollback_ctr {seal.rollback_ctr} is below the "
                        f"previous segment's {previous}", marker)
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
            self.trust.active[rotation.new_key_id] = (rotation.new_key,
                                                      frozenset({rotation.new_epoch}))
            self.trust.known[rotation.new_key_id] = rotation.new_key

    def list_evidence(self, seg: dec.Segment) -> None:
        """Section 9 step 4: evidence records of a segment that passed become notes.

        Every incomplete record (type 3) and every recovery record (type 5)
        is one note power_cut_explained with the id of the segment that
        holds it (not the torn segment_id its payload names), in record
        order; a recovery record without an incomplete one (an unclean stop
        with nothing torn) is a note too.  Gap records are notes named by
        their reason, with the id of the segment that holds the record (not
        its lost_segment_id): "a note's segment_id is the segment holding
        the record it reports"."""
        for rec in seg.records:
            if rec.type not in (dec.TYPE_GAP, dec.TYPE_INCOMPLETE, dec.TYPE_RECOVERY):
                continue
            text = rec.payload.decode("utf-8", "replace")
            try:
                obj = json.loads(rec.payload)
            except ValueError:
                obj = {}
            if not isinstance(obj, dict):
                obj = {}
            if rec.type == dec.TYPE_GAP:
                code = obj.get("reason")
                if code not in ("ring_overwrite", "tail_unreadable"):
                    continue  # section 4 defines no other gap reason
                self.report.note(code, seg.segment_id,
                                 f"gap record in segment {seg.segment_id}: {text}")
            else:
                kind = "incomplete" if rec.type == dec.TYPE_INCOMPLETE else "recovery"
                self.report.note("power_cut_explained", seg.segment_id, f"{kind} record: {text}")


# ---------------------------------------------------------------------------
# The anchor (sections 8 and 9, step 5)
# ---------------------------------------------------------------------------

HEAD_KEYS = ("format", "version", "device_id", "segment_id", "commit_id", "hash_head",
             "rollback_ctr", "key_epoch", "key_id", "sig_alg", "statement", "signature")


@dataclass
class Anchor:
    statement: dec.Seal  # the statement fields (parse_seal of the 192 bytes)
    signature: bytes


def parse_anchor(data: bytes) -> Anchor | str:
    """The signed head of section 8, or why it is malformed."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "not a JSON object"
    if not isinstance(obj, dict):
        return "not a JSON object"
    missing = [k for k in HEAD_KEYS if k not in obj]
    if missing:
        return f"missing {', '.join(missing)}"
    if obj["format"] != "edgelog-head" or obj["version"] != 1:
        return "format is not edgelog-head version 1"
    for name in ("version", "segment_id", "commit_id", "rollback_ctr", "key_epoch"):
        if type(obj[name]) is not int or obj[name] < 0:
            return f"{name} is not a non-negative integer"
    raw = {}
    for name, size in (("device_id", 16), ("hash_head", 32), ("key_id", 16),
                       ("statement", dec.STATEMENT_SIZE), ("signature", None)):
        value = obj[name]
        if not isinstance(value, str) or not HEX_BYTES.fullmatch(value):
            return f"{name} is not a hex string"
        raw[name] = bytes.fromhex(value)
        if size is not None and len(raw[name]) != size:
            return f"{name} is {len(raw[name])} bytes, not {size}"
    st = dec.parse_seal(raw["statement"] + bytes(dec.SEAL_AREA - dec.STATEMENT_SIZE))
    if st.magic != dec.STATEMENT_MAGIC:
        return "statement magic is not EDGESIG1"
    if obj["sig_alg"] not in ALG_BY_NAME:
        return f"sig_alg {obj['sig_alg']!r} is not a known algorithm"
    # Every repeated field must equal the statement's: the signature covers
    # only the statement, so an edited repeat is not what was signed.
    repeats = (("device_id", raw["device_id"], st.device_id),
               ("segment_id", obj["segment_id"], st.segment_id),
               ("commit_id", obj["commit_id"], st.commit_id),
               ("hash_head", raw["hash_head"], st.segment_hash),
               ("rollback_ctr", obj["rollback_ctr"], st.rollback_ctr),
               ("key_epoch", obj["key_epoch"], st.key_epoch),
               ("key_id", raw["key_id"], st.key_id),
               ("sig_alg", ALG_BY_NAME[obj["sig_alg"]], st.sig_alg))
    for name, repeated, signed in repeats:
        if repeated != signed:
            return f"{name} differs from the statement's"
    if st.sig_len != dec.SIG_LEN_FOR_ALG.get(st.sig_alg) or len(raw["signature"]) != st.sig_len:
        return (f"signature is {len(raw['signature'])} bytes, the statement's sig_len "
                f"is {st.sig_len}")
    return Anchor(statement=st, signature=raw["signature"])


def check_anchor(data: bytes, store: dec.Store, result: dec.ScanResult, trust: Trust,
                 walker: Walker, allow_unsigned: bool, report: Report) -> None:
    # "Findings about the anchor have offset 0 (the anchor is not part of
    # the image)": every finding made here.
    meta = result.meta
    anchor = parse_anchor(data)
    if isinstance(anchor, str):
        report.finding("anchor_malformed", 0, f"anchor: {anchor}")
        return
    st = anchor.statement
    if st.sig_alg == 0:
        if not allow_unsigned:
            report.finding("anchor_bad_signature", 0, "anchor is unsigned")
            return
    else:
        key = trust.known.get(st.key_id)
        if key is None or not signature_verifies(key, st.sig_alg, st.statement,
                                                 anchor.signature):
            report.finding("anchor_bad_signature", 0,
                           f"anchor signature does not verify with a trusted key "
                           f"(key_id {st.key_id.hex()})")
            return
    if st.device_id != meta.device_id:
        report.finding("foreign_segment", 0, "anchor device_id is not this store's")
        return

    # "The store's newest rollback_ctr (the higher of the chosen slot's
    # rollback_ctr and the newest passing seal's)": the seal of the newest
    # segment that PASSed; a failing segment's counter proves nothing.
    newest = meta.rollback_ctr
    if walker.passed:
        newest = max(newest, walker.passed[max(walker.passed)].seal.rollback_ctr)
    head_id = meta.head_segment_id if result.empty else result.last_segment_id
    if newest < st.rollback_ctr:
        report.finding("rollback", 0,
                       f"store rollback_ctr {newest} is below the anchor's {st.rollback_ctr}")
    elif head_id < st.segment_id:
        report.finding("truncated_tail", 0,
                       f"store head is segment {head_id}, the anchor's is {st.segment_id}")
    else:
        # "The anchor's segment, if retained and readable, with a hash other
        # than the anchor's hash_head is fork": retained is among the
        # committed slots (tail to head); readable is that its structure
        # reads back (a segment that does not fails its own line) and that
        # the slot holds that segment id.  Its hash is the SHA-256 of its
        # header and records, computed, not what its seal claims.
        for slot, seg_id in result.committed:
            if seg_id != st.segment_id:
                continue
            try:
                seg = dec.read_segment(store, meta, slot)
            except dec.DecodeError:
                break  # unreadable: its own line already fails the store
            if seg.segment_id == seg_id and seg.computed_hash != st.segment_hash:
                report.finding("fork", 0,
                               f"segment {seg_id} in slot {slot} does not hash to the "
                               "anchor's hash_head")
            break


# ---------------------------------------------------------------------------
# Putting it together
# ---------------------------------------------------------------------------

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

    # Step 1: metadata slots.  Before recovery (the chosen slot's clean_flag
    # 0) an invalid slot may be a metadata write the power cut tore: a note,
    # not a finding.  Otherwise a crc_mismatch finding that fails the store.
    for name, exc in rejected.items():
        offset = dec.META_SLOT_OFFSETS[name]
        if meta.clean_flag == 0:
            report.note("torn_metadata_write", 0,
                        f"metadata slot {name} (offset {offset}) is not valid ({exc.reason}); "
                        f"chosen slot {meta.slot_name} has clean_flag 0 (image taken before "
                        "recovery): possibly a torn metadata write")
        else:
            report.finding("crc_mismatch", offset,
                           f"metadata slot {name} is not valid: {exc.reason}")

    # "When the tail is above segment 1, the note not_retained with
    # segment_id tail_segment_id - 1": the tail the walk starts at (after the
    # forward scan's and a given-up tail's moves), so a given-up tail is
    # among the segments it names.
    if result.tail_segment_id > 1:
        last_lost = result.tail_segment_id - 1
        report.note("not_retained", last_lost,
                    ("segment 1 is" if last_lost == 1 else f"segments 1 to {last_lost} are")
                    + " no longer in the ring; gap records name the overwritten ones")

    # Step 2: the committed segments, tail first.
    trust = Trust(keys)
    walker = Walker(store, meta, trust, allow_fw, allow_unsigned, report)
    walker.walk(result.committed)

    # Step 3: the head.
    head = walker.passed.get(meta.head_segment_id)
    if head is not None and head.slot == meta.head_slot and meta.hash_head != head.computed_hash:
        report.finding("hash_mismatch", meta.base + dec.HASH_HEAD_OFFSET,
                       f"metadata slot {meta.slot_name} hash_head is not the hash of head "
                       f"segment {meta.head_segment_id}")
    if result.head_missing is not None:
        # Offset: "the start of the head slot the chosen metadata names".
        report.finding("truncated_tail", meta.slot_offset(meta.head_slot),
                       f"neither slot's head segment is valid (segment "
                       f"{meta.head_segment_id}: {result.head_missing.reason})")

    # Step 4: power cuts (notes only).
    if meta.clean_flag == 0 and result.stop_slot >= 0 and dec.header_names(
            store, meta, result.stop_slot, result.stop_segment_id):
        report.note("torn_tail_power_cut", result.stop_segment_id,
                    f"segment {result.stop_segment_id} in slot {result.stop_slot} after the "
                    "head is torn (image taken before recovery)")
    # A tail given up (section 5) before recovery has no gap record yet, so
    # no tail_unreadable note: notes name the segment holding the record
    # they report.  not_retained (above) covers it: the walk starts after it.

    # Step 5: the anchor.
    if anchor is not None:
        check_anchor(anchor, store, result, trust, walker, allow_unsigned, report)
    return report


def dumps(obj: dict) -> str:
    # Keys in insertion order, no spaces (section 9).
    return json.dumps(obj, separators=(",", ":"))


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


def render_text(report: Report, image: str) -> str:
    out = [f"edgelog verify {image}",
           f"{'segment':>10} {'slot':>6} {'offset':>12} {'sig':>5} {'epoch':>6}  result"]
    for s in report.segments:
        result = "PASS" if s.reason is None else s.reason
        out.append(f"{s.segment_id:>10} {s.slot:>6} {s.offset:>12} "
                   f"{'PASS' if s.sig_verify else 'FAIL':>5} {s.key_epoch:>6}  {result}"
                   + (f": {s.detail}" if s.detail else ""))
    for f in report.findings:
        out.append(f"finding {f.reason} at offset {f.offset}: {f.detail}")
    for n in report.notes:
        out.append(f"note {n.note} (segment {n.segment_id}): {n.detail}")
    failed = sum(1 for s in report.segments if s.failed)
    signed = (f"signed with {report.sig_alg}" if report.signed
              else "no segment signature verified")
    out.append(f"verdict {report.verdict}: {len(report.segments)} segments, "
               f"{len(report.segments) - failed} passed, {failed} failed; {signed}"
               + (f"; reasons: {', '.join(report.reasons)}" if report.reasons else ""))
    if report.sig_alg == "hmac-sha256":
        out.append("note: HMAC-SHA256 proves integrity only to holders of the secret, "
                   "not origin")
    return "".join(line + "\n" for line in out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Verify an edgelog store (FORMAT.md section 9).")
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
        anchor = None
        if args.anchor is not None:
            try:
                anchor = Path(args.anchor).read_bytes()
            except OSError as exc:
                raise UsageError(f"cannot read anchor {args.anchor}: {exc.strerror}") from exc
        try:
            fh = open(args.device, "rb")  # read only: the image is never changed
        except OSError as exc:
            raise UsageError(f"cannot read {args.device}: {exc.strerror}") from exc
    except UsageError as exc:
        err.write(f"edgelog_verify: {exc}\n")
        return EXIT_USAGE
    with fh:
        try:
            report = verify(dec.Store(fh), keys, anchor, allow_fw, args.allow_unsigned)
        except OSError as exc:
            err.write(f"edgelog_verify: cannot read {args.device}: {exc.strerror}\n")
            return EXIT_USAGE
    out.write(render_json(report) if args.json else render_text(report, args.device))
    out.flush()
    return EXIT_PASS if report.verdict == "PASS" else EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
