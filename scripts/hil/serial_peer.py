#!/usr/bin/env python3
"""The host's end of the emulated board's serial ports (qemu `-chardev pty`, see scripts/hil/boot).

    serial_peer.py --log FILE [--modbus PTY] [--nmea PTY] [options]

--modbus PTY  plays Modbus RTU slaves (functions 03 read holding and 04 read input registers,
              CRC-16/MODBUS) on the pty whose guest side is /dev/ttyS1:
    --regs ID:KIND:START=V1,V2,...   slave ID's registers from START (KIND: holding, input or both;
                                     values 0..65535, -32768..-1 as int16, decimal or 0x hex); repeatable
    --exception ID=CODE              slave ID answers every request with exception CODE (1..255)
    --silent ID                      slave ID never answers (the master's timeout path)
    --config FILE                    the same as JSON: {"slaves": {"1": {"holding": {"0": [1, 2]},
                                     "input": {"0": [3]}}, "3": {"exception": 2}, "4": {"silent": true}}}
  Requests to other slave ids and broadcasts (id 0) get no answer; a register outside the ones given
  gets exception 02, a count of 0 or above 125 exception 03, another function exception 01. A frame
  whose CRC is wrong is ignored, as a slave must.
--nmea PTY    an NMEA 0183 talker on the pty whose guest side is /dev/ttyS2: every --interval seconds
              (default 1) a GGA and an RMC sentence with correct checksums for the current UTC time;
              every --garbage-every cycles (default 3) a burst of garbage bytes, and every
              --bad-every cycles (default 4) a GGA line with a wrong checksum (0 turns either off).
--duration S  stop after S seconds (default: run until SIGTERM/SIGINT or until every pty closes,
              which happens when qemu exits).
The log is JSON lines, one per event, each with "t" (seconds since start) and "port":
  {"event": "start", ...}
  modbus: "request" (slave, function, address, count, hex), "response" (slave, function, values, hex),
          "exception" (slave, function, code, hex), "silent" (slave, reason), "crc_error" (hex),
          "incomplete" (hex), "closed"
  nmea:   "sentence" (kind, line, valid: true, utc, lat, lon, alt_m), "bad_checksum" (line, correct),
          "garbage" (hex), "dropped" (what, the guest was not reading), "closed"
  {"event": "stop", "reason": ...}
Python 3 standard library only.
"""
import argparse
import errno
import json
import os
import select
import signal
import sys
import termios
import time
import tty

GAP = 0.1  # seconds of silence that end an incomplete frame


def crc16_modbus(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def with_crc(frame):
    c = crc16_modbus(frame)
    return bytes(frame) + bytes([c & 0xFF, c >> 8])


def nmea_checksum(body):
    x = 0
    for ch in body.encode("ascii"):
        x ^= ch
    return f"{x:02X}"


class Log:
    def __init__(self, path):
        self.f = open(path, "a", buffering=1, encoding="utf-8")
        self.t0 = time.monotonic()

    def __call__(self, port, event, **fields):
        rec = {"t": round(time.monotonic() - self.t0, 4), "port": port, "event": event}
        rec.update(fields)
        self.f.write(json.dumps(rec) + "\n")


def open_pty(path):
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd, termios.TCSANOW)
    attrs = termios.tcgetattr(fd)
    attrs[3] &= ~(termios.ECHO | termios.ICANON)
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    return fd


class Port:
    def __init__(self, name, path, log, max_pending=None):
        self.name, self.path, self.log = name, path, log
        self.fd = open_pty(path)
        self.out = bytearray()
        self.max_pending = max_pending
        self.closed = False

    def send(self, data, what):
        if self.closed:
            return False
        if self.max_pending is not None and len(self.out) + len(data) > self.max_pending:
            self.log(self.name, "dropped", what=what, pending=len(self.out))
            return False
        self.out += data
        self.flush()
        return True

    def flush(self):
        while self.out and not self.closed:
            try:
                n = os.write(self.fd, self.out)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.EIO:
                    self.close()
                    return
                raise
            del self.out[:n]

    def read(self):
        try:
            return os.read(self.fd, 4096)
        except BlockingIOError:
            return b""
        except OSError as e:
            if e.errno == errno.EIO:  # qemu closed the master side
                self.close()
                return b""
            raise

    def close(self):
        if not self.closed:
            self.closed = True
            self.log(self.name, "closed", pending=len(self.out))
            os.close(self.fd)


