#!/usr/bin/env python3
"""Reads a device-mapper log-writes log and rebuilds the logged device as it was at any point of it.

    replay_log_writes.py LOG --list [--json]
    replay_log_writes.py LOG --out IMG [--base IMG] [--size BYTES] (--upto K | --end-mark NAME | --all)

Written from the kernel's Documentation/admin-guide/device-mapper/log-writes.rst and the structures in
drivers/md/dm-log-writes.c (Linux 6.1), not from the userspace replay-log tool:

  * The log device starts with a super block in its first sector (byte 0):
        struct log_write_super { __le64 magic; __le64 version; __le64 nr_entries; __le32 sectorsize; }
    magic 0x6a736677736872, version 1; sectorsize is the logical block size of the logged device.
    nr_entries is rewritten after every FUA or MARK entry and when the target is removed (which first
    logs the unflushed writes and a mark "dm-log-writes-end"), so a log whose target was removed
    cleanly has its final count.
  * The entries follow from byte `sectorsize` on, each one sector of `sectorsize` bytes
        struct log_write_entry { __le64 sector; __le64 nr_sectors; __le64 flags; __le64 data_len; }
    followed by nr_sectors sectors of the data written (none for a DISCARD or a MARK). sector and
    nr_sectors count sectorsize units of the logged device. flags: FLUSH 1, FUA 2, DISCARD 4, MARK 8,
    METADATA 16. A MARK's text (data_len bytes, at most sectorsize - 33) follows the 32-byte entry in
    the same sector. A non-MARK entry with data_len > 0 (inline data, DAX only) is not supported.
  * Order: the target logs a plain write only once a REQ_PREFLUSH that was issued after the write
    completed has completed: the writes completed before the flush (in completion order), then the
    flush entry. A FUA write is logged as soon as it completes. So the device as of "just after the
    FLUSH (or FUA) entry k" is what a power cut right after that flush completed must leave at least;
    the writes logged after k and before the next flush or FUA entry were completed but possibly still
    in the disk's cache: a power cut may keep any subset of them, and a write may be torn at a sector.
  * A DISCARD entry's range reads back as unspecified data; this replayer writes zeros there
    (discard_mode="zero") or leaves it (discard_mode="keep").

The library part (LogWrites, Image, partial_plan, every_partial) is what scripts/hil/check_logwrites.py uses; its own
test is scripts/hil/test_replay_log_writes.py (a synthetic log built from the same description).
"""
import argparse
import json
import mmap
import os
import struct
import sys

MAGIC = 0x6a736677736872
VERSION = 1
FLUSH, FUA, DISCARD, MARK, METADATA = 1, 2, 4, 8, 16
FLAG_NAMES = ((FLUSH, "FLUSH"), (FUA, "FUA"), (DISCARD, "DISCARD"), (MARK, "MARK"), (METADATA, "METADATA"))
SUPER = struct.Struct("<QQQI")
ENTRY = struct.Struct("<QQQQ")
END_MARK = "dm-log-writes-end"


class LogFormatError(Exception):
    pass


def flag_names(flags):
    names = [n for bit, n in FLAG_NAMES if flags & bit]
    rest = flags & ~0x1f
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "WRITE"


class Entry:
    """One log entry. `offset` is where its data starts in the log (bytes), `length` its size."""
    __slots__ = ("index", "sector", "nr_sectors", "flags", "data_len", "mark", "offset", "length", "log_offset")

    def __init__(self, index, sector, nr_sectors, flags, data_len, mark, offset, length, log_offset):
        self.index, self.sector, self.nr_sectors, self.flags = index, sector, nr_sectors, flags
        self.data_len, self.mark, self.offset, self.length, self.log_offset = data_len, mark, offset, length, log_offset

    @property
    def is_write(self):
        """Carries data to apply (a write, FUA write or a flush with data)."""
        return not self.flags & (MARK | DISCARD) and self.nr_sectors > 0

    @property
    def is_durable_point(self):
        """A FLUSH or a FUA entry: after it, everything logged up to it is on stable media."""
        return bool(self.flags & (FLUSH | FUA)) and not self.flags & MARK

    def describe(self):
        if self.flags & MARK:
            return f"#{self.index} MARK {self.mark!r}"
        return f"#{self.index} {flag_names(self.flags)} sector {self.sector} +{self.nr_sectors}"

    def as_dict(self):
        d = {"index": self.index, "flags": self.flags, "kind": flag_names(self.flags)}
        if self.flags & MARK:
            d["mark"] = self.mark
        else:
            d["sector"], d["nr_sectors"] = self.sector, self.nr_sectors
        return d


