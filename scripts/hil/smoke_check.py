#!/usr/bin/env python3
"""Judges what scripts/hil/guest-smoke left in OUT against the register images and serial_peer's log.

    smoke_check.py OUT [IMAGE.json ...]

Prints one line per check ("smoke: PASS name" / "smoke: FAIL name: why") and a closing
"smoke: N passed, N failed"; exit status 1 if any check failed.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hilimage  # noqa: E402
from preload_regs import parse_i2cdump  # noqa: E402
from serial_peer import nmea_checksum, with_crc  # noqa: E402


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    images = {img.chip.lower(): img for img in hilimage.load(sys.argv[2:] or None)}
    bme, ads = images["bme280"], images["ads1115"]
    results = []

    def check(name, ok, why=""):
        results.append(bool(ok))
        print(f"smoke: {'PASS' if ok else 'FAIL'} {name}" + ("" if ok or not why else f": {why}"))

    def read(name, default=None):
        try:
            with open(os.path.join(out, name), "rb") as f:
                return f.read()
        except OSError:
            return default

    steps = {}
    for line in (read("steps", b"") or b"").decode().splitlines():
        k, _, v = line.partition(" ")
        steps[k] = int(v) if v.strip().lstrip("-").isdigit() else v
    result = json.loads(read("result.json", b"{}") or b"{}")
    check("guest ran the job and exited 0", result.get("exit_status") == 0, f"result.json: {result}")

    # I2C: preload and read-back.
    pre = (read("preload.json", b"") or b"").decode().strip()
    check("preload_regs.py --verify", steps.get("preload") == 0 and '"verified": true' in pre,
          f"status {steps.get('preload')}, {pre} {(read('preload.err', b'') or b'').decode().strip()}")
    check("BME280 chip id 0x60 at 0xD0 (i2cget)", (read("bme280.id", b"") or b"").strip() == b"0x60",
          f"read {read('bme280.id')!r}")
    dump = parse_i2cdump((read("bme280.dump", b"") or b"").decode())
    bad = [f"0x{r:02x}: {dump.get(r)} != {v}" for r, v in sorted(bme.bytes.items()) if dump.get(r) != v]
    check(f"BME280 image read back by i2cdump ({len(bme.bytes)} registers)", dump and not bad, "; ".join(bad[:5]) or "no dump")
    block = parse_i2cdump((read("bme280-block.dump", b"") or b"").decode())
    want = {0x88 + i: b for i, b in enumerate(bme.block(0x88, 26))}
    bad = [f"0x{r:02x}: {block.get(r)} != {v}" for r, v in sorted(want.items()) if block.get(r) != v]
    check("BME280 calibration 0x88..0xA1 by I2C-block reads", block and not bad, "; ".join(bad[:5]) or "no dump")
    words = [int(w, 16) for w in (read("ads1115.words", b"") or b"").decode().split()]
    want_words = [ads.word(r) for r in range(4)]
    check("ADS1115 words 0x00..0x03 (i2cget w, byte-swapped in the stub)", words == want_words,
          f"read {[hex(w) for w in words]}, image {[hex(w) for w in want_words]}")
    after = (read("ads1115.config-after-write", b"") or b"").decode().strip()
    chip_after = hilimage.swap16(int(after, 16)) if re.fullmatch(r"0x[0-9a-f]{4}", after) else None
    check("ADS1115 config written with OS=1 reads back OS=1 (ready)",
          chip_after == 0xC585 and chip_after >> 15 == 1, f"read {after!r}")
    check("no plain I2C on i2c-stub (I2C_FUNC_I2C unset: i2ctransfer refuses), as documented", steps.get("i2ctransfer_rc") not in (0, None),
          f"i2ctransfer exit {steps.get('i2ctransfer_rc')}: {(read('i2ctransfer.out', b'') or b'').decode().strip()}")

    # Serial: Modbus on ttyS1.
    peer = []
    for line in (read("peer.jsonl", b"") or b"").decode().splitlines():
        try:
            peer.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    ev = lambda port, event, **kw: [e for e in peer if e.get("port") == port and e.get("event") == event
                                    and all(e.get(k) == v for k, v in kw.items())]
    got1 = (read("modbus-slave1.hex", b"") or b"").decode().strip()
    want1 = with_crc(bytes([1, 3, 4, 0x12, 0x34, 0x56, 0x78])).hex()
    check("Modbus slave 1 read 2 holding registers on ttyS1", got1 == want1
          and ev("modbus", "response", slave=1, hex=want1), f"guest read {got1!r}, want {want1}")
    got3 = (read("modbus-slave3.hex", b"") or b"").decode().strip()
    want3 = with_crc(bytes([3, 0x83, 2])).hex()
    check("Modbus slave 3 answers exception 02", got3 == want3 and ev("modbus", "exception", slave=3, code=2),
          f"guest read {got3!r}, want {want3}")
    got4 = (read("modbus-slave4.hex", b"") or b"").decode().strip()
    check("Modbus slave 4 stays silent", got4 == "" and ev("modbus", "silent", slave=4),
          f"guest read {got4!r}")

    # Serial: NMEA on ttyS2.
    raw = read("ttyS2.raw", b"") or b""
    sent = {e["line"] for e in ev("nmea", "sentence")}
    lines = [l.strip() for l in raw.decode("ascii", "replace").split("\n")]
    valid = [l for l in lines if re.fullmatch(r"\$([^*$]+)\*([0-9A-F]{2})", l)
             and nmea_checksum(l[1:l.index("*")]) == l[-2:]]
    matched = [l for l in valid if l in sent]
    check("NMEA sentences with good checksums from the peer on ttyS2",
          any(l.startswith("$GPGGA") for l in matched) and any(l.startswith("$GPRMC") for l in matched),
          f"{len(raw)} bytes, {len(valid)} valid lines, {len(matched)} matching the peer's log")

    passed, failed = sum(results), len(results) - sum(results)
    print(f"smoke: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
