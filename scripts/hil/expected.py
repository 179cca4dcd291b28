#!/usr/bin/env python3
"""What a correct driver must report for the emulated board's register images.

    scripts/hil/expected.py [--compact] [IMAGE.json ...]     (default: board/qemu/bme280.json ads1115.json)
    scripts/hil/expected.py --self-test

Written from the datasheets, independently of the Swift code:
  BME280 (Bosch BST-BME280-DS002, section 4.2.3 "Compensation formulas", section 8.2 the 64-bit
  pressure variant): temperature in 0.01 degC (int32), pressure in Pa as unsigned Q24.8 (int64
  arithmetic), humidity in %RH as unsigned Q22.10 (int32 arithmetic). The C code's integer
  semantics are reproduced exactly: >> on a negative number is an arithmetic shift (Python's >>
  is too), `/` truncates toward zero, and every intermediate is checked to fit the C type (signed
  overflow would be undefined in C and a trap in Swift: such an image is refused).
  ADS1115 (TI SBAS444): the config register's PGA gives the full-scale range, volts =
  code * FSR / 32768 with the code a signed 16-bit two's complement.
Prints one JSON object: {"bme280": {...}, "ads1115": {...}} keyed by the images' "chip" in lower case.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hilimage  # noqa: E402

I32 = (-(1 << 31), (1 << 31) - 1)
I64 = (-(1 << 63), (1 << 63) - 1)


class Overflow(ArithmeticError):
    pass


def fit(v, rng, what):
    if not rng[0] <= v <= rng[1]:
        raise Overflow(f"{what} = {v} does not fit the datasheet's {'int32' if rng == I32 else 'int64'}")
    return v


def cdiv(a, b):
    """C integer division: truncates toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def s16(lo, hi):
    v = lo | (hi << 8)
    return v - 0x10000 if v & 0x8000 else v


def s8(b):
    return b - 0x100 if b & 0x80 else b


def s12(v):
    return v - 0x1000 if v & 0x800 else v


# ---------------------------------------------------------------- BME280

def bme280_calibration(img):
    c = img.block(0x88, 24)
    cal = {"dig_T1": c[0] | c[1] << 8, "dig_T2": s16(c[2], c[3]), "dig_T3": s16(c[4], c[5]),
           "dig_P1": c[6] | c[7] << 8}
    for i in range(2, 10):
        cal[f"dig_P{i}"] = s16(c[6 + 2 * (i - 1)], c[7 + 2 * (i - 1)])
    cal["dig_H1"] = img.byte(0xA1)
    e = img.block(0xE1, 7)
    cal["dig_H2"] = s16(e[0], e[1])
    cal["dig_H3"] = e[2]
    # 0xE4 [11:4] / 0xE5 [3:0] and 0xE5 [7:4] / 0xE6 [11:4]: signed 12-bit values.
    cal["dig_H4"] = s12((e[3] << 4) | (e[4] & 0x0F))
    cal["dig_H5"] = s12((e[5] << 4) | (e[4] >> 4))
    cal["dig_H6"] = s8(e[6])
    return cal


def bme280_raw(img):
    d = img.block(0xF7, 8)
    return {"adc_P": (d[0] << 12) | (d[1] << 4) | (d[2] >> 4),
            "adc_T": (d[3] << 12) | (d[4] << 4) | (d[5] >> 4),
            "adc_H": (d[6] << 8) | d[7]}


def bme280_temperature(cal, adc_T):
    """Returns (T in 0.01 degC, t_fine): BME280_compensate_T_int32."""
    T1, T2, T3 = cal["dig_T1"], cal["dig_T2"], cal["dig_T3"]
    a = fit((adc_T >> 3) - (T1 << 1), I32, "T var1 term")
    var1 = fit(fit(a * T2, I32, "T var1 product") >> 11, I32, "T var1")
    b = fit((adc_T >> 4) - T1, I32, "T var2 term")
    sq = fit(b * b, I32, "T var2 square") >> 12
    var2 = fit(fit(sq * T3, I32, "T var2 product") >> 14, I32, "T var2")
    t_fine = fit(var1 + var2, I32, "t_fine")
    T = fit(t_fine * 5 + 128, I32, "T") >> 8
    return T, t_fine


