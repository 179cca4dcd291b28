#!/usr/bin/env python3
"""Preloads register images (board/qemu/*.json) into i2c-stub with i2cset, inside the guest.

    preload_regs.py [--bus N] [--verify] [--dry-run] [IMAGE.json ...]

--bus defaults to $HIL_I2C_BUS, else the adapter named "SMBus stub driver" in /sys/class/i2c-adapter.
Byte registers are written with I2C-block writes (`i2cset ... i`, up to 32 bytes a call; single bytes
with `b`), word registers with `i2cset ... w` (the value i2c-stub must hold, already byte-swapped for
big-endian chips: see hilimage.py). --verify reads everything back (`i2cdump ... b` once per chip,
`i2cget ... w` per word) and fails on any difference. --dry-run prints the commands only.
Prints one JSON line: {"bus": N, "chips": [{"address": "0x76", "bytes": 44, "words": 0, "commands": 7}], "verified": true}.
Exit status 0 on success, 1 on any failure (the failing command is on stderr).
"""
import argparse
import glob
import json
import os
import re
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hilimage  # noqa: E402

STUB_NAME = "SMBus stub driver"
BLOCK_MAX = 32  # I2C_SMBUS_BLOCK_MAX


def find_stub_bus():
    for name in sorted(glob.glob("/sys/class/i2c-adapter/i2c-*/name")):
        with open(name) as f:
            if f.read().strip() == STUB_NAME:
                return int(name.split("/")[-2].split("-")[1])
    return None


def stub_addresses():
    try:
        with open("/sys/module/i2c_stub/parameters/chip_addr") as f:
            return {int(a) for a in f.read().strip().split(",") if a and int(a)}
    except OSError:
        return None


def commands_for(img, bus):
    cmds = []
    for reg, data in img.runs:
        for off in range(0, len(data), BLOCK_MAX):
            chunk = data[off:off + BLOCK_MAX]
            args = ["i2cset", "-y", str(bus), f"0x{img.address:02x}", f"0x{reg + off:02x}"]
            args += [f"0x{b:02x}" for b in chunk]
            args.append("i" if len(chunk) > 1 else "b")
            cmds.append(args)
    for reg, w in sorted(img.words.items()):
        cmds.append(["i2cset", "-y", str(bus), f"0x{img.address:02x}", f"0x{reg:02x}", f"0x{w:04x}", "w"])
    return cmds


def run(args):
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{shlex.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def parse_i2cdump(text):
    """i2cdump's table ('80: 70 6b ...', columns of 3 characters; blank where a range starts or ends
    mid-row, XX for a read error) -> {register: byte}; blanks and XX are left out."""
    regs = {}
    for line in text.splitlines():
        m = re.match(r"^([0-9a-f]{2}):", line)
        if not m:
            continue
        base = int(m.group(1), 16)
        for i in range(16):
            tok = line[4 + 3 * i:6 + 3 * i]
            if re.fullmatch(r"[0-9a-f]{2}", tok):
                regs[base + i] = int(tok, 16)
    return regs


def verify(img, bus):
    problems = []
    dump = parse_i2cdump(run(["i2cdump", "-y", str(bus), f"0x{img.address:02x}", "b"]))
    for reg, want in sorted(img.bytes.items()):
        got = dump.get(reg)
        if got != want:
            problems.append(f"0x{img.address:02x} reg 0x{reg:02x}: read {got if got is None else hex(got)}, image 0x{want:02x}")
    for reg, want in sorted(img.words.items()):
        got = int(run(["i2cget", "-y", str(bus), f"0x{img.address:02x}", f"0x{reg:02x}", "w"]).strip(), 16)
        if got != want:
            problems.append(f"0x{img.address:02x} word 0x{reg:02x}: read 0x{got:04x}, image 0x{want:04x}")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", nargs="*", help="image files (default: board/qemu/bme280.json ads1115.json)")
    ap.add_argument("--bus", type=int, default=None, help="i2c bus number (default: $HIL_I2C_BUS or the stub's)")
    ap.add_argument("--verify", action="store_true", help="read everything back and compare")
    ap.add_argument("--dry-run", action="store_true", help="print the i2cset commands, run nothing")
    args = ap.parse_args()
    try:
        images = hilimage.load(args.images)
    except hilimage.ImageError as e:
        print(f"preload_regs: {e}", file=sys.stderr)
        return 1
    bus = args.bus
    if bus is None and os.environ.get("HIL_I2C_BUS", "").isdigit():
        bus = int(os.environ["HIL_I2C_BUS"])
    if bus is None and not args.dry_run:
        bus = find_stub_bus()
        if bus is None:
            print(f"preload_regs: no i2c adapter named {STUB_NAME!r}: is i2c-stub loaded?", file=sys.stderr)
            return 1
    if args.dry_run:
        for img in images:
            for c in commands_for(img, "$HIL_I2C_BUS" if bus is None else bus):
                print(shlex.join(c).replace("'$HIL_I2C_BUS'", '"$HIL_I2C_BUS"'))
        return 0
    present = stub_addresses()
    summary = {"bus": bus, "chips": [], "verified": False}
    problems = []
    try:
        for img in images:
            if present is not None and img.address not in present:
                raise RuntimeError(f"{img.path}: address 0x{img.address:02x} is not one of i2c-stub's chip_addr "
                                   f"({', '.join(hex(a) for a in sorted(present))})")
            cmds = commands_for(img, bus)
            for c in cmds:
                run(c)
            summary["chips"].append({"chip": img.chip, "address": f"0x{img.address:02x}", "bytes": len(img.bytes),
                                     "words": len(img.words), "commands": len(cmds)})
        if args.verify:
            for img in images:
                problems += verify(img, bus)
            summary["verified"] = not problems
    except (RuntimeError, OSError) as e:
        print(f"preload_regs: {e}", file=sys.stderr)
        return 1
    for p in problems:
        print(f"preload_regs: mismatch: {p}", file=sys.stderr)
    print(json.dumps(summary))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
