#!/usr/bin/env python3
"""Judges the log-writes test (scripts/hil/log-writes) on the host: replays the write log the guest's
kernel recorded under the store and checks every state a power cut could have left.

    check_logwrites.py --out DIR [--bin PATH] [--partials N] [--all-subsets N] [--seed N] [--workers N]
                       [--recover-every N]

Reads DIR/log.img (the dm-log-writes log device), DIR/data.img (the logged device after the run),
DIR/board/acks.jsonl (what `edgelog run --acks` printed), DIR/board/dm-status, DIR/board/lw.env, the key in
DIR/board/state/keys, and the marks in the log. It never parses store bytes:
every image is judged by the edgelog binary (export, verify; ingest for recovery on a copy). It never
writes DIR/log.img (read through a read-only mmap; its sha256 is compared before and after).

  * the log: magic, version, entries as the super block counts them, ending in "dm-log-writes-end";
    dmsetup status showed no logging_disabled; replaying every entry onto zeros gives data.img
    byte for byte (the replayer agrees with what the kernel wrote through the target);
  * the marks "format-start", "format-done", "run-start", "run-stop" in that order; a mark "ack-S"
    follows the acknowledgement lines up to S (the guest marks after reading them); every
    acknowledgement is covered by a mark, and before each such mark the log holds a FLUSH or FUA entry
    (otherwise the kernel never made that commit durable before edgelog acknowledged it);
  * durable points: every FLUSH or FUA entry. The image just after each one is built (entries 0..k onto
    zeros) and given to `edgelog export` and `edgelog verify --trust KEY` (read-only: the image's sha256
    must not change), and a copy of it is recovered as the next start would (`edgelog ingest --key-dir
    KEYS` with empty input: recovery, then one commit) and exported and verified again. From the first
    durable point after the "run-start" mark on, each one must give: export exit 0; verify exit 0 on the
    image and on the recovered copy; every commit acknowledged by a mark after which this point is the
    last durable point or a later one (that flush made it durable) present with at least the
    acknowledged records and the acknowledged last mono_ctr, in the image and in the recovered copy;
    the recovered copy keeps every record export listed; and the exported records only grow from one
    durable point to the next (commit ids below the next point's oldest are left out: the ring's
    reclaim). Points before the run are reported; the last one before "format-done" must already hold
    a store (format made its writes durable before it exited);
  * partial images (a power cut with the disk's cache half written): the image at a durable point plus a
    random subset or a random prefix (log order) of the writes logged before the next durable point,
    half of them with one write torn at a sector boundary (--partials, 120: every interval between
    durable points once when there are that many, chosen at random otherwise; --all-subsets N adds every
    proper subset of the writes and each write torn after the writes before it, where at most N writes
    follow the durable point). Each must export (exit 0), verify, recover on
    a copy, and hold every commit acknowledged before that durable point. Whether it still holds every
    record the durable point's image held is reported (not required: those records were not acknowledged).

EXPECT below says what is checked; None skips a check. Writes DIR/logwrites-summary.json and prints one
line per check, then `check_logwrites: N flush points replayed, M partial images, K acked commits, ...`.
Exit 0 only if every check holds.
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import replay_log_writes as rlw  # noqa: E402
from check_cuts import parse_ack_files  # noqa: E402  (the one parser of acknowledgements)

EXPECT = {
    "log_ended_cleanly": True,          # the last entry is the target's "dm-log-writes-end" mark
    "replay_equals_data_image": True,   # every entry replayed onto zeros == data.img
    "min_acks": 100,                    # the run acknowledged at least this many commits (None: skip)
    "ack_has_durable_point": True,      # a FLUSH/FUA entry precedes every ack mark
    "export_exit": 0,                   # at run-phase points and partial images
    "verify_passes": True,
    "ack_records": ">=",                # exported records of an acked commit vs the ack's "records"
    "ack_last_mono": "==",              # its last mono_ctr vs the ack's "last_mono"
    "read_only": True,                  # export and verify leave the image's bytes as they were
    "recover_on_copy": True,            # ingest recovers a copy (exit 0), acked commits and export's records kept
    "records_only_grow": True,          # between consecutive run-phase durable points
    "format_durable_before_exit": True, # the last durable point before "format-done" holds a store
    "run_exit": 0,                      # edgelog run after SIGTERM
    "partial_keeps_flushed_records": None,  # reported only: see the docstring
}

failures = []
checks = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    checks.append({"ok": bool(ok), "what": what})
    if not ok:
        failures.append(what)


def info(what):
    print("info  " + what, flush=True)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(cmd, **kw):
    """subprocess.run that turns a failure to start the binary into exit status -1 (judged as a failure)."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, **kw)
    except OSError as e:
        return subprocess.CompletedProcess(cmd, -1, "", f"cannot run {cmd[0]}: {e}")