# ------------------------------------------------------------------ Modbus RTU slave

FIXED_LEN = {1: 8, 2: 8, 3: 8, 4: 8, 5: 8, 6: 8}


class ModbusSlaves:
    def __init__(self, port, slaves, log):
        self.port, self.slaves, self.log = port, slaves, log
        self.buf = bytearray()
        self.last_rx = 0.0

    def feed(self, data, now):
        self.buf += data
        self.last_rx = now
        self.parse(now)

    def parse(self, now):
        while len(self.buf) >= 2:
            fn = self.buf[1]
            if fn in FIXED_LEN:
                need = FIXED_LEN[fn]
            elif fn in (15, 16):
                if len(self.buf) < 7:
                    return
                need = 9 + self.buf[6]
            else:
                need = None
            if need is None or len(self.buf) < need:
                return  # wait for more bytes, or for the gap (tick)
            frame = bytes(self.buf[:need])
            if crc16_modbus(frame[:-2]) != (frame[-2] | frame[-1] << 8):
                self.log("modbus", "crc_error", hex=bytes(self.buf).hex())
                self.buf.clear()
                return
            del self.buf[:need]
            self.handle(frame)

    def tick(self, now):
        if self.buf and now - self.last_rx >= GAP:
            frame = bytes(self.buf)
            self.buf.clear()
            if len(frame) >= 4 and crc16_modbus(frame[:-2]) == (frame[-2] | frame[-1] << 8):
                self.handle(frame)  # a well-formed frame of a function we do not know
            else:
                self.log("modbus", "incomplete", hex=frame.hex())

    def handle(self, frame):
        sid, fn = frame[0], frame[1]
        req = {"slave": sid, "function": fn, "hex": frame.hex()}
        if fn in (3, 4) and len(frame) == 8:
            req["address"] = frame[2] << 8 | frame[3]
            req["count"] = frame[4] << 8 | frame[5]
        self.log("modbus", "request", **req)
        if sid == 0:
            self.log("modbus", "silent", slave=sid, reason="broadcast")
            return
        cfg = self.slaves.get(sid)
        if cfg is None:
            self.log("modbus", "silent", slave=sid, reason="no such slave")
            return
        if cfg.get("silent"):
            self.log("modbus", "silent", slave=sid, reason="configured silent")
            return
        if cfg.get("exception"):
            return self.exception(sid, fn, cfg["exception"])
        if fn not in (3, 4):
            return self.exception(sid, fn, 1)
        addr, count = req["address"], req["count"]
        if not 1 <= count <= 125:
            return self.exception(sid, fn, 3)
        table = cfg["holding" if fn == 3 else "input"]
        values = []
        for a in range(addr, addr + count):
            if a not in table:
                return self.exception(sid, fn, 2)
            values.append(table[a])
        body = bytearray([sid, fn, 2 * count])
        for v in values:
            body += bytes([v >> 8, v & 0xFF])
        resp = with_crc(body)
        self.log("modbus", "response", slave=sid, function=fn, address=addr, values=values, hex=resp.hex())
        self.port.send(resp, "response")

    def exception(self, sid, fn, code):
        resp = with_crc(bytes([sid, (fn | 0x80) & 0xFF, code]))
        self.log("modbus", "exception", slave=sid, function=fn, code=code, hex=resp.hex())
        self.port.send(resp, "exception")


# ------------------------------------------------------------------ NMEA talker

LAT, LON, ALT = 48.1173, 11.516666666666667, 545.4  # 4807.038,N 01131.000,E


def nmea_lat(lat):
    d = int(abs(lat))
    return f"{d:02d}{(abs(lat) - d) * 60:06.3f}", "N" if lat >= 0 else "S"


def nmea_lon(lon):
    d = int(abs(lon))
    return f"{d:03d}{(abs(lon) - d) * 60:06.3f}", "E" if lon >= 0 else "W"


