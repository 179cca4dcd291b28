"""Tests of replay_log_writes.py on synthetic logs built here from the kernel's description of the format
(Documentation/admin-guide/device-mapper/log-writes.rst, drivers/md/dm-log-writes.c):
super {le64 magic, le64 version, le64 nr_entries, le32 sectorsize} in sector 0; from byte sectorsize on
each entry {le64 sector, le64 nr_sectors, le64 flags, le64 data_len} in its own sector (a mark's text
after it), then nr_sectors sectors of data (none for DISCARD and MARK).

    python3 -m pytest -q scripts/hil/test_replay_log_writes.py
"""
import os
import random
import struct
import subprocess
import sys

import pytest

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import replay_log_writes as rlw  # noqa: E402


class SyntheticLog:
    """Writes a log the way the target lays it out (independently of the reader's structs)."""

    def __init__(self, sectorsize=512):
        self.ss = sectorsize
        self.body = bytearray()
        self.count = 0

    def _entry(self, sector, nr, flags, data_len=0, text=b"", data=b""):
        head = struct.pack("<QQQQ", sector, nr, flags, data_len) + text
        self.body += head + bytes(self.ss - len(head))
        self.body += data
        self.count += 1

    def write(self, sector, data, flags=0):
        assert len(data) % self.ss == 0
        self._entry(sector, len(data) // self.ss, flags, data=data)

    def flush(self):
        self._entry(0, 0, 1)

    def discard(self, sector, nr):
        self._entry(sector, nr, 4)

    def mark(self, text):
        t = text.encode()
        self._entry(0, 0, 8, len(t), t)

    def bytes(self, nr_entries=None, magic=0x6a736677736872, version=1):
        sup = struct.pack("<QQQI", magic, version, self.count if nr_entries is None else nr_entries, self.ss)
        return sup + bytes(self.ss - len(sup)) + bytes(self.body)

    def save(self, path, **kw):
        with open(path, "wb") as f:
            f.write(self.bytes(**kw))
        return str(path)


def fill(ss, n, byte):
    return bytes([byte]) * (ss * n)


def test_parse_entries_marks_and_flags(tmp_path):
    s = SyntheticLog()
    s.mark("format-start")
    s.write(0, fill(512, 2, 0xA1))
    s.write(8, fill(512, 1, 0xB2))
    s.flush()
    s.mark("ack-1")
    s.write(3, fill(512, 1, 0xC3), flags=2)          # FUA
    s.discard(8, 1)
    s.write(0, fill(512, 1, 0xD4), flags=16)         # METADATA
    s.flush()
    s.mark("dm-log-writes-end")
    log = rlw.LogWrites(s.save(tmp_path / "log"))
    assert log.sectorsize == 512 and log.nr_entries == 10 and len(log.entries) == 10
    kinds = [e.describe() for e in log.entries]
    assert kinds[0] == "#0 MARK 'format-start'"
    assert kinds[1] == "#1 WRITE sector 0 +2"
    assert kinds[3] == "#3 FLUSH sector 0 +0"
    assert kinds[5] == "#5 FUA sector 3 +1"
    assert kinds[6] == "#6 DISCARD sector 8 +1"
    assert kinds[7] == "#7 METADATA sector 0 +1"
    assert [e.mark for e in log.marks()] == ["format-start", "ack-1", "dm-log-writes-end"]
    assert log.durable_points() == [3, 5, 8]
    assert log.ended_cleanly()
    assert log.find_mark("ack-1") == 4 and log.find_mark("nope") is None
    assert bytes(log.data(log.entries[1])) == fill(512, 2, 0xA1)
    assert bytes(log.data(log.entries[1], 1, 1)) == fill(512, 1, 0xA1)
    n = log.summary()
    assert (n["writes"], n["flush"], n["fua"], n["discard"], n["marks"], n["metadata"]) == (4, 2, 1, 1, 3, 1)
    assert n["log_bytes_used"] == os.path.getsize(tmp_path / "log")
    log.close()


def test_images_at_each_durable_point(tmp_path):
    s = SyntheticLog()
    s.write(0, fill(512, 2, 1))
    s.write(4, fill(512, 2, 2))
    s.flush()                                        # 2
    s.write(1, fill(512, 2, 3))                      # overlaps both sides
    s.write(5, fill(512, 1, 4), flags=2)             # 4: FUA
    s.discard(0, 1)
    s.flush()                                        # 6
    log = rlw.LogWrites(s.save(tmp_path / "log"))
    img = rlw.Image(log, size=8 * 512)
    img.advance_to(2)
    assert bytes(img.buf) == fill(512, 2, 1) + bytes(1024) + fill(512, 2, 2) + bytes(1024)
    img.advance_to(4)
    assert bytes(img.buf) == fill(512, 1, 1) + fill(512, 2, 3) + bytes(512) + fill(512, 1, 2) + fill(512, 1, 4) + bytes(1024)
    img.advance_to(6)
    assert bytes(img.buf[:512]) == bytes(512)        # discard reads back as zeros here
    with pytest.raises(ValueError):
        img.advance_to(3)
    keep = rlw.Image(log, size=8 * 512, discard_mode="keep")
    keep.advance_to(6)
    assert bytes(keep.buf[:512]) == fill(512, 1, 1)
    log.close()


def test_base_image_and_write(tmp_path):
    base = tmp_path / "base"
    base.write_bytes(fill(512, 4, 0xEE))
    s = SyntheticLog()
    s.write(2, fill(512, 1, 7))
    s.flush()
    log = rlw.LogWrites(s.save(tmp_path / "log"))
    img = rlw.Image(log, base=str(base))
    img.advance_to(1)
    img.write(str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == fill(512, 2, 0xEE) + fill(512, 1, 7) + fill(512, 1, 0xEE)
    s2 = SyntheticLog()
    s2.write(4, fill(512, 1, 7))                     # beyond the base image
    log2 = rlw.LogWrites(s2.save(tmp_path / "log2"))
    with pytest.raises(ValueError):
        rlw.Image(log2, base=str(base)).advance_to(0)
    log.close()
    log2.close()


def test_sector_size_4096(tmp_path):
    s = SyntheticLog(4096)
    s.write(1, fill(4096, 2, 9))
    s.mark("m")
    s.flush()
    log = rlw.LogWrites(s.save(tmp_path / "log"))
    assert log.sectorsize == 4096 and len(log.entries) == 3
    assert log.entries[0].offset == 2 * 4096 and log.entries[1].log_offset == 4 * 4096
    img = rlw.Image(log)
    assert len(img.buf) == 3 * 4096
    img.advance_to(2)
    assert bytes(img.buf) == bytes(4096) + fill(4096, 2, 9)
    log.close()


def test_nr_entries_limits_what_is_read(tmp_path):
    s = SyntheticLog()
    s.write(0, fill(512, 1, 1))
    s.flush()
    s.write(0, fill(512, 1, 2))                      # logged, but the super was not rewritten
    log = rlw.LogWrites(s.save(tmp_path / "log", nr_entries=2))
    assert len(log.entries) == 2 and not log.ended_cleanly()
    log.close()


def test_bad_logs(tmp_path):
    s = SyntheticLog()
    s.write(0, fill(512, 2, 1))
    with pytest.raises(rlw.LogFormatError, match="magic"):
        rlw.LogWrites(s.save(tmp_path / "a", magic=1))
    with pytest.raises(rlw.LogFormatError, match="version"):
        rlw.LogWrites(s.save(tmp_path / "b", version=2))
    (tmp_path / "c").write_bytes(s.bytes()[:-512])   # data cut short
    with pytest.raises(rlw.LogFormatError, match="beyond"):
        rlw.LogWrites(str(tmp_path / "c"))
    with pytest.raises(rlw.LogFormatError, match="beyond"):
        rlw.LogWrites(s.save(tmp_path / "d", nr_entries=5))
    (tmp_path / "e").write_bytes(b"xx")
    with pytest.raises(rlw.LogFormatError, match="short"):
        rlw.LogWrites(str(tmp_path / "e"))


def test_partial_plans(tmp_path):
    s = SyntheticLog()
    s.flush()
    for i in range(6):
        s.write(i * 4, fill(512, 4, 0x10 + i))
    s.flush()
    log = rlw.LogWrites(s.save(tmp_path / "log"))
    writes = rlw.writes_between(log, 0, 7)
    assert [e.index for e in writes] == [1, 2, 3, 4, 5, 6]
    assert [e.index for e in rlw.writes_between(log, 0, None)] == [1, 2, 3, 4, 5, 6]
    rng = random.Random(5)
    seen_torn = seen_prefix = seen_subset = 0
    for _ in range(200):
        plan, desc = rlw.partial_plan(writes, rng)
        idx = [e.index for e, _ in plan]
        assert idx == sorted(idx) and set(idx) <= {1, 2, 3, 4, 5, 6}
        if desc["mode"] == "prefix":
            seen_prefix += 1
            assert idx == list(range(1, 1 + len(idx)))
        else:
            seen_subset += 1
        torn = [(e, n) for e, n in plan if n != e.nr_sectors]
        assert len(torn) <= 1
        if torn:
            seen_torn += 1
            e, n = torn[0]
            assert 0 < n < e.nr_sectors and desc["torn"] == {"entry": e.index, "sectors_kept": n, "of": 4}
        img = rlw.Image(log, size=24 * 512)
        img.advance_to(0)
        rlw.apply_plan(img, plan)
        want = bytearray(24 * 512)
        for e, n in plan:
            want[e.sector * 512:(e.sector + n) * 512] = bytes([0x10 + e.index - 1]) * (n * 512)
        assert img.buf == want
    assert seen_torn and seen_prefix and seen_subset
    plan, desc = rlw.partial_plan(writes, rng, mode="prefix", tear=False)
    assert desc["torn"] is None
    log.close()


def test_every_partial(tmp_path):
    s = SyntheticLog()
    s.flush()
    s.write(0, fill(512, 4, 1))
    s.write(8, fill(512, 1, 2))
    s.write(16, fill(512, 2, 3))
    s.flush()
    log = rlw.LogWrites(s.save(tmp_path / "log"))
    writes = rlw.writes_between(log, 0, 4)
    plans = rlw.every_partial(writes, random.Random(1))
    subsets = [d["applied"] for p, d in plans if d["mode"] == "every-subset"]
    assert sorted(map(tuple, subsets)) == sorted([(1,), (2,), (3,), (1, 2), (1, 3), (2, 3)])
    tears = [(p, d) for p, d in plans if d["mode"] == "every-tear"]
    assert [d["torn"]["entry"] for _, d in tears] == [1, 3]          # the one-sector write cannot tear
    p, d = tears[1]
    assert [(e.index, n) for e, n in p] == [(1, 4), (2, 1), (3, 1)]
    log.close()


def test_random_logs_against_a_model(tmp_path):
    """Random writes, FUA writes, discards, flushes and marks; the image at each durable point equals
    a sector-by-sector model of everything logged up to it."""
    rng = random.Random(11)
    for trial in range(20):
        ss = rng.choice((512, 4096))
        nsec = 64
        s = SyntheticLog(ss)
        model = {}
        expected = {}
        for i in range(rng.randint(5, 60)):
            r = rng.random()
            if r < 0.55:
                sec = rng.randrange(nsec)
                n = rng.randint(1, min(8, nsec - sec))
                data = os.urandom(n * ss)
                flags = rng.choice((0, 0, 2, 16))
                s.write(sec, data, flags=flags)
                for j in range(n):
                    model[sec + j] = data[j * ss:(j + 1) * ss]
                if flags & 2:
                    expected[s.count - 1] = dict(model)
            elif r < 0.65:
                sec = rng.randrange(nsec)
                n = rng.randint(1, nsec - sec)
                s.discard(sec, n)
                for j in range(n):
                    model[sec + j] = bytes(ss)
            elif r < 0.8:
                s.mark(f"m{i}")
            else:
                s.flush()
                expected[s.count - 1] = dict(model)
        log = rlw.LogWrites(s.save(tmp_path / f"log{trial}"))
        assert len(log.entries) == s.count
        assert set(log.durable_points()) == set(expected)
        img = rlw.Image(log, size=nsec * ss)
        for k in sorted(expected):
            img.advance_to(k)
            want = bytearray(nsec * ss)
            for sec, data in expected[k].items():
                want[sec * ss:(sec + 1) * ss] = data
            assert img.buf == want, (trial, k)
        log.close()


def test_cli(tmp_path):
    s = SyntheticLog()
    s.write(0, fill(512, 1, 1))
    s.flush()
    s.mark("here")
    s.write(0, fill(512, 1, 2))
    s.flush()
    path = s.save(tmp_path / "log")
    tool = os.path.join(here, "replay_log_writes.py")
    r = subprocess.run([sys.executable, tool, path, "--out", str(tmp_path / "img"), "--end-mark", "here", "--size", "1024"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "img").read_bytes() == fill(512, 1, 1) + bytes(512)
    r = subprocess.run([sys.executable, tool, path, "--out", str(tmp_path / "img2"), "--all"], capture_output=True, text=True)
    assert r.returncode == 0 and (tmp_path / "img2").read_bytes() == fill(512, 1, 2)
    r = subprocess.run([sys.executable, tool, path, "--list", "--json"], capture_output=True, text=True)
    assert r.returncode == 0
    import json
    d = json.loads(r.stdout)
    assert d["durable_points"] == [1, 4] and d["marks"] == [{"index": 2, "flags": 8, "kind": "MARK", "mark": "here"}]
    r = subprocess.run([sys.executable, tool, str(tmp_path / "img")], capture_output=True, text=True)
    assert r.returncode == 1 and "magic" in r.stderr
