#!/usr/bin/env python3
"""Sends commands to qemu's human monitor (scripts/hil/boot's HIL_MONITOR unix socket), on the host.

    monitor.py [--socket PATH] COMMAND...
        Sends each COMMAND (e.g. system_powerdown) and prints qemu's answer. PATH defaults to $HIL_MONITOR.
    monitor.py [--socket PATH] --on-request FILE --done FILE [--timeout SEC] COMMAND
        Agent for a guest job: waits for FILE to appear (the guest creates it in its shared out directory),
        sends COMMAND, writes --done (one JSON object: the command, the host's CLOCK_MONOTONIC and wall time
        just before and after sending, qemu's answer) and waits for the next request: every write of a new
        request (its content changes) is served once. Runs until killed (boot ends its --host command) or
        --timeout seconds without a request.

`system_powerdown` presses the ACPI power button: with the guest's button and evdev modules loaded, the
input device "Power Button" reports EV_KEY KEY_POWER (116) 1 then 0. Exit status 0; 1 if the socket could
not be used; 2 for a usage error.
"""
import argparse
import json
import os
import socket
import sys
import time

PROMPT = b"(qemu) "


def read_until_prompt(sock, deadline):
    buf = b""
    while not buf.endswith(PROMPT):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


def clean(answer, command):
    text = answer.decode("utf-8", "replace").replace("\r", "")
    if text.endswith("(qemu) "):
        text = text[: -len("(qemu) ")]
    # The monitor echoes the command (with terminal escapes) before its answer.
    lines = [ln for ln in text.split("\n") if ln.strip() and command not in ln and "\x1b" not in ln]
    return "\n".join(lines)


def send(path, commands, timeout=5.0):
    """Connects, sends each command, returns [(command, answer, t_before_mono_ns, t_after_mono_ns)]."""
    results = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        deadline = time.monotonic() + timeout
        sock.settimeout(timeout)
        sock.connect(path)
        read_until_prompt(sock, deadline)  # the banner
        for command in commands:
            before = time.monotonic_ns()
            sock.sendall(command.encode() + b"\n")
            after = time.monotonic_ns()
            answer = read_until_prompt(sock, time.monotonic() + timeout)
            results.append((command, clean(answer, command), before, after))
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--socket", default=os.environ.get("HIL_MONITOR"))
    ap.add_argument("--on-request")
    ap.add_argument("--done")
    ap.add_argument("--timeout", type=float, default=0)
    ap.add_argument("commands", nargs="+")
    args = ap.parse_args()
    if not args.socket:
        ap.error("no --socket and no HIL_MONITOR")
    if bool(args.on_request) != bool(args.done):
        ap.error("--on-request and --done go together")
    if not args.on_request:
        try:
            for command, answer, _, _ in send(args.socket, args.commands):
                print(answer if answer else f"{command}: ok")
        except OSError as e:
            print(f"monitor.py: {args.socket}: {e}", file=sys.stderr)
            return 1
        return 0
    served = None
    idle_since = time.monotonic()
    while True:
        try:
            with open(args.on_request, "rb") as f:
                request = f.read()
        except FileNotFoundError:
            request = None
        if request is not None and request != served:
            served = request
            wall = time.time_ns()
            try:
                results = send(args.socket, args.commands)
                record = {"commands": [{"command": c, "answer": a, "before_mono_ns": b, "after_mono_ns": t} for c, a, b, t in results],
                          "wall_ns": wall, "request": request.decode("utf-8", "replace").strip(), "ok": True}
            except OSError as e:
                record = {"commands": args.commands, "error": str(e), "wall_ns": wall, "ok": False}
            tmp = args.done + ".tmp"
            with open(tmp, "w") as f:
                f.write(json.dumps(record) + "\n")
            os.replace(tmp, args.done)
            idle_since = time.monotonic()
        if args.timeout and time.monotonic() - idle_since > args.timeout:
            return 0
        time.sleep(0.02)


if __name__ == "__main__":
    sys.exit(main())