class NmeaTalker:
    # No XON/XOFF (0x11/0x13) nor signal characters (0x03, 0x1a, 0x1c): a guest port still in its
    # default cooked mode when the stream arrives (IXON, ECHO) would otherwise stop its own output
    # and hang any tcsetattr(TCSADRAIN), such as stty's.
    GARBAGE = [b"\x00\xff\xfe garbage \x1b\x7f\r\n", b"$GPGGA,12\r\n", b"\xaa\x55noise without newline ",
               b"$GPXXX,not,a,known,sentence*00\r\n"]

    def __init__(self, port, log, interval, garbage_every, bad_every):
        self.port, self.log = port, log
        self.interval, self.garbage_every, self.bad_every = interval, garbage_every, bad_every
        self.cycle = 0
        self.next_at = time.monotonic()

    def sentence(self, kind, body, bad=False):
        cs = nmea_checksum(body)
        sent = cs if not bad else f"{int(cs, 16) ^ 0x5A:02X}"
        line = f"${body}*{sent}"
        return line, cs

    def due(self, now):
        return now >= self.next_at

    def emit(self, now):
        self.cycle += 1
        self.next_at += self.interval
        if self.next_at < now:  # we were late (a loaded host): do not burst
            self.next_at = now + self.interval
        wall = time.time()
        g = time.gmtime(wall)
        utc = f"{g.tm_hour:02d}{g.tm_min:02d}{g.tm_sec:02d}.{int(wall * 100) % 100:02d}"
        date = f"{g.tm_mday:02d}{g.tm_mon:02d}{g.tm_year % 100:02d}"
        lat, ns = nmea_lat(LAT)
        lon, ew = nmea_lon(LON)
        fields = {"utc": utc, "lat": LAT, "lon": LON, "alt_m": ALT}
        gga = f"GPGGA,{utc},{lat},{ns},{lon},{ew},1,08,0.9,{ALT:.1f},M,46.9,M,,"
        rmc = f"GPRMC,{utc},A,{lat},{ns},{lon},{ew},000.5,084.4,{date},003.1,W,A"
        if self.garbage_every and self.cycle % self.garbage_every == 0:
            junk = self.GARBAGE[(self.cycle // self.garbage_every - 1) % len(self.GARBAGE)]
            if self.port.send(junk, "garbage"):
                self.log("nmea", "garbage", cycle=self.cycle, hex=junk.hex())
        for kind, body in (("GGA", gga), ("RMC", rmc)):
            line, _ = self.sentence(kind, body)
            if self.port.send((line + "\r\n").encode("ascii"), kind):
                self.log("nmea", "sentence", cycle=self.cycle, kind=kind, line=line, valid=True, **fields)
        if self.bad_every and self.cycle % self.bad_every == 0:
            line, correct = self.sentence("GGA", gga, bad=True)
            if self.port.send((line + "\r\n").encode("ascii"), "bad_checksum"):
                self.log("nmea", "bad_checksum", cycle=self.cycle, kind="GGA", line=line, correct=correct)


# ------------------------------------------------------------------ configuration

def u16(text):
    v = int(text, 0)
    if -32768 <= v < 0:
        v += 0x10000
    if not 0 <= v <= 0xFFFF:
        raise ValueError(f"register value {text} outside 0..65535 (or -32768..-1)")
    return v


def slave(sid, slaves):
    sid = int(sid, 0) if isinstance(sid, str) else int(sid)
    if not 1 <= sid <= 247:
        raise ValueError(f"slave id {sid} outside 1..247")
    return slaves.setdefault(sid, {"holding": {}, "input": {}})


def load_config(path, slaves):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    for sid, cfg in (doc.get("slaves") or {}).items():
        s = slave(sid, slaves)
        for kind in ("holding", "input"):
            for start, vals in (cfg.get(kind) or {}).items():
                for i, v in enumerate(vals):
                    s[kind][int(start, 0) + i] = u16(str(v))
        if cfg.get("exception"):
            s["exception"] = int(cfg["exception"])
        if cfg.get("silent"):
            s["silent"] = True


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--log", required=True, help="JSON-lines log file (appended)")
    ap.add_argument("--modbus", metavar="PTY", help="pty for the Modbus RTU slaves (guest /dev/ttyS1)")
    ap.add_argument("--nmea", metavar="PTY", help="pty for the NMEA talker (guest /dev/ttyS2)")
    ap.add_argument("--regs", action="append", default=[], metavar="ID:KIND:START=V1,V2,...")
    ap.add_argument("--exception", action="append", default=[], metavar="ID=CODE")
    ap.add_argument("--silent", action="append", default=[], metavar="ID")
    ap.add_argument("--config", metavar="FILE")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--garbage-every", type=int, default=3)
    ap.add_argument("--bad-every", type=int, default=4)
    ap.add_argument("--duration", type=float, default=None)
    args = ap.parse_args(argv)
    if not args.modbus and not args.nmea:
        ap.error("give --modbus PTY, --nmea PTY or both")
    slaves = {}
    try:
        if args.config:
            load_config(args.config, slaves)
        for spec in args.regs:
            head, _, vals = spec.partition("=")
            sid, kind, start = head.split(":")
            if kind not in ("holding", "input", "both"):
                raise ValueError(f"--regs {spec}: KIND must be holding, input or both")
            s = slave(sid, slaves)
            for k in (("holding", "input") if kind == "both" else (kind,)):
                for i, v in enumerate(vals.split(",")):
                    s[k][int(start, 0) + i] = u16(v)
        for spec in args.exception:
            sid, _, code = spec.partition("=")
            code = int(code, 0)
            if not 1 <= code <= 255:
                raise ValueError(f"--exception {spec}: code outside 1..255")
            slave(sid, slaves)["exception"] = code
        for sid in args.silent:
            slave(sid, slaves)["silent"] = True
    except (ValueError, OSError, json.JSONDecodeError) as e:
        ap.error(str(e))
    return args, slaves


def main(argv=None):
    args, slaves = parse_args(argv)
    log = Log(args.log)
    stop = {"reason": None}

    def on_signal(signum, _frame):
        stop["reason"] = signal.Signals(signum).name

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ports = []
    modbus = nmea = None
    try:
        if args.modbus:
            p = Port("modbus", args.modbus, log)
            modbus = ModbusSlaves(p, slaves, log)
            ports.append(p)
        if args.nmea:
            p = Port("nmea", args.nmea, log, max_pending=4096)
            nmea = NmeaTalker(p, log, args.interval, args.garbage_every, args.bad_every)
            ports.append(p)
    except OSError as e:
        print(f"serial_peer: {e}", file=sys.stderr)
        return 1
    log("peer", "start", pid=os.getpid(), modbus=args.modbus, nmea=args.nmea,
        slaves={str(k): {"holding": len(v["holding"]), "input": len(v["input"]),
                         "exception": v.get("exception"), "silent": bool(v.get("silent"))}
                for k, v in sorted(slaves.items())})
    t_end = None if args.duration is None else time.monotonic() + args.duration
    while stop["reason"] is None:
        live = [p for p in ports if not p.closed]
        if not live:
            stop["reason"] = "ptys closed"
            break
        now = time.monotonic()
        if t_end is not None and now >= t_end:
            stop["reason"] = "duration"
            break
        timeout = 0.05
        if nmea and not nmea.port.closed:
            timeout = max(0.0, min(timeout, nmea.next_at - now))
        rl = [p.fd for p in live]
        wl = [p.fd for p in live if p.out]
        try:
            r, w, _ = select.select(rl, wl, [], timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for p in live:
            if p.closed:
                continue
            if p.fd in w:
                p.flush()
            if p.fd in r:
                data = p.read()
                if p is (modbus and modbus.port) and data:
                    modbus.feed(data, now)
                elif data:
                    log(p.name, "received", hex=data.hex())  # the guest wrote to the NMEA port
        if modbus and not modbus.port.closed:
            modbus.tick(now)
        if nmea and not nmea.port.closed and nmea.due(now):
            nmea.emit(now)
    log("peer", "stop", reason=stop["reason"])
    for p in ports:
        if not p.closed:
            os.close(p.fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
