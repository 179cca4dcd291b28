"""Register images of the emulated board's I2C chips (board/qemu/*.json), shared by
preload_regs.py and expected.py. Python 3 standard library only.

An image is a JSON object:

    {
      "chip": "BME280",                 # free text; expected.py picks its formulas by it
      "address": "0x76",                # 7-bit I2C address (one of i2c-stub's chip_addr)
      "registers": {                    # byte registers: register -> byte, or list of bytes
        "0xD0": "0x60",                 #   stored at register, register+1, ...
        "0x88": ["0x70", "0x6B", ...]
      },
      "words": {                        # 16-bit SMBus word registers, exactly as i2c-stub stores
        "0x01": "0x83C3"                #   them: what `i2cget -y N ADDR 0x01 w` prints and what
      },                                #   an SMBus read-word returns (low byte = first on the wire)
      "chip_registers": {               # optional, big-endian chips only: the same word registers
        "0x01": "0xC383"                #   as the datasheet reads them (first byte on the wire is
      },                                #   the MSB); must equal "words" byte-swapped (checked)
      "notes": ["..."]                  # free text
    }

Numbers are strings ("0x60", "96") or JSON integers.
"""
import json
import os

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_IMAGES = [os.path.join(REPO, "board", "qemu", n) for n in ("bme280.json", "ads1115.json")]


class ImageError(ValueError):
    pass


def _num(v, what, lo, hi):
    if isinstance(v, bool):
        raise ImageError(f"{what}: {v!r} is not a number")
    if isinstance(v, int):
        n = v
    elif isinstance(v, str):
        try:
            n = int(v, 0)
        except ValueError:
            raise ImageError(f"{what}: {v!r} is not a number") from None
    else:
        raise ImageError(f"{what}: {v!r} is not a number")
    if not lo <= n <= hi:
        raise ImageError(f"{what}: {v!r} outside {lo:#x}..{hi:#x}")
    return n


def swap16(w):
    return ((w & 0xFF) << 8) | (w >> 8)


class Image:
    def __init__(self, path):
        self.path = path
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ImageError(f"{path}: {e}") from None
        if not isinstance(doc, dict):
            raise ImageError(f"{path}: not a JSON object")
        self.chip = str(doc.get("chip", ""))
        self.address = _num(doc.get("address"), f"{path}: address", 0x03, 0x77)
        # bytes: register -> byte value (one entry per register)
        self.bytes = {}
        # runs: (start register, [bytes]) in file order, for block writes
        self.runs = []
        for key, val in (doc.get("registers") or {}).items():
            reg = _num(key, f"{path}: register {key}", 0, 0xFF)
            vals = val if isinstance(val, list) else [val]
            if not vals:
                raise ImageError(f"{path}: register {key}: empty list")
            data = [_num(v, f"{path}: register {key}", 0, 0xFF) for v in vals]
            if reg + len(data) > 0x100:
                raise ImageError(f"{path}: register {key}: {len(data)} bytes run past 0xFF")
            for i, b in enumerate(data):
                if reg + i in self.bytes:
                    raise ImageError(f"{path}: register {reg + i:#04x} given twice")
                self.bytes[reg + i] = b
            self.runs.append((reg, data))
        self.words = {}
        for key, val in (doc.get("words") or {}).items():
            reg = _num(key, f"{path}: word {key}", 0, 0xFF)
            if reg in self.bytes:
                raise ImageError(f"{path}: register {reg:#04x} is both a byte and a word")
            self.words[reg] = _num(val, f"{path}: word {key}", 0, 0xFFFF)
        self.chip_registers = {}
        for key, val in (doc.get("chip_registers") or {}).items():
            reg = _num(key, f"{path}: chip_register {key}", 0, 0xFF)
            v = _num(val, f"{path}: chip_register {key}", 0, 0xFFFF)
            if reg not in self.words:
                raise ImageError(f"{path}: chip_register {key} has no entry in words")
            if swap16(v) != self.words[reg]:
                raise ImageError(
                    f"{path}: chip_register {key}={v:#06x} but words[{key}]={self.words[reg]:#06x}; "
                    f"i2c-stub must hold {swap16(v):#06x} (bytes swapped)")
            self.chip_registers[reg] = v
        if not self.bytes and not self.words:
            raise ImageError(f"{path}: no registers")

    def byte(self, reg):
        """The byte a byte read at reg returns (i2c-stub: low byte of its word; 0 if never written)."""
        if reg in self.bytes:
            return self.bytes[reg]
        if reg in self.words:
            return self.words[reg] & 0xFF
        return 0

    def block(self, reg, n):
        return bytes(self.byte(reg + i) for i in range(n))

    def word(self, reg):
        """The SMBus word i2c-stub returns at reg."""
        if reg in self.words:
            return self.words[reg]
        return self.byte(reg)  # a byte write leaves the high byte 0 in a fresh stub

    def chip_word(self, reg):
        """A big-endian chip's 16-bit register as its datasheet reads it."""
        return swap16(self.word(reg))


def load(paths=None):
    return [Image(p) for p in (paths or DEFAULT_IMAGES)]