class LogWrites:
    """A parsed log. Opens the file read-only (mmap ACCESS_READ): it is never written."""

    def __init__(self, path, max_entries=None):
        self.path = path
        self._f = open(path, "rb")
        size = os.fstat(self._f.fileno()).st_size
        if size < SUPER.size:
            raise LogFormatError(f"{path}: {size} bytes, too short for a log-writes super block")
        self._m = mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_READ)
        magic, version, nr_entries, sectorsize = SUPER.unpack_from(self._m, 0)
        if magic != MAGIC:
            raise LogFormatError(f"{path}: magic {magic:#x}, not a log-writes log ({MAGIC:#x})")
        if version != VERSION:
            raise LogFormatError(f"{path}: log-writes version {version}, this reads {VERSION}")
        if sectorsize < 512 or sectorsize & (sectorsize - 1):
            raise LogFormatError(f"{path}: sector size {sectorsize}")
        self.nr_entries, self.sectorsize, self.size = nr_entries, sectorsize, size
        self.entries = []
        pos = sectorsize
        limit = nr_entries if max_entries is None else min(nr_entries, max_entries)
        for i in range(limit):
            if pos + sectorsize > size:
                raise LogFormatError(f"{path}: entry {i} at byte {pos} lies beyond the log's end ({size})")
            sector, nr, flags, data_len = ENTRY.unpack_from(self._m, pos)
            mark = None
            if flags & MARK:
                if data_len > sectorsize - ENTRY.size:
                    raise LogFormatError(f"{path}: entry {i}: mark of {data_len} bytes")
                mark = bytes(self._m[pos + ENTRY.size:pos + ENTRY.size + data_len]).decode("utf-8", "replace")
            elif data_len:
                raise LogFormatError(f"{path}: entry {i}: inline data (data_len {data_len}) is not supported")
            data_at = pos + sectorsize
            length = 0 if flags & (DISCARD | MARK) else nr * sectorsize
            if data_at + length > size:
                raise LogFormatError(f"{path}: entry {i}: data {data_at}+{length} beyond the log's end ({size})")
            self.entries.append(Entry(i, sector, nr, flags, data_len, mark, data_at, length, pos))
            pos = data_at + length
        self.end = pos

    def close(self):
        self._m.close()
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def data(self, entry, first_sector=0, nr=None):
        """The bytes of entry's sectors [first_sector, first_sector + nr)."""
        nr = entry.nr_sectors - first_sector if nr is None else nr
        a = entry.offset + first_sector * self.sectorsize
        return self._m[a:a + nr * self.sectorsize]

    def marks(self):
        return [e for e in self.entries if e.flags & MARK]

    def find_mark(self, name, start=0):
        for e in self.entries[start:]:
            if e.flags & MARK and e.mark == name:
                return e.index
        return None

    def durable_points(self):
        return [e.index for e in self.entries if e.is_durable_point]

    def ended_cleanly(self):
        return bool(self.entries) and self.entries[-1].flags & MARK and self.entries[-1].mark == END_MARK

    def summary(self):
        n = {"entries": len(self.entries), "nr_entries": self.nr_entries, "sectorsize": self.sectorsize,
             "writes": 0, "write_bytes": 0, "flush": 0, "fua": 0, "discard": 0, "marks": 0, "metadata": 0,
             "flush_with_data": 0, "log_bytes_used": self.end, "ended_cleanly": bool(self.ended_cleanly())}
        for e in self.entries:
            if e.flags & MARK:
                n["marks"] += 1
                continue
            if e.flags & FLUSH:
                n["flush"] += 1
                if e.nr_sectors:
                    n["flush_with_data"] += 1
            if e.flags & FUA:
                n["fua"] += 1
            if e.flags & DISCARD:
                n["discard"] += 1
            if e.flags & METADATA:
                n["metadata"] += 1
            if e.is_write:
                n["writes"] += 1
                n["write_bytes"] += e.length
        return n


class Image:
    """The logged device's bytes in memory, built by applying entries in log order."""

    def __init__(self, log, size=None, base=None, discard_mode="zero"):
        self.log = log
        self.discard_mode = discard_mode
        if base is not None:
            with open(base, "rb") as f:
                self.buf = bytearray(f.read())
        else:
            if size is None:
                size = self.min_size(log)
            self.buf = bytearray(size)
        self.applied = -1          # index of the last entry applied by advance_to

    @staticmethod
    def min_size(log):
        end = 0
        for e in log.entries:
            if not e.flags & MARK:
                end = max(end, (e.sector + e.nr_sectors) * log.sectorsize)
        return end

    def copy(self):
        other = Image.__new__(Image)
        other.log, other.discard_mode, other.applied = self.log, self.discard_mode, self.applied
        other.buf = bytearray(self.buf)
        return other

    def apply(self, entry, first_sector=0, nr=None):
        """Writes entry's sectors [first_sector, first_sector + nr) (default: all) to the image."""
        ss = self.log.sectorsize
        if entry.flags & MARK:
            return
        nr = entry.nr_sectors - first_sector if nr is None else nr
        if nr <= 0:
            return
        if first_sector < 0 or first_sector + nr > entry.nr_sectors:
            raise ValueError(f"{entry.describe()}: sectors {first_sector}+{nr} out of range")
        a = (entry.sector + first_sector) * ss
        b = a + nr * ss
        if b > len(self.buf):
            raise ValueError(f"{entry.describe()}: ends at byte {b}, beyond the image ({len(self.buf)} bytes)")
        if entry.flags & DISCARD:
            if self.discard_mode == "zero":
                self.buf[a:b] = bytes(b - a)
            return
        self.buf[a:b] = self.log.data(entry, first_sector, nr)

    def advance_to(self, k):
        """Applies every entry after the last one applied, up to and including entry k."""
        if k < self.applied:
            raise ValueError(f"cannot go back from entry {self.applied} to {k}")
        for e in self.log.entries[self.applied + 1:k + 1]:
            self.apply(e)
        self.applied = k

    def write(self, path):
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(self.buf)
        os.replace(tmp, path)


