#!/usr/bin/env python3
"""Judges the power-cut test (scripts/hil/power-cuts) on the host, and holds the one parser of the
acknowledgement lines.

    check_cuts.py --out DIR [--bin PATH]

Reads DIR/cycles.json (written by power-cuts: one object per boot, with the acknowledgements its console
showed), then runs on DIR/disk.img `edgelog verify` (the public key in DIR/board/state/keys, the anchor
when there is one), `edgelog export` (export.jsonl) and `edgelog inspect --json` (inspect.json), and checks
against EXPECT below:
  * verify passes (power-cut notes such as torn_tail_power_cut are not failures) and export exits 0;
  * every acknowledged commit is in the store (export's commit_id) with at least the acknowledged number of
    records and, when the acknowledgement gives last_mono, that last mono_ctr;
  * mono_ctr strictly increases over the export, and each source's seq runs from 1 without a hole;
  * the metadata counts every unclean cut (unexp_rst) and says clean after the final boot's SIGTERM; a cut
    after a completed safe-commit window (the boot's last record a brownout record) is not unclean;
  * one boot record per boot (boot_seq 1, 2, ...); the first says unexpected_reset false, each one after an
    unclean cut true; a recovery record with unclean_shutdown true follows each unclean cut.
Writes DIR/summary.json (the cycles, with their timings, and the checks) and exits 0 only if all hold.
Edit EXPECT to follow the implementation; None skips a check.
"""
import argparse
import json
import os
import subprocess
import sys

EXPECT = {
    "verify_passes": True,
    "export_exit": 0,
    "ack_records": ">=",             # records in the acknowledged commit vs the ack's "records": ">=", "==" or None
    "ack_last_mono": "==",           # the commit's last mono_ctr vs the ack's "last_mono": "==", ">=" or None
    "acks_min_per_cut_cycle": 1,     # every cut boot acknowledged at least this many commits before the cut (None: skip)
    "mono_ctr_strictly_increasing": True,
    "seq_without_holes": True,
    "unexp_rst_is_cuts": True,
    "end_clean_flag": True,
    "boot_records_per_boot": True,   # one boot record per boot that started edgelog, boot_seq 1, 2, ...
    "unexpected_reset_after_cut": True,
    "recovery_unclean_per_cut": True,
    "final_run_exit": 0,
}

here = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------------------------------------------
# Acknowledgements. The one place that knows their shape: edit here when the writer's output changes.
# Accepted, anywhere in a line (kernel messages may share the console), one JSON object each:
#   {"ack":{"commit_id":C,"segment_id":S,"records":N,"last_mono":M}}  edgelog run --acks (C: export's commit_id)
#   {"ack":{"segment_id":S,...}}                                       a format 5 writer's form (one commit per segment)
#   {"commit_id":C,"records":N,"first_seq":A,"last_seq":B}             edgelog ingest's acknowledgement line
# An object cut by the power cut or split by a kernel message is counted as broken, never guessed at.
def parse_acks(text):
    """Returns (acks, broken): acks in order of appearance, deduplicated by commit id, each
    {"commit_id": C, "records": N or None, "last_mono": M or None, "raw": {...}}."""
    decoder = json.JSONDecoder()
    text = text.replace("\r", "")
    acks, seen, broken = [], set(), 0
    i = 0
    while True:
        i = text.find("{", i)
        if i < 0:
            break
        head = text[i:i + 24].replace(" ", "")
        if not (head.startswith('{"ack"') or head.startswith('{"commit_id"')):
            i += 1
            continue
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            broken += 1
            i += 1
            continue
        i = end
        body = obj.get("ack") if isinstance(obj.get("ack"), dict) else obj
        commit = body.get("commit_id", body.get("segment_id"))
        if not isinstance(commit, int):
            broken += 1
            continue
        ack = {"commit_id": commit,
               "records": body.get("records") if isinstance(body.get("records"), int) else None,
               "last_mono": body.get("last_mono") if isinstance(body.get("last_mono"), int) else None,
               "raw": obj}
        if commit not in seen:
            seen.add(commit)
            acks.append(ack)
    return acks, broken