def bme280_pressure(cal, adc_P, t_fine):
    """Pa as unsigned Q24.8: BME280_compensate_P_int64 (0 when var1 is 0, as the datasheet returns)."""
    P = [None] + [cal[f"dig_P{i}"] for i in range(1, 10)]
    var1 = fit(t_fine - 128000, I64, "P var1")
    var2 = fit(fit(var1 * var1, I64, "P var1^2") * P[6], I64, "P var2")
    var2 = fit(var2 + fit(fit(var1 * P[5], I64, "P var1*P5") << 17, I64, "P var1*P5<<17"), I64, "P var2")
    var2 = fit(var2 + fit(P[4] << 35, I64, "P4<<35"), I64, "P var2")
    var1 = fit((fit(var1 * var1 * P[3], I64, "P var1^2*P3") >> 8) +
               fit(fit(var1 * P[2], I64, "P var1*P2") << 12, I64, "P var1*P2<<12"), I64, "P var1")
    var1 = fit(fit(((1 << 47) + var1) * P[1], I64, "P var1*P1") >> 33, I64, "P var1")
    if var1 == 0:
        return 0
    p = 1048576 - adc_P
    p = cdiv(fit(fit(fit(p << 31, I64, "p<<31") - var2, I64, "p") * 3125, I64, "p*3125"), var1)
    var1 = fit(fit(P[9] * (p >> 13), I64, "P9*p") * (p >> 13), I64, "P var1") >> 25
    var2 = fit(P[8] * p, I64, "P8*p") >> 19
    p = fit(((p + var1 + var2) >> 8) + (P[7] << 4), I64, "p")
    return p & 0xFFFFFFFF  # the datasheet returns it as BME280_U32_t


def bme280_humidity(cal, adc_H, t_fine):
    """%RH as unsigned Q22.10: bme280_compensate_H_int32."""
    H1, H2, H3, H4, H5, H6 = (cal[f"dig_H{i}"] for i in range(1, 7))
    v = fit(t_fine - 76800, I32, "H v")
    a = fit(fit(adc_H << 14, I32, "adc_H<<14") - fit(H4 << 20, I32, "H4<<20") - fit(H5 * v, I32, "H5*v"),
            I32, "H a")
    a = fit(a + 16384, I32, "H a") >> 15
    b = fit(v * H6, I32, "v*H6") >> 10
    c = fit(fit(v * H3, I32, "v*H3") >> 11, I32, "H c") + 32768
    bc = fit(b * c, I32, "H b*c") >> 10
    d = fit(fit(fit(bc + 2097152, I32, "H d") * H2, I32, "H d*H2") + 8192, I32, "H d") >> 14
    v = fit(a * d, I32, "H v")
    s = fit((v >> 15) * (v >> 15), I32, "H v^2") >> 7
    v = fit(v - (fit(s * H1, I32, "H v^2*H1") >> 4), I32, "H v")
    v = max(0, min(v, 419430400))
    return v >> 12


def bme280(img):
    cal = bme280_calibration(img)
    raw = bme280_raw(img)
    T, t_fine = bme280_temperature(cal, raw["adc_T"])
    p = bme280_pressure(cal, raw["adc_P"], t_fine)
    h = bme280_humidity(cal, raw["adc_H"], t_fine)
    return {
        "address": f"0x{img.address:02x}",
        "chip_id": img.byte(0xD0),
        "status": img.byte(0xF3),
        "calibration": cal,
        "raw": raw,
        "t_fine": t_fine,
        "temperature_centi_c": T,
        "temperature_c": T / 100,
        "pressure_q24_8": p,
        "pressure_pa": p / 256,
        "humidity_q22_10": h,
        "humidity_percent": h / 1024,
    }


