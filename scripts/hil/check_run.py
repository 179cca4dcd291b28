#!/usr/bin/env python3
"""Judges a HIL run of `edgelog run --board board/qemu.yaml` (scripts/hil/run-board), on the host.

    check_run.py --out DIR [--bin PATH]

What it checks, from the files the guest left in DIR and independently of the Swift code:
  * the BME280 and ADS1115 records carry exactly what the datasheet formulas give for the register
    images (scripts/hil/expected.py), compared as exact decimals;
  * the Modbus records carry the registers serial_peer.py served, the NMEA records the sentences it
    printed, and its garbage and bad checksums became rejected_input records;
  * after `rmmod i2c_stub` the I2C sources wrote source_fault records and no more readings, while
    the serial sources went on committing readings;
  * every source's seq runs from 1 without a hole, the run exited 0, and edgelog verify passes the
    store with the key and the anchor.
Prints one line per check and exits 0 only if all hold.
"""
import argparse
import json
import os
import subprocess
import sys
from decimal import Decimal

here = os.path.dirname(os.path.abspath(__file__))
failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--bin", default=os.path.join(here, "..", "..", ".build", "debug", "edgelog"))
    args = ap.parse_args()
    out = args.out

    timeline = {}
    with open(os.path.join(out, "timeline")) as f:
        for line in f:
            key, value = line.split()
            timeline[key] = float(value)
    check(timeline.get("run_exit") == 0, f"edgelog run exited 0 after SIGTERM (got {timeline.get('run_exit')})")
    check("removed" in timeline, "rmmod i2c_stub succeeded while edgelog ran (the adapter was not held)")
    removed_ns = int(timeline.get("removed", 1e9) * 1e9)
    # Faults may come while rmmod runs (before "removed" is noted): they count from "removing" on.
    removing_ns = int(timeline.get("removing", timeline.get("removed", 1e9)) * 1e9)

    records = []
    with open(os.path.join(out, "export.jsonl")) as f:
        for line in f:
            records.append(json.loads(line, parse_float=Decimal))
    by_source = {}
    for r in records:
        by_source.setdefault(r["source"], []).append(r)

    images = [os.path.join(here, "..", "..", "board", "qemu", name) for name in ("bme280.json", "ads1115.json")]
    want = json.loads(subprocess.run([sys.executable, os.path.join(here, "expected.py"), "--compact"] + images,
                                     check=True, capture_output=True, text=True).stdout)

    # Exact values from the datasheet formulas.
    bme = [r for r in by_source.get("env.bme280", []) if r["type"] == "data"]
    check(len(bme) >= 5, f"BME280 readings committed before the removal ({len(bme)})")
    w = want["bme280"]
    t = Decimal(w["temperature_centi_c"]) / 100
    p = Decimal(w["pressure_q24_8"]) / 256
    h = Decimal(w["humidity_q22_10"]) / 1024
    check(all(r["payload"]["temperature_c"] == t and r["payload"]["pressure_pa"] == p and r["payload"]["humidity_pct"] == h for r in bme),
          f"every BME280 reading is {t} degC, {p} Pa, {h} %RH exactly")
    ads = [r for r in by_source.get("adc.ads1115", []) if r["type"] == "data"]
    wa = want["ads1115"]
    volts = Decimal(wa["conversion_code"]) * Decimal("4.096") / 32768
    check(len(ads) >= 5 and all(r["payload"]["raw"] == wa["conversion_code"] and r["payload"]["volts"] == volts for r in ads),
          f"every ADS1115 reading is code {wa['conversion_code']} = {volts} V at +-4.096 V ({len(ads)} readings)")

    # The I2C device goes away: faults, backoff, no more readings; the serial sources go on.
    for name in ("env.bme280", "adc.ads1115"):
        mine = by_source.get(name, [])
        after = [r for r in mine if r["boot_ns"] > removing_ns]
        late_data = [r for r in after if r["type"] == "data" and r["boot_ns"] > removed_ns + 1_000_000_000]
        faults = [r for r in after if r["type"] == "source_fault"]
        check(len(faults) >= 1 and not late_data, f"{name}: {len(faults)} source_fault record(s) after the removal and no reading later than 1 s after it")
        if faults:
            f0 = faults[0]["payload"]
            check(f0.get("error") in ("vanished", "nack", "io") and f0.get("device") and f0.get("failures") == 1,
                  f"{name}: the first fault names what failed and where: {f0.get('error')} on {f0.get('device')} {f0.get('address')} {f0.get('register')}")
            counts = [r["payload"]["failures"] for r in faults]
            check(counts == list(range(1, len(counts) + 1)), f"{name}: failures in a row count up {counts[:8]}")
    for name in ("flow.modbus1", "gps.nmea"):
        after = [r for r in by_source.get(name, []) if r["type"] == "data" and r["boot_ns"] > removed_ns + 1_000_000_000]
        check(len(after) >= 3, f"{name}: {len(after)} readings after the I2C removal (the serial line went on)")

    flow = [r for r in by_source.get("flow.modbus1", []) if r["type"] == "data"]
    check(flow and all(r["payload"].get("reg_0") == 215 and r["payload"].get("reg_1") == 1013 for r in flow),
          "Modbus slave 1 input registers 0,1 read as 215, 1013 in every reading")
    meter = [r for r in by_source.get("meter.modbus4", []) if r["type"] == "data"]
    check(meter and all(r["payload"].get("reg_0") == 42 for r in meter), "Modbus slave 4 holding register 0 read as 42")
    # Polls of a shared line wait for the other slaves' answers: poll_overrun records may come too.
    valve = [r for r in by_source.get("valve.modbus3", []) if r["type"] != "poll_overrun"]
    check(valve and all(r["type"] == "source_fault" and r["payload"].get("error") == "exception"
                        and "slave 3" in (r["payload"].get("address") or "") for r in valve),
          f"Modbus slave 3's exception 02 became {len(valve)} source_fault record(s) naming the slave, never a value: "
          + (valve[0]["payload"].get("detail", "") if valve else ""))
    gga = [r for r in by_source.get("gps.nmea", []) if r["type"] == "data" and r["payload"].get("sentence") == "GGA"]
    check(len(gga) >= 3, f"NMEA GGA sentences committed ({len(gga)})")
    rejected = [r for r in by_source.get("gps.nmea", []) if r["type"] == "rejected_input"]
    check(len(rejected) >= 1, f"garbage and bad checksums became rejected_input records ({len(rejected)})")

    for name, mine in sorted(by_source.items()):
        seqs = [r["seq"] for r in mine]
        check(seqs == list(range(1, len(seqs) + 1)), f"{name}: seq 1..{len(seqs)} without a hole")

    v = subprocess.run([args.bin, "verify", "--device", os.path.join(out, "store.img"), "--trust",
                        os.path.join(out, "keys", "signing-key.pub.pem"), "--anchor", os.path.join(out, "anchor.json")],
                       capture_output=True, text=True)
    check(v.returncode == 0, "edgelog verify passes the store with its key and anchor: " + v.stdout.strip().splitlines()[-1:][0] if v.stdout.strip() else "edgelog verify: no output")
    print(f"check_run: {len(records)} records; {'all checks passed' if not failures else str(len(failures)) + ' check(s) failed'}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
