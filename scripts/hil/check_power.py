#!/usr/bin/env python3
"""Judges a power-fail run of the emulated board (scripts/hil/run-power), on the host.

    check_power.py --out DIR [--bin PATH] [--sigpwr] [--records FILE --inspect FILE]

Reads what the guest left in DIR (timeline, leds.jsonl, led-power-hold, inspect-hold.json, run.json,
store-path), exports, inspects and verifies the store with edgelog (export.jsonl, inspect-end.json,
verify.txt), and checks the records of types 17 brownout, 18 power_restored, 19 power_budget and 20
brownout_loop (printed as numbers by export; names are accepted too), the store's metadata during the hold
and at the end, and the LEDs, against EXPECT below. All times are CLOCK_MONOTONIC ns of the guest (the
records' *_mono_ns, hil-powerdev's stamps, the kernel's input event stamps). Prints one line per check
("ok", "FAIL", or "info" for values that are only reported), writes power-summary.json (the measured
latencies) and exits 0 only if every check holds.

Edit EXPECT to follow the implementation: a value of None skips that check (its value is still reported).
--records and --inspect judge an export (JSON lines) and an `inspect --json` output given as files instead
of running edgelog on the store (no verify then): for re-judging a run or testing the checker itself.
"""
import argparse
import json
import os
import re
import subprocess
import sys

EXPECT = {
    # The board's power_fail section (board/qemu-power.yaml).
    "hold_up_ms": 500,
    "resume_after_ms": 1000,
    # Brownout records (type 17, source "edgelog"), in commit order: one per trigger the test fires.
    # "step" is the timeline event that fires it; "input" None = not checked.
    "brownouts": [
        {"trigger": "gpio", "input": "edgelog-sim/PWR_FAIL", "step": "pwr_fail"},
        {"trigger": "input_key", "input": None, "step": "powerdown_seen"},
    ],
    "brownout_with_sigpwr": {"trigger": "sigpwr", "input": None, "step": "sigpwr"},  # appended with --sigpwr
    "brownout_payload_keys": ["trigger", "input", "detected_mono_ns", "detected_by", "frozen_mono_ns", "edge_to_freeze_us",
                              "in_flight_committed_mono_ns", "buffered_records", "refused", "bo_event", "hold_up_ms",
                              "budget_verdict"],
    "detect_within_ms": 250,      # detected_mono_ns after the edge (the pull write, or the key's kernel stamp)
    "commit_within_hold": True,   # the window's clean_mono_ns (run.json power_windows) - detected_mono_ns <= hold_up_ms
    "freeze_within_hold": True,   # 0 <= edge_to_freeze_us <= hold_up_ms * 1000
    "refused": None,              # expected value of "refused" in brownout records (None: report only)
    "bo_event_counts_up": True,   # each brownout's bo_event is the previous one + 1
    # power_restored records (type 18): at least this many; the one after PWR_FAIL's return to good is checked.
    "power_restored_min": 1,
    "power_restored_payload_keys": ["held_ms", "clean_mono_ns", "window_us", "refused"],
    "restore_not_before_resume_after": True,   # the power_restored record's capture (boot_ns) - (pwr_good write) >= resume_after_ms
    "restore_within_ms": 1000,                 # ... and at most resume_after_ms + this
    "data_after_restore_min": 3,               # data records captured after the power_restored record (boot_ns; no suspend in the VM)
    "brownout_loop_max": 0,                    # type 20 records
    "power_budget_min": None,                  # type 19 records (None: report only)
    # The store's metadata (edgelog inspect --json): during the hold (run 300 ms after PWR_FAIL) and at the end.
    "hold_metadata": {"clean_flag": True},
    "hold_bo_event_min": 1,
    "end_metadata": {"clean_flag": True, "unexp_rst": 0},
    "end_bo_event_is_brownouts": True,
    # LEDs (leds.jsonl: uleds names and gpio-sim line names) in two windows: "hold" from the PWR_FAIL
    # window's clean mark (the status is told after the window, DESIGN.md 12) + led_settle_ms to the write
    # back to good; "after_restore" from power_restored's clean_mono_ns +
    # led_settle_ms to the end of the run. States: "on" (never 0 in the window), "off" (always 0), "blink"
    # (at least 2 changes, or 1 in a window shorter than 1.1 s), "changed" (at least 1), None (report only).
    "led_settle_ms": 150,
    # The hold window ends at power good, but no later than this long after the clean mark: the code
    # LED's hold code starts with a 1.2 s long flash, timed from when the LED thread saw the condition
    # (just after the clean mark), not from the guest's return to good, which under TCG can overrun.
    "led_hold_max_ms": 1100,
    "leds": {
        "LED_POWER": {"hold": "on", "after_restore": "off"},
        # The code LED starts power_fail_hold's code (2-1) with a 1.2 s long flash: on for the whole
        # hold window. After the restore it shows the most urgent condition left (the Modbus slave
        # that answers with an exception keeps sensor_fault up): not judged.
        "edgelog:green:status": {"hold": "on", "after_restore": None},
        # sensor_fault (S) blinks the fault LED throughout.
        "edgelog:red:fault": {"hold": "blink", "after_restore": "blink"},
    },
    "led_power_read_in_hold": 1,   # LED_POWER's value read by the guest 1 s into the hold (None: skip)
    "run_exit": 0,
    "verify_passes": True,
}