# ---------------------------------------------------------------- ADS1115

PGA_FSR = {0: 6.144, 1: 4.096, 2: 2.048, 3: 1.024, 4: 0.512, 5: 0.256, 6: 0.256, 7: 0.256}
MUX = {0: "AIN0-AIN1", 1: "AIN0-AIN3", 2: "AIN1-AIN3", 3: "AIN2-AIN3",
       4: "AIN0-GND", 5: "AIN1-GND", 6: "AIN2-GND", 7: "AIN3-GND"}
DATA_RATE = {0: 8, 1: 16, 2: 32, 3: 64, 4: 128, 5: 250, 6: 475, 7: 860}


def ads1115(img):
    config = img.chip_word(0x01)
    raw = img.chip_word(0x00)
    code = raw - 0x10000 if raw & 0x8000 else raw
    pga = (config >> 9) & 7
    fsr = PGA_FSR[pga]
    return {
        "address": f"0x{img.address:02x}",
        "config": config,
        "config_hex": f"0x{config:04X}",
        "config_smbus_word_hex": f"0x{img.word(0x01):04X}",
        "os": config >> 15,
        "mux": MUX[(config >> 12) & 7],
        "pga": pga,
        "fsr_volts": fsr,
        "mode": "single-shot" if config & 0x100 else "continuous",
        "data_rate_sps": DATA_RATE[(config >> 5) & 7],
        "conversion_raw_hex": f"0x{raw:04X}",
        "conversion_smbus_word_hex": f"0x{img.word(0x00):04X}",
        "conversion_code": code,
        "lsb_volts": fsr / 32768,
        "volts": code * fsr / 32768,
        "volts_by_pga": {f"{PGA_FSR[g]:g}": code * PGA_FSR[g] / 32768 for g in range(6)},
    }


def compute(images):
    out = {}
    for img in images:
        kind = img.chip.lower()
        if kind == "bme280":
            out[kind] = bme280(img)
        elif kind == "ads1115":
            out[kind] = ads1115(img)
        else:
            raise hilimage.ImageError(f"{img.path}: no formulas for chip {img.chip!r}")
    return out


def self_test():
    # The numeric example in Bosch's BMP280 datasheet (section 3.12), whose temperature and 64-bit
    # pressure formulas the BME280's are: 25.08 degC and about 100653 Pa (100653.27 Pa is the
    # floating-point formula's; the 64-bit integer formula gives 25767233 / 256 = 100653.25 Pa, as the
    # datasheet's C code compiled with gcc does).
    cal = {"dig_T1": 27504, "dig_T2": 26435, "dig_T3": -1000, "dig_P1": 36477, "dig_P2": -10685,
           "dig_P3": 3024, "dig_P4": 2855, "dig_P5": 140, "dig_P6": -7, "dig_P7": 15500,
           "dig_P8": -14600, "dig_P9": 6000}
    T, t_fine = bme280_temperature(cal, 519888)
    assert (T, t_fine) == (2508, 128422), (T, t_fine)
    p = bme280_pressure(cal, 415148, t_fine)
    assert p == 25767233 and round(p / 256) == 100653, p
    assert cdiv(-7, 2) == -3 and cdiv(7, -2) == -3 and cdiv(7, 2) == 3
    assert s12(0xFFF) == -1 and s12(0x139) == 313
    print("expected.py self-test: ok")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", nargs="*", help="image files (default: board/qemu/bme280.json ads1115.json)")
    ap.add_argument("--compact", action="store_true", help="one line of JSON")
    ap.add_argument("--self-test", action="store_true", help="check the formulas against the datasheet example")
    args = ap.parse_args()
    if args.self_test:
        self_test()
        return 0
    try:
        result = compute(hilimage.load(args.images))
    except (hilimage.ImageError, Overflow) as e:
        print(f"expected.py: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=None if args.compact else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