def writes_between(log, k, k_next):
    """The write entries logged after entry k and before entry k_next (None: the log's end)."""
    end = len(log.entries) if k_next is None else k_next
    return [e for e in log.entries[k + 1:end] if e.is_write or e.flags & DISCARD]


def partial_plan(writes, rng, mode=None, tear=None):
    """A possible device state after a power cut: which of `writes` (in log order) land, and how much.

    mode: "subset" (each write independently kept or lost), "prefix" (the first n in log order) or None
    (random choice). tear: whether one of the kept writes of more than one sector is torn at a sector
    boundary (only its first j sectors land, 0 < j < nr_sectors); None: random.
    Returns (plan, description): plan is a list of (entry, nr_sectors_applied)."""
    if mode is None:
        mode = rng.choice(("subset", "prefix"))
    if mode == "subset":
        kept = [e for e in writes if rng.random() < 0.5]
    elif mode == "prefix":
        kept = writes[:rng.randint(0, len(writes))]
    else:
        raise ValueError(mode)
    plan = [(e, e.nr_sectors) for e in kept]
    torn = None
    if tear is None:
        tear = rng.random() < 0.5
    candidates = [i for i, (e, _) in enumerate(plan) if e.nr_sectors > 1 and not e.flags & DISCARD]
    if tear and candidates:
        i = rng.choice(candidates)
        e = plan[i][0]
        j = rng.randint(1, e.nr_sectors - 1)
        plan[i] = (e, j)
        torn = (e.index, j, e.nr_sectors)
    desc = {"mode": mode, "writes_after_flush": len(writes), "applied": [e.index for e, _ in plan],
            "torn": None if torn is None else {"entry": torn[0], "sectors_kept": torn[1], "of": torn[2]}}
    return plan, desc


def every_partial(writes, rng):
    """Every proper, non-empty subset of `writes` (2**n - 2 plans), and for each write of more than one
    sector the writes before it (log order) plus that write torn at a random sector boundary.
    Returns a list of (plan, description) as partial_plan does."""
    n = len(writes)
    out = []
    for bits in range(1, (1 << n) - 1):
        kept = [w for i, w in enumerate(writes) if bits >> i & 1]
        out.append(([(e, e.nr_sectors) for e in kept],
                    {"mode": "every-subset", "writes_after_flush": n, "applied": [e.index for e in kept], "torn": None}))
    for i, e in enumerate(writes):
        if e.nr_sectors > 1 and not e.flags & DISCARD:
            j = rng.randint(1, e.nr_sectors - 1)
            plan = [(w, w.nr_sectors) for w in writes[:i]] + [(e, j)]
            out.append((plan, {"mode": "every-tear", "writes_after_flush": n, "applied": [w.index for w, _ in plan],
                               "torn": {"entry": e.index, "sectors_kept": j, "of": e.nr_sectors}}))
    return out


def apply_plan(image, plan):
    for e, nr in plan:
        image.apply(e, 0, nr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log")
    ap.add_argument("--list", action="store_true", help="print the entries (or with --json a summary and the marks)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", help="write the replayed image here")
    ap.add_argument("--base", help="the device's contents before the log started (default: zeros)")
    ap.add_argument("--size", type=int, help="image size in bytes when there is no --base (default: the highest sector written)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--upto", type=int, help="apply entries 0..K")
    g.add_argument("--end-mark", help="apply the entries before the first mark with this text")
    g.add_argument("--all", action="store_true")
    args = ap.parse_args()
    try:
        log = LogWrites(args.log)
    except (OSError, LogFormatError) as e:
        print(f"replay_log_writes: {e}", file=sys.stderr)
        return 1
    if args.list:
        if args.json:
            print(json.dumps({"summary": log.summary(), "marks": [e.as_dict() for e in log.marks()],
                              "durable_points": log.durable_points()}))
        else:
            for e in log.entries:
                print(e.describe())
            print(json.dumps(log.summary()))
    if args.out:
        if args.upto is not None:
            k = args.upto
        elif args.end_mark is not None:
            m = log.find_mark(args.end_mark)
            if m is None:
                print(f"replay_log_writes: no mark {args.end_mark!r}", file=sys.stderr)
                return 1
            k = m - 1
        else:
            k = len(log.entries) - 1
        if k >= len(log.entries):
            print(f"replay_log_writes: the log has {len(log.entries)} entries", file=sys.stderr)
            return 1
        img = Image(log, size=args.size, base=args.base)
        img.advance_to(k)
        img.write(args.out)
        print(f"replay_log_writes: {args.out}: entries 0..{k} of {len(log.entries)} applied", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