class Edgelog:
    def __init__(self, binary, keys):
        self.bin = binary
        self.keys = keys
        self.pub = os.path.join(keys, "signing-key.pub.pem")

    def export(self, img):
        r = run([self.bin, "export", "--device", img])
        lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
        recs = []
        for ln in lines:
            try:
                recs.append(json.loads(ln))
            except ValueError:
                recs.append(None)
        return {"rc": r.returncode, "lines": lines, "records": recs, "stderr": r.stderr.strip()[-400:]}

    def verify(self, img):
        r = run([self.bin, "verify", "--device", img, "--trust", self.pub])
        out = r.stdout.strip().splitlines()
        return {"rc": r.returncode, "last": out[-1] if out else r.stderr.strip()[-300:]}

    def recover(self, img):
        r = run([self.bin, "ingest", "--device", img, "--key-dir", self.keys, "--source", "lwcheck"], stdin=subprocess.DEVNULL)
        return {"rc": r.returncode, "stderr": r.stderr.strip()[-400:]}


def commits_of(records):
    """commit_id -> (record count, last mono_ctr), from export's JSON lines (a format 6 commit is a
    frame; commit ids grow with the segments that hold them, so the ring's reclaim removes the
    lowest ones)."""
    commits = {}
    for r in records:
        if not isinstance(r, dict) or not isinstance(r.get("commit_id"), int):
            continue
        n, m = commits.get(r["commit_id"], (0, None))
        mono = r.get("mono_ctr")
        commits[r["commit_id"]] = (n + 1, mono if m is None or (isinstance(mono, int) and mono > m) else m)
    return commits


def record_keys(lines, records):
    """A compact identity of each exported record: (commit id, digest of its JSON line)."""
    return {(r.get("commit_id") if isinstance(r, dict) else None, hashlib.blake2b(ln.encode(), digest_size=16).digest())
            for ln, r in zip(lines, records)}


def judge_image(ed, path, digest, recover):
    """Runs on a worker thread: export and verify the image (read-only), then recover a copy."""
    res = {"export": ed.export(path), "verify": ed.verify(path)}
    res["unchanged"] = sha256_file(path) == digest
    if recover:
        copy = path + ".recovered"
        shutil.copyfile(path, copy)
        rec = ed.recover(copy)
        if rec["rc"] == 0:
            rec["export"] = ed.export(copy)
            rec["verify"] = ed.verify(copy)
        res["recovered"] = rec
        os.remove(copy)
    os.remove(path)
    # Keep what the judgement needs, not the whole export.
    ex = res["export"]
    ex["commits"] = commits_of(ex["records"])
    ex["keys"] = record_keys(ex["lines"], ex["records"])
    del ex["records"], ex["lines"]
    if recover and "export" in res["recovered"]:
        rx = res["recovered"]["export"]
        rx["commits"] = commits_of(rx["records"])
        rx["keys"] = record_keys(rx["lines"], rx["records"])
        rx["missing_from_export"] = len(ex["keys"] - rx["keys"])
        del rx["records"], rx["lines"]
    return res


def ack_problems(ex, acks, ref):
    """Acknowledged commits absent, short or different in an export: list of (commit, why) tuples.
    ref: commit id -> the record keys of that commit in the final store (data.img)."""
    bad = []
    commits = ex["commits"]
    for a in acks:
        have = commits.get(a["commit_id"])
        if have is None:
            bad.append((a["commit_id"], "missing"))
            continue
        want = ref.get(a["commit_id"])
        if want is not None and not want <= ex["keys"]:
            bad.append((a["commit_id"], f"{len(want - ex['keys'])} of its records in the final store differ or are absent"))
        n, mono = have
        if a.get("records") is not None and EXPECT["ack_records"]:
            if (EXPECT["ack_records"] == ">=" and n < a["records"]) or (EXPECT["ack_records"] == "==" and n != a["records"]):
                bad.append((a["commit_id"], f"records {n} < acked {a['records']}"))
        if a.get("last_mono") is not None and EXPECT["ack_last_mono"]:
            if (EXPECT["ack_last_mono"] == "==" and mono != a["last_mono"]) or (EXPECT["ack_last_mono"] == ">=" and (mono or 0) < a["last_mono"]):
                bad.append((a["commit_id"], f"last mono_ctr {mono} != acked {a['last_mono']}"))
    return bad