def parse_ack_files(paths):
    """The acknowledgements of one boot from its console.log (and guest.log): union, first seen first."""
    acks, seen, broken = [], set(), 0
    for p in paths:
        try:
            with open(p, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        a, b = parse_acks(text)
        broken += b
        for ack in a:
            if ack["commit_id"] not in seen:
                seen.add(ack["commit_id"])
                acks.append(ack)
    return acks, broken
# ---------------------------------------------------------------------------------------------------


failures = []
checks = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    checks.append({"ok": bool(ok), "what": what})
    if not ok:
        failures.append(what)


def info(what):
    print("info  " + what)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--bin", default=os.path.join(here, "..", "..", ".build", "debug", "edgelog"))
    args = ap.parse_args()
    out = args.out
    E = EXPECT
    with open(os.path.join(out, "cycles.json")) as f:
        cycles = json.load(f)
    disk = os.path.join(out, "disk.img")
    state = os.path.join(out, "board", "state")

    vargs = [args.bin, "verify", "--device", disk, "--trust", os.path.join(state, "keys", "signing-key.pub.pem")]
    if os.path.exists(os.path.join(state, "anchor.json")):
        vargs += ["--anchor", os.path.join(state, "anchor.json")]
    v = subprocess.run(vargs, capture_output=True, text=True)
    with open(os.path.join(out, "verify.txt"), "w") as f:
        f.write(v.stdout + v.stderr)
    last = v.stdout.strip().splitlines()[-1] if v.stdout.strip() else "(no output) " + v.stderr.strip()[:200]
    if E["verify_passes"]:
        check(v.returncode == 0, f"edgelog verify passes the store: {last}")
    notes = sorted({w for line in v.stdout.splitlines() for w in line.replace(",", " ").split() if w in
                    ("torn_tail_power_cut", "power_cut_explained", "tail_unreadable", "truncation_not_excluded")})
    info(f"verify notes: {notes}")

    with open(os.path.join(out, "export.jsonl"), "w") as f:
        ex = subprocess.run([args.bin, "export", "--device", disk], stdout=f, stderr=subprocess.PIPE, text=True)
    if E["export_exit"] is not None:
        check(ex.returncode == E["export_exit"], f"edgelog export exits {E['export_exit']} (got {ex.returncode}) {ex.stderr.strip()[:300]}")
    records = []
    with open(os.path.join(out, "export.jsonl")) as f:
        for line in f:
            if line.strip():
                records.append(json.loads(line))
    ins = subprocess.run([args.bin, "inspect", "--device", disk, "--json"], capture_output=True, text=True)
    meta = json.loads(ins.stdout) if ins.returncode == 0 and ins.stdout.strip() else {}
    with open(os.path.join(out, "inspect.json"), "w") as f:
        json.dump(meta, f, indent=1)
    check(bool(meta), f"edgelog inspect --json reads the store {ins.stderr.strip()[:200]}")

    by_commit = {}
    for r in records:
        by_commit.setdefault(r["commit_id"], []).append(r)

    # Acknowledged commits are in the store.
    cut_cycles = [c for c in cycles if c.get("cut")]
    total_acks = 0
    for c in cycles:
        acks = c.get("acks", [])
        total_acks += len(acks)
        missing, short, mono_bad = [], [], []
        for a in acks:
            seg = by_commit.get(a["commit_id"])
            if not seg:
                missing.append(a["commit_id"])
                continue
            if a.get("records") is not None and E["ack_records"]:
                n = len(seg)
                if (E["ack_records"] == ">=" and n < a["records"]) or (E["ack_records"] == "==" and n != a["records"]):
                    short.append((a["commit_id"], n, a["records"]))
            if a.get("last_mono") is not None and E["ack_last_mono"]:
                m = max(r["mono_ctr"] for r in seg)
                if (E["ack_last_mono"] == "==" and m != a["last_mono"]) or (E["ack_last_mono"] == ">=" and m < a["last_mono"]):
                    mono_bad.append((a["commit_id"], m, a["last_mono"]))
        tag = f"boot {c['cycle']} ({c['mode']})"
        if acks:
            check(not missing and not short and not mono_bad,
                  f"{tag}: all {len(acks)} acknowledged commits are in the store"
                  + (f"; missing {missing[:10]}" if missing else "") + (f"; fewer records (commit, have, acked) {short[:5]}" if short else "")
                  + (f"; last mono_ctr differs (commit, have, acked) {mono_bad[:5]}" if mono_bad else ""))
        if c.get("cut") and E["acks_min_per_cut_cycle"] is not None:
            check(len(acks) >= E["acks_min_per_cut_cycle"], f"{tag}: {len(acks)} acknowledgement(s) seen before the cut ({c.get('acks_broken', 0)} broken line(s))")
    info(f"{total_acks} acknowledgements over {len(cycles)} boots; {len(records)} records exported")

    if E["mono_ctr_strictly_increasing"]:
        monos = [r["mono_ctr"] for r in records]
        bad = [(i, monos[i - 1], monos[i]) for i in range(1, len(monos)) if monos[i] <= monos[i - 1]]
        check(not bad, f"mono_ctr strictly increases over {len(monos)} records" + (f" (not at {bad[:5]})" if bad else ""))
    if E["seq_without_holes"]:
        by_source = {}
        for r in records:
            by_source.setdefault(r["source"], []).append(r["seq"])
        for name, seqs in sorted(by_source.items()):
            check(seqs == list(range(1, len(seqs) + 1)), f"{name}: seq 1..{len(seqs)} without a hole"
                  + ("" if seqs == list(range(1, len(seqs) + 1)) else f" (first break after {next((seqs[i - 1] for i in range(1, len(seqs)) if seqs[i] != seqs[i - 1] + 1), None)})"))

    # A cut after a completed safe-commit window is not an unclean stop: the window's commit (its last
    # record a brownout record) marked the store clean, and nothing was written after it.
    boots_started = [c for c in cycles if c.get("started")]
    last_type = {}
    for r in records:
        if r["type"] in ("recovery", "incomplete", 3, 5):
            continue  # written by the next start's recovery, under its boot_seq
        last_type[r.get("boot_seq")] = r["type"]
    for i, c in enumerate(boots_started):
        c["window_completed"] = last_type.get(i + 1) in ("brownout", 17)
    unclean_cuts = [c for c in boots_started if c.get("cut") and not c.get("window_completed")]
    # The window's frame (its last record) and the clean mark are two writes in format 6 (FORMAT.md
    # A.9: the metadata with clean_flag 1 right after the frame): a cut between them leaves the
    # window's records committed and the store unclean. Such a cut may count either way.
    window_cuts = [c for c in boots_started if c.get("cut") and c.get("window_completed")]
    info(f"{len(cut_cycles)} cut(s): {len(window_cuts)} after a window's frame (clean unless the cut beat the clean mark), {len(unclean_cuts)} unclean")
    lo, hi = len(unclean_cuts), len(unclean_cuts) + len(window_cuts)

    if meta:
        if E["unexp_rst_is_cuts"]:
            check(lo <= (meta.get("unexp_rst") or 0) <= hi,
                  f"unexp_rst {meta.get('unexp_rst')} counts the {lo} unclean cut(s) and at most the {len(window_cuts)} cut(s) after a window's frame")
        if E["end_clean_flag"] is not None:
            check(meta.get("clean_flag") == E["end_clean_flag"], f"clean_flag {meta.get('clean_flag')} after the final boot")

    boots = [r for r in records if r["type"] == "boot"]
    started = [c for c in cycles if c.get("started")]
    if E["boot_records_per_boot"]:
        seqs = [b["payload"].get("boot_seq") for b in boots]
        check(len(boots) == len(started) and seqs == list(range(1, len(boots) + 1)),
              f"{len(boots)} boot record(s) for {len(started)} boot(s) that started edgelog, boot_seq {seqs[:6]}{'...' if len(seqs) > 6 else ''}")
    if E["unexpected_reset_after_cut"]:
        # None: a cut after the window's frame, either answer holds.
        want = [False] + [None if c.get("cut") and c.get("window_completed") else bool(c.get("cut")) for c in started[:-1]]
        got = [b["payload"].get("unexpected_reset") for b in boots]
        check(len(got) == len(want) and all(w is None or g == w for g, w in zip(got, want)),
              f"boot records' unexpected_reset {got} follow the cuts {want} (None: after a window's frame, either)")
    if E["recovery_unclean_per_cut"]:
        rec = [r for r in records if r["type"] == "recovery" and r["payload"].get("unclean_shutdown")]
        check(lo <= len(rec) <= hi, f"{len(rec)} recovery record(s) with unclean_shutdown for {lo} unclean cut(s) and {len(window_cuts)} after a window's frame")
    per_boot = {}
    for r in records:
        per_boot[r.get("boot_seq")] = per_boot.get(r.get("boot_seq"), 0) + 1
    for i, c in enumerate(started):
        c["records_committed"] = per_boot.get(i + 1, 0)
    final = [c for c in cycles if c["mode"] == "final"]
    if final and E["final_run_exit"] is not None:
        check(final[-1].get("run_exit") == E["final_run_exit"], f"the final boot's edgelog exited {final[-1].get('run_exit')} after SIGTERM")
    brown = {}
    for r in records:
        if r["type"] in (17, "brownout"):
            brown[r.get("boot_seq")] = brown.get(r.get("boot_seq"), 0) + 1
    if brown:
        info(f"brownout records per boot_seq: {brown}")

    summary = {"cycles": cycles, "records": len(records), "acks": total_acks, "verify": last, "verify_exit": v.returncode,
               "unexp_rst": meta.get("unexp_rst"), "clean_flag": meta.get("clean_flag"), "checks": checks,
               "failed": len(failures)}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"check_cuts: {len(cut_cycles)} cuts, {len(records)} records, {total_acks} acknowledgements; "
          + ("all checks passed" if not failures else f"{len(failures)} check(s) failed") + f"; summary in {os.path.join(out, 'summary.json')}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