TYPES = {"brownout": 17, "power_restored": 18, "power_budget": 19, "brownout_loop": 20}
here = os.path.dirname(os.path.abspath(__file__))
failures = []
summary = {}


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def info(what):
    print("info  " + what)


def is_type(record, name):
    return record.get("type") in (TYPES[name], name, str(TYPES[name]))


def read_timeline(path):
    """"EVENT MONO_NS [EXTRA...]" lines -> {event: [mono_ns, extra...]} (the last of each event)."""
    timeline = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2:
                timeline[parts[0]] = [int(p) if re.fullmatch(r"-?\d+", p) else p for p in parts[1:]]
    return timeline


def read_jsonl(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        rows.append({"unparsed": line})
    return rows


def led_series(leds_log):
    """{name: [(mono_ns, value)]} from leds.jsonl (uleds brightness and gpio-sim line values)."""
    series = {}
    for e in leds_log:
        if e.get("kind") == "led":
            series.setdefault(e["name"], []).append((e["mono_ns"], e["brightness"]))
        elif e.get("kind") == "gpio" and "value" in e:
            series.setdefault(e["name"], []).append((e["mono_ns"], e["value"]))
    return series


def led_state(points, start, end):
    """Values of one LED in [start, end]: the value at start, then each change. Returns (values, changes)."""
    before = [v for t, v in points if t <= start]
    values = [before[-1]] if before else []
    changes = 0
    last = values[-1] if values else None
    for t, v in points:
        if start < t <= end:
            if v != last:
                changes += 1
            values.append(v)
            last = v
    return values, changes


def judge_led(name, window, want, points, start, end):
    values, changes = led_state(points, start, end)
    desc = f"{name} in {window} ({(end - start) / 1e9:.2f} s): values {values[:12]}{'...' if len(values) > 12 else ''}, {changes} change(s)"
    if want is None:
        info(desc)
        return
    if want == "on":
        ok = bool(values) and all(v for v in values)
    elif want == "off":
        ok = bool(values) and not any(v for v in values)
    elif want == "blink":
        # A 1 Hz blink (500 ms on, 500 off) changes at least once in any 0.6 s and at least twice in
        # any 1.1 s (100 ms of slack for software timing under TCG); a shorter window cannot show more.
        need = 2 if end - start >= 1_100_000_000 else 1
        ok = changes >= need
        desc += f" (want at least {need} in this window)"
    elif want == "changed":
        ok = changes >= 1
    else:
        ok = False
        desc += f" (unknown expectation {want!r})"
    check(ok, f"{desc}: expected {want}")


def run(args, capture=True):
    return subprocess.run(args, capture_output=capture, text=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--bin", default=os.path.join(here, "..", "..", ".build", "debug", "edgelog"))
    ap.add_argument("--sigpwr", action="store_true", help="the run sent SIGPWR too (run-power --sigpwr)")
    ap.add_argument("--records", help="judge this export (JSON lines) instead of exporting the store")
    ap.add_argument("--inspect", help="with --records: this inspect --json output as the end metadata")
    args = ap.parse_args()
    if bool(args.records) != bool(args.inspect):
        ap.error("--records and --inspect go together")
    out = args.out
    E = EXPECT
    hold_ns = E["hold_up_ms"] * 1_000_000

    timeline = read_timeline(os.path.join(out, "timeline"))
    store = open(os.path.join(out, "store-path")).read().strip() if os.path.exists(os.path.join(out, "store-path")) else os.path.join(out, "store.img")
    run_exit = timeline.get("run_exit", [None, None])[1]
    if E["run_exit"] is not None:
        check(run_exit == E["run_exit"], f"edgelog run exited {E['run_exit']} after SIGTERM (got {run_exit})")
    for step in ("pwr_fail", "pwr_good", "powerdown_seen"):
        check(step in timeline, f"the guest reached step {step}" + ("" if step in timeline else f" (timeline: {sorted(timeline)})"))

    # The store, read on the host (or the files given).
    if args.records:
        records = read_jsonl(args.records)
        with open(args.inspect) as f:
            inspect_end = json.load(f)
        ins = subprocess.CompletedProcess([], 0, "", "")
    else:
        with open(os.path.join(out, "export.jsonl"), "w") as f:
            ex = subprocess.run([args.bin, "export", "--device", store], stdout=f, stderr=subprocess.PIPE, text=True)
        check(ex.returncode == 0, f"edgelog export exits 0 (got {ex.returncode}) {ex.stderr.strip()[:200]}")
        records = read_jsonl(os.path.join(out, "export.jsonl"))
        ins = run([args.bin, "inspect", "--device", store, "--json"])
        inspect_end = json.loads(ins.stdout) if ins.returncode == 0 and ins.stdout.strip() else {}
        with open(os.path.join(out, "inspect-end.json"), "w") as f:
            json.dump(inspect_end, f, indent=1)
        vargs = [args.bin, "verify", "--device", store, "--trust", os.path.join(out, "keys", "signing-key.pub.pem")]
        if os.path.exists(os.path.join(out, "anchor.json")):
            vargs += ["--anchor", os.path.join(out, "anchor.json")]
        v = run(vargs)
        with open(os.path.join(out, "verify.txt"), "w") as f:
            f.write(v.stdout + v.stderr)
        if E["verify_passes"]:
            last = v.stdout.strip().splitlines()[-1] if v.stdout.strip() else "(no output)"
            check(v.returncode == 0, f"edgelog verify passes the store: {last}")

    by_type = {name: [r for r in records if is_type(r, name)] for name in TYPES}
    for name, code in TYPES.items():
        info(f"{len(by_type[name])} {name} record(s) (type {code})")
    data = [r for r in records if r.get("type") == "data"]
    # The windows as the run measured them (edgelog run --json: power_windows).
    try:
        with open(os.path.join(out, "run.json")) as f:
            windows = (json.load(f) or {}).get("power_windows") or []
    except (OSError, json.JSONDecodeError):
        windows = []
    info(f"{len(windows)} window(s) in run.json: " + json.dumps([{k: w.get(k) for k in ("trigger", "edge_to_freeze_us", "edge_to_clean_us", "commits")} for w in windows]))
    summary["windows"] = windows

    # Brownouts, in commit order, against the triggers the test fired.
    wanted = list(E["brownouts"]) + ([E["brownout_with_sigpwr"]] if args.sigpwr else [])
    brownouts = [r.get("payload") or {} for r in by_type["brownout"]]
    check(len(brownouts) == len(wanted), f"{len(wanted)} brownout record(s): {[b.get('trigger') for b in brownouts]}")
    leds_log = read_jsonl(os.path.join(out, "leds.jsonl"))
    key_presses = [e for e in leds_log if e.get("kind") == "key" and e.get("code") == 116 and e.get("value") == 1]
    info(f"KEY_POWER presses seen by the guest's logger: {[e['event_ns'] for e in key_presses]}")
    summary["brownouts"] = []
    prev_bo = None
    gpio_clean = None   # the PWR_FAIL window's clean mark (run.json), where the LEDs' hold starts
    for i, want in enumerate(wanted):
        b = brownouts[i] if i < len(brownouts) else {}
        tag = f"brownout {i + 1} ({want['trigger']})"
        if not b:
            check(False, f"{tag}: no record")
            continue
        missing = [k for k in E["brownout_payload_keys"] if k not in b]
        check(not missing, f"{tag}: payload has every key" + (f" (missing {missing})" if missing else ""))
        check(b.get("trigger") == want["trigger"], f"{tag}: trigger {b.get('trigger')!r}")
        if want.get("input") is not None:
            check(b.get("input") == want["input"], f"{tag}: input {b.get('input')!r} (want {want['input']!r})")
        else:
            info(f"{tag}: input {b.get('input')!r}")
        if b.get("hold_up_ms") is not None:
            check(b.get("hold_up_ms") == E["hold_up_ms"], f"{tag}: hold_up_ms {b.get('hold_up_ms')}")
        det, frz = b.get("detected_mono_ns"), b.get("frozen_mono_ns")
        # The clean mark cannot be timed inside its own commit: the run's summary has it.
        com = next((w.get("clean_mono_ns") for w in windows if w.get("detected_mono_ns") == det), None)
        # The edge: the pull write for PWR_FAIL, the kernel's stamp of the key press, the kill for SIGPWR.
        edge = None
        if want["trigger"] == "gpio" and "pwr_fail" in timeline:
            edge = timeline["pwr_fail"][0]
        elif want["trigger"] == "input_key" and key_presses:
            # The press the window acted on: the last one at or before its detection (ACPI may report a
            # second press some ms later, during the hold), else the first.
            before = [e["event_ns"] for e in key_presses if isinstance(det, int) and e["event_ns"] <= det + 1_000_000]
            edge = before[-1] if before else key_presses[0]["event_ns"]
        elif want["step"] in timeline:
            edge = timeline[want["step"]][0]
        m = {"trigger": b.get("trigger"), "edge_ns": edge, "detected_mono_ns": det, "frozen_mono_ns": frz, "clean_mono_ns": com,
             "edge_to_freeze_us": b.get("edge_to_freeze_us"), "refused": b.get("refused"), "buffered_records": b.get("buffered_records")}
        # The pull write's edge happens somewhere inside the write (the guest stamps the clock before
        # and after it): a kernel-stamped detection is the edge itself, and under TCG on a busy host the
        # write alone has taken hundreds of ms. So the detection must fall after the write began and
        # within the limit of its return.
        edge_end = timeline["pwr_fail"][1] if want["trigger"] == "gpio" and "pwr_fail" in timeline else edge
        if isinstance(det, int) and edge is not None:
            lat = (det - edge) / 1e6
            lat_end = (det - edge_end) / 1e6
            m["edge_to_detect_ms"] = round(lat, 3)
            m["detected_by"] = b.get("detected_by")
            if edge_end != edge:
                what = f"{lat:.1f} ms after the pull write began, {lat_end:.1f} ms after it returned (it took {(edge_end - edge) / 1e6:.1f} ms)"
            else:
                what = f"{lat:.1f} ms after the edge"
            check(-1 <= lat and lat_end <= E["detect_within_ms"],
                  f"{tag}: detected {what}, by {b.get('detected_by')!r} (limit {E['detect_within_ms']} ms{' after the return' if edge_end != edge else ''})")
        if want["trigger"] == "gpio" and isinstance(com, int):
            gpio_clean = com
        if E["commit_within_hold"] and isinstance(det, int) and isinstance(com, int):
            check(0 <= com - det <= hold_ns, f"{tag}: committed and marked clean {(com - det) / 1e6:.1f} ms after detection (hold-up {E['hold_up_ms']} ms)")
            m["detect_to_clean_ms"] = round((com - det) / 1e6, 3)
        elif E["commit_within_hold"]:
            check(False, f"{tag}: no window with this detection time in run.json's power_windows")
        if isinstance(det, int) and isinstance(frz, int):
            check(frz >= det, f"{tag}: frozen {(frz - det) / 1e6:.1f} ms after detection")
        etf = b.get("edge_to_freeze_us")
        if E["freeze_within_hold"] and isinstance(etf, int):
            check(0 <= etf <= E["hold_up_ms"] * 1000, f"{tag}: edge_to_freeze_us {etf} within the hold-up time")
        if E["refused"] is not None:
            check(b.get("refused") == E["refused"], f"{tag}: refused {b.get('refused')!r}")
        else:
            info(f"{tag}: refused {b.get('refused')!r}, buffered_records {b.get('buffered_records')!r}")
        if E["bo_event_counts_up"] and isinstance(b.get("bo_event"), int):
            if prev_bo is not None:
                check(b["bo_event"] == prev_bo + 1, f"{tag}: bo_event {b['bo_event']} follows {prev_bo}")
            prev_bo = b["bo_event"]
        summary["brownouts"].append(m)

    # power_restored after PWR_FAIL went back to good.
    restored = [(r, r.get("payload") or {}) for r in by_type["power_restored"]]
    check(len(restored) >= E["power_restored_min"], f"{len(restored)} power_restored record(s) (at least {E['power_restored_min']})")
    good = timeline.get("pwr_good", [None])[0]
    first_det = brownouts[0].get("detected_mono_ns") if brownouts else None
    clean = None
    summary["power_restored"] = []
    for i, (r, p) in enumerate(restored):
        missing = [k for k in E["power_restored_payload_keys"] if k not in p]
        check(not missing, f"power_restored {i + 1}: payload has every key" + (f" (missing {missing})" if missing else ""))
        info(f"power_restored {i + 1}: {json.dumps(p)}")
        summary["power_restored"].append(p)
    if restored and good is not None:
        p = restored[0][1]
        clean = restored[0][0].get("boot_ns")
        if isinstance(clean, int):
            after = (clean - good) / 1e6
            summary["good_to_restored_ms"] = round(after, 3)
            if E["restore_not_before_resume_after"]:
                check(after >= E["resume_after_ms"] - 1, f"power_restored {after:.1f} ms after PWR_FAIL went good (not before resume_after_ms {E['resume_after_ms']})")
            if E["restore_within_ms"] is not None:
                check(after <= E["resume_after_ms"] + E["restore_within_ms"], f"power_restored within resume_after_ms + {E['restore_within_ms']} ms of power good")
            if isinstance(first_det, int) and isinstance(p.get("held_ms"), int):
                lo, hi = (good - first_det) / 1e6 - 50, (clean - first_det) / 1e6 + 50
                check(lo <= p["held_ms"] <= hi, f"power_restored held_ms {p['held_ms']} between the fail-to-good time and the fail-to-restore time ({lo:.0f} ... {hi:.0f})")
            if E["data_after_restore_min"] is not None:
                n = len([r for r in data if r.get("boot_ns", 0) > clean])
                check(n >= E["data_after_restore_min"], f"{n} readings captured after power_restored (at least {E['data_after_restore_min']})")
    n_loop = len(by_type["brownout_loop"])
    if E["brownout_loop_max"] is not None:
        check(n_loop <= E["brownout_loop_max"], f"{n_loop} brownout_loop record(s) (at most {E['brownout_loop_max']})")
    if E["power_budget_min"] is not None:
        check(len(by_type["power_budget"]) >= E["power_budget_min"], f"{len(by_type['power_budget'])} power_budget record(s)")
    for r in by_type["power_budget"] + by_type["brownout_loop"]:
        info(f"type {r.get('type')}: {json.dumps(r.get('payload'))}")

    # Metadata during the hold and at the end.
    hold_meta = {}
    try:
        with open(os.path.join(out, "inspect-hold.json")) as f:
            hold_meta = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        check(False, f"inspect during the hold left JSON ({e})")
    if hold_meta and isinstance(clean, int) and "inspected_hold" in timeline:
        check(timeline["inspected_hold"][0] < clean, f"inspect during the hold ended {(clean - timeline['inspected_hold'][0]) / 1e6:.0f} ms before power_restored")
    if hold_meta:
        for k, want in E["hold_metadata"].items():
            check(hold_meta.get(k) == want, f"metadata during the hold: {k} {hold_meta.get(k)!r} (want {want!r})")
        if E["hold_bo_event_min"] is not None:
            check((hold_meta.get("bo_event") or 0) >= E["hold_bo_event_min"], f"metadata during the hold: bo_event {hold_meta.get('bo_event')}")
    if inspect_end:
        for k, want in E["end_metadata"].items():
            check(inspect_end.get(k) == want, f"metadata at the end: {k} {inspect_end.get(k)!r} (want {want!r})")
        if E["end_bo_event_is_brownouts"]:
            check(inspect_end.get("bo_event") == len(brownouts), f"metadata at the end: bo_event {inspect_end.get('bo_event')} = {len(brownouts)} brownout record(s)")
    else:
        check(False, f"edgelog inspect --json on the store: {ins.stderr.strip()[:200]}")

    # LEDs.
    series = led_series(leds_log)
    info("LEDs logged: " + ", ".join(f"{k} ({len(v)} events)" for k, v in sorted(series.items())))
    settle = E["led_settle_ms"] * 1_000_000
    end = timeline.get("stopping", [None])[0]
    led_windows = {}
    if isinstance(gpio_clean, int) and good is not None:
        hold_end = min(good, gpio_clean + E["led_hold_max_ms"] * 1_000_000)
        led_windows["hold"] = (gpio_clean + settle, hold_end)
    if isinstance(clean, int) and "powerdown_request" in timeline:
        led_windows["after_restore"] = (clean + settle, timeline["powerdown_request"][0])
    elif isinstance(clean, int) and end is not None:
        led_windows["after_restore"] = (clean + settle, end)
    for name, wants in E["leds"].items():
        if name not in series:
            if any(w is not None for w in wants.values()):
                check(False, f"{name}: logged by the LED logger")
            else:
                info(f"{name}: not logged")
            continue
        for window, want in wants.items():
            if window not in led_windows:
                if want is None:
                    info(f"{name}: window {window} could not be placed (missing timeline steps or records)")
                else:
                    check(False, f"{name}: window {window} could not be placed (missing timeline steps or records)")
                continue
            judge_led(name, window, want, series[name], *led_windows[window])
    if E["led_power_read_in_hold"] is not None:
        try:
            value, read_at = (int(x) for x in open(os.path.join(out, "led-power-hold")).read().split()[:2])
        except (OSError, ValueError):
            value, read_at = None, None
        where = f"{(read_at - timeline['pwr_fail'][0]) / 1e6:.0f} ms into the hold" if read_at and "pwr_fail" in timeline else "in the hold"
        if isinstance(read_at, int) and isinstance(gpio_clean, int) and read_at < gpio_clean:
            info(f"LED_POWER read {value} {where}, before the window's clean mark: not judged")
        else:
            check(value == E["led_power_read_in_hold"], f"LED_POWER read {value} {where} (want {E['led_power_read_in_hold']})")
    if "LED_POWER" in series and "pwr_fail" in timeline:
        on = [t for t, v in series["LED_POWER"] if v and t >= timeline["pwr_fail"][0]]
        if on:
            summary["pwr_fail_to_led_power_ms"] = round((on[0] - timeline["pwr_fail"][0]) / 1e6, 3)
            info(f"LED_POWER on {summary['pwr_fail_to_led_power_ms']} ms after the PWR_FAIL write (10 ms polling)")

    # Every source's seq without a hole.
    by_source = {}
    for r in records:
        by_source.setdefault(r.get("source"), []).append(r.get("seq"))
    for name, seqs in sorted(by_source.items(), key=lambda kv: str(kv[0])):
        check(seqs == list(range(1, len(seqs) + 1)), f"{name}: seq 1..{len(seqs)} without a hole")

    summary.update({"records": len(records), "checks_failed": len(failures), "failures": failures})
    with open(os.path.join(out, "power-summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"check_power: {len(records)} records; {'all checks passed' if not failures else str(len(failures)) + ' check(s) failed'}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