class Tally:
    """Counts and the first few failures of one kind of per-image check."""

    def __init__(self, what):
        self.what, self.n, self.bad = what, 0, []

    def add(self, ok, detail):
        self.n += 1
        if not ok:
            self.bad.append(detail)

    def report(self, enabled=True):
        if enabled and self.n:
            check(not self.bad, f"{self.what}: {self.n - len(self.bad)} of {self.n} hold"
                  + (f"; first failures: {self.bad[:4]}" if self.bad else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--bin", default=os.path.join(here, "..", "..", ".build", "debug", "edgelog"))
    ap.add_argument("--partials", type=int, default=int(os.environ.get("HIL_LW_PARTIALS", "120")),
                    help="random partial images to build (default 120: each interval once, when there are that many)")
    ap.add_argument("--all-subsets", type=int, default=0, metavar="N",
                    help="also every proper subset of the writes, and each write torn, after every durable point "
                         "followed by at most N writes (default 0: off)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--workers", type=int, default=max(1, os.cpu_count() or 1))
    ap.add_argument("--recover-every", type=int, default=int(os.environ.get("HIL_LW_RECOVER_EVERY", "1")),
                    help="recover a copy at every Nth durable point (default every one; 0: never)")
    ap.add_argument("--tmp", default="/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
    args = ap.parse_args()
    t0 = time.monotonic()
    out = args.out
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    rng = random.Random(seed)
    board = os.path.join(out, "board")
    ed = Edgelog(os.path.abspath(args.bin), os.path.join(board, "state", "keys"))
    log_path = os.path.join(out, "log.img")
    data_path = os.path.join(out, "data.img")
    log_sha = sha256_file(log_path)

    # ---- the log itself ----
    try:
        log = rlw.LogWrites(log_path)
    except (OSError, rlw.LogFormatError) as e:
        check(False, f"the log-writes log parses: {e}")
        return 1
    summ = log.summary()
    info(f"log: {summ}")
    if EXPECT["log_ended_cleanly"]:
        check(log.ended_cleanly(), f"the log ends with the target's {rlw.END_MARK!r} mark ({len(log.entries)} entries, super block says {log.nr_entries})")
    try:
        with open(os.path.join(board, "dm-status")) as f:
            dm_status = f.read().strip()
    except OSError:
        dm_status = ""
    check(bool(dm_status) and "logging_disabled" not in dm_status, f"dmsetup status before removal: {dm_status!r} (logging never disabled)")
    data_size = os.path.getsize(data_path)
    if EXPECT["replay_equals_data_image"]:
        full = rlw.Image(log, size=data_size)
        full.advance_to(len(log.entries) - 1)
        with open(data_path, "rb") as f:
            same = f.read() == full.buf
        check(same, f"replaying all {len(log.entries)} entries onto zeros gives data.img ({data_size} bytes) byte for byte")
        del full
    # The acknowledged commits' records as the final store holds them: an image must hold these lines.
    final = ed.export(data_path)
    ref = {}
    for key in record_keys(final["lines"], final["records"]):
        if isinstance(key[0], int):
            ref.setdefault(key[0], set()).add(key)
    check(final["rc"] == EXPECT["export_exit"], f"edgelog export of the final store (data.img) exits {final['rc']}: {len(final['lines'])} records in {len(ref)} commits")
    if summ["discard"]:
        info(f"{summ['discard']} DISCARD entries: replayed as zeros")

    # ---- marks and acknowledgements ----
    phase = {}
    for name in ("format-start", "format-done", "run-start", "run-stop"):
        phase[name] = log.find_mark(name)
    order = [phase[n] for n in ("format-start", "format-done", "run-start", "run-stop")]
    check(None not in order and order == sorted(order), f"marks format-start, format-done, run-start, run-stop in order at entries {order}")
    if None in order:
        return 1
    acks, broken = parse_ack_files([os.path.join(board, "acks.jsonl")])
    check(broken == 0, f"{len(acks)} acknowledgement line(s) parsed, {broken} broken")
    env = {}
    try:
        with open(os.path.join(board, "lw.env")) as f:
            env = dict(line.strip().split("=", 1) for line in f if "=" in line)
    except OSError:
        pass
    if EXPECT["run_exit"] is not None:
        check(env.get("RUN_EXIT") == str(EXPECT["run_exit"]), f"edgelog run exited {env.get('RUN_EXIT')} after SIGTERM ({env.get('SECONDS_RUN')} s)")
    if EXPECT["min_acks"] is not None:
        check(len(acks) >= EXPECT["min_acks"], f"{len(acks)} commits acknowledged (at least {EXPECT['min_acks']} wanted)")
    final_bad = ack_problems({"commits": commits_of(final["records"]), "keys": record_keys(final["lines"], final["records"])}, acks, ref)
    check(not final_bad, f"every acknowledged commit is in the final store (data.img)" + (f"; not: {final_bad[:5]}" if final_bad else ""))
    pos = {a["commit_id"]: i for i, a in enumerate(acks)}
    durable = log.durable_points()
    ack_mark = {}            # ack index in acks -> log index of the first mark covering it
    covered = 0
    mark_batches = []
    for e in log.marks():
        if not e.mark.startswith("ack-"):
            continue
        try:
            s = int(e.mark[4:])
        except ValueError:
            continue
        if s not in pos:
            check(False, f"mark {e.mark!r} (entry {e.index}) names no acknowledged commit")
            continue
        upto = pos[s] + 1
        mark_batches.append(upto - covered if upto > covered else 0)
        for i in range(covered, upto):
            ack_mark[i] = e.index
        covered = max(covered, upto)
    check(covered == len(acks), f"every acknowledgement is covered by an ack mark ({covered} of {len(acks)}; "
          f"{len(mark_batches)} marks, {sum(1 for b in mark_batches if b > 1)} of them cover more than one ack, at most {max(mark_batches or [0])})")
    # The durable point an ack relies on: the last FLUSH/FUA entry before its mark.
    import bisect
    need_at = {}             # ack index -> durable point index (entry) it must hold from
    no_durable = []
    for i, m in ack_mark.items():
        j = bisect.bisect_left(durable, m) - 1
        if j < 0 or durable[j] < phase["run-start"]:
            no_durable.append(acks[i]["commit_id"])
        else:
            need_at[i] = durable[j]
    if EXPECT["ack_has_durable_point"]:
        check(not no_durable, f"a FLUSH or FUA entry of the run precedes every ack mark" + (f"; not for commits {no_durable[:10]}" if no_durable else ""))
    gaps = [ack_mark[i] - need_at[i] for i in need_at]
    if gaps:
        info(f"entries between an ack's durable point and its mark: median {sorted(gaps)[len(gaps) // 2]}, max {max(gaps)}")

    # ---- which images ----
    pre = [d for d in durable if d < phase["run-start"]]
    run_points = [d for d in durable if d > phase["run-start"]]
    info(f"{len(durable)} durable points (FLUSH {summ['flush']}, FUA {summ['fua']}): {len(pre)} before the run, {len(run_points)} in it")
    intervals = []
    for i, d in enumerate(run_points):
        nxt = run_points[i + 1] if i + 1 < len(run_points) else None
        w = rlw.writes_between(log, d, nxt)
        if w:
            intervals.append((d, nxt, w))
    partial_jobs = {}        # durable point -> list of (plan, desc)
    if intervals and args.partials > 0:
        picks = rng.sample(range(len(intervals)), min(args.partials, len(intervals)))
        while len(picks) < args.partials:
            picks.append(rng.randrange(len(intervals)))
        for n, p in enumerate(sorted(picks)):
            d, nxt, w = intervals[p]
            plan, desc = rlw.partial_plan(w, rng, mode=("subset", "prefix")[n % 2], tear=None)
            desc.update({"after_point": d, "next_point": nxt})
            partial_jobs.setdefault(d, []).append((plan, desc))
    if args.all_subsets > 0:
        for d, nxt, w in intervals:
            if len(w) <= args.all_subsets:
                for plan, desc in rlw.every_partial(w, rng):
                    desc.update({"after_point": d, "next_point": nxt})
                    partial_jobs.setdefault(d, []).append((plan, desc))
    info(f"{len(intervals)} run-phase intervals hold writes after their flush; {sum(len(v) for v in partial_jobs.values())} partial images from them (seed {seed})")

    # ---- build images, judge them on worker threads ----
    tmp = tempfile.mkdtemp(prefix="lw-replay-", dir=args.tmp)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=args.workers)
    jobs = []                # (kind, point, desc, future or ("same", earlier job index), digest)
    img = rlw.Image(log, size=data_size)
    last_digest, last_job = None, None
    all_points = pre + run_points
    recover_n = 0
    try:
        for n, d in enumerate(all_points):
            img.advance_to(d)
            digest = hashlib.sha256(img.buf).hexdigest()
            recover = args.recover_every > 0 and (d in run_points) and (n % args.recover_every == 0 or d == all_points[-1])
            if digest == last_digest:
                jobs.append(("point", d, None, ("same", last_job), digest))
            else:
                path = os.path.join(tmp, f"point-{d}.img")
                img.write(path)
                recover_n += bool(recover)
                jobs.append(("point", d, None, pool.submit(judge_image, ed, path, digest, recover), digest))
                last_digest, last_job = digest, len(jobs) - 1
            for k, (plan, desc) in enumerate(partial_jobs.get(d, [])):
                part = img.copy()
                rlw.apply_plan(part, plan)
                pd = hashlib.sha256(part.buf).hexdigest()
                path = os.path.join(tmp, f"partial-{d}-{k}.img")
                part.write(path)
                jobs.append(("partial", d, desc, pool.submit(judge_image, ed, path, pd, True), pd))
            # Bound the images waiting on disk.
            while sum(1 for j in jobs if not isinstance(j[3], tuple) and not j[3].done()) > 4 * args.workers:
                time.sleep(0.01)
        results = []
        for j in jobs:
            results.append(j[3].result() if not isinstance(j[3], tuple) else None)
    finally:
        pool.shutdown(wait=True)
        shutil.rmtree(tmp, ignore_errors=True)
    for i, j in enumerate(jobs):
        if results[i] is None:
            results[i] = results[j[3][1]]
    t_judge = time.monotonic() - t0

    # ---- judge ----
    res_at = {}
    for (kind, d, desc, _, _), r in zip(jobs, results):
        if kind == "point":
            res_at[d] = r
    t_export = Tally("run-phase durable points: edgelog export exits 0")
    t_verify = Tally("run-phase durable points: edgelog verify passes")
    t_acks = Tally("run-phase durable points: every commit acknowledged by then is there (records, last mono_ctr)")
    t_ro = Tally("export and verify left every image unchanged")
    t_rec = Tally("recovery on a copy (edgelog ingest, empty input) exits 0, verifies, keeps the acked commits and export's records")
    t_grow = Tally("exported records only grow from one run-phase durable point to the next")
    p_export = Tally("partial images: edgelog export exits 0")
    p_verify = Tally("partial images: edgelog verify passes")
    p_acks = Tally("partial images: every commit acknowledged before their durable point is there")
    p_rec = Tally("partial images: recovery on a copy exits 0, verifies, keeps the acked commits and export's records")
    p_keep = Tally("partial images hold every record of their durable point's image")
    acked_checked = set()
    pairs = 0
    prev = None
    for (kind, d, desc, fut, digest), r in zip(jobs, results):
        t_ro.add(r["unchanged"], (kind, d))
        required = [acks[i] for i, p in need_at.items() if p <= d]
        if kind == "point" and d < phase["run-start"]:
            continue
        ex, ve = r["export"], r["verify"]
        bad = ack_problems(ex, required, ref) if ex["rc"] in (0, 3) else [("export", ex["rc"])]
        tag = f"entry {d}" if kind == "point" else f"partial after entry {d} ({desc['mode']}, {len(desc['applied'])} of {desc['writes_after_flush']} writes, torn {desc['torn']})"
        rec_ok = True
        if "recovered" in r:
            rc = r["recovered"]
            rec_ok = (rc["rc"] == 0 and rc["verify"]["rc"] == 0 and not ack_problems(rc["export"], required, ref)
                      and rc["export"]["missing_from_export"] == 0)
            detail = (tag, rc["rc"], rc["stderr"][-200:]) if rc["rc"] != 0 else \
                (tag, "verify", rc["verify"]["last"][:200], "acks", ack_problems(rc["export"], required, ref)[:3],
                 "records recovery dropped", rc["export"]["missing_from_export"])
        if kind == "point":
            pairs += len(required)
            acked_checked.update(a["commit_id"] for a in required)
            t_export.add(ex["rc"] == EXPECT["export_exit"], (tag, ex["rc"], ex["stderr"][-200:]))
            t_verify.add(ve["rc"] == 0, (tag, ve["last"][:200]))
            t_acks.add(not bad, (tag, bad[:3]))
            if "recovered" in r:
                t_rec.add(rec_ok, detail)
            if prev is not None:
                pk, pkeys = prev
                floor = min((c for c in ex["commits"]), default=0)
                lost = [k for k in pkeys if k not in ex["keys"] and (k[0] or 0) >= floor]
                t_grow.add(not lost, (f"entry {pk} -> {d}", len(lost), sorted({k[0] for k in lost})[:5]))
            prev = (d, ex["keys"])
        else:
            p_export.add(ex["rc"] == EXPECT["export_exit"], (tag, ex["rc"], ex["stderr"][-200:]))
            p_verify.add(ve["rc"] == 0, (tag, ve["last"][:200]))
            p_acks.add(not bad, (tag, bad[:3]))
            p_rec.add(rec_ok, detail)
            base = res_at[d]["export"]["keys"]
            lost = base - ex["keys"]
            p_keep.add(not lost, (tag, len(lost)))
            desc["lost_records_of_flush_point"] = len(lost)
    # Before the run: what the images held.
    pre_info = [(d, res_at[d]["export"]["rc"], sum(n for n, _ in res_at[d]["export"]["commits"].values())) for d in pre]
    info(f"before the run (entry, export exit, records): {pre_info[:12]}{' ...' if len(pre_info) > 12 else ''}")
    if EXPECT["format_durable_before_exit"]:
        fd = [d for d in pre if d < phase["format-done"]]
        check(bool(fd) and res_at[fd[-1]]["export"]["rc"] == 0,
              f"edgelog format made the store durable before it exited (the last durable point before 'format-done', entry "
              f"{fd[-1] if fd else None}, exports with exit {res_at[fd[-1]]['export']['rc'] if fd else None})")
    t_export.report(EXPECT["export_exit"] is not None)
    t_verify.report(EXPECT["verify_passes"])
    t_acks.report()
    t_rec.report(EXPECT["recover_on_copy"])
    t_grow.report(EXPECT["records_only_grow"])
    t_ro.report(EXPECT["read_only"])
    p_export.report(EXPECT["export_exit"] is not None)
    p_verify.report(EXPECT["verify_passes"])
    p_acks.report()
    p_rec.report(EXPECT["recover_on_copy"])
    if EXPECT["partial_keeps_flushed_records"]:
        p_keep.report()
    else:
        info(f"partial images holding every record of their durable point's image: {p_keep.n - len(p_keep.bad)} of {p_keep.n}"
             + (f" (not: {p_keep.bad[:3]})" if p_keep.bad else ""))
    check(set(a["commit_id"] for a in acks) <= acked_checked,
          f"every acknowledged commit was required at some durable point ({len(acked_checked)} of {len(acks)})")
    check(sha256_file(log_path) == log_sha, "log.img unchanged by the check")
    log.close()

    partials = [j for j in jobs if j[0] == "partial"]
    distinct = sum(1 for j in jobs if j[0] == "point" and not isinstance(j[3], tuple))
    torn = sum(1 for j in partials if j[2]["torn"])
    summary = {"seed": seed, "log": summ, "marks": phase, "acks": len(acks), "durable_points": len(durable),
               "run_points": len(run_points), "pre_run_points": len(pre), "distinct_point_images": distinct,
               "recovered_copies": recover_n + len(partials), "partials": [j[2] for j in partials], "ack_point_pairs": pairs,
               "mark_batches": mark_batches, "judge_seconds": round(t_judge, 1), "seconds": round(time.monotonic() - t0, 1),
               "checks": checks, "failed": len(failures)}
    with open(os.path.join(out, "logwrites-summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"check_logwrites: {len(durable)} flush points replayed ({len(run_points)} in the run, {distinct} distinct images), "
          f"{len(partials)} partial images ({torn} with a torn write), {len(acks)} acked commits, "
          f"{pairs} ack checks, {recover_n + len(partials)} recoveries on copies, {summary['seconds']} s; "
          + ("all checks passed" if not failures else f"{len(failures)} check(s) failed"))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
