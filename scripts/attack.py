#!/usr/bin/env python3
"""Attacks on the real dispatchd, each a named check against the wire contract (v2).

Starts build/net/dispatchd (or --dispatchd) on 127.0.0.1, port 0, with its own temp
folder, tokens, fleet and web root; replays each attack; prints one PASS/FAIL line per
check with its figures, and dispatchd's RSS (VmRSS) at the start of the attack and its
peak during it. A check fails when dispatchd died, when its RSS grew more than 256 MiB
over the start, or when the answer is not what the contract says.

Talks to 127.0.0.1 only. Every loop is bounded in count and time. At the end every
dispatchd still running gets SIGTERM and must exit 0 within 10 s. Exit status: 0 when
every check passed, 1 when any failed, 77 when the `websocket` module (Debian's
python3-websocket) is missing, 2 on a usage or setup error.

    scripts/attack.py [--dispatchd build/net/dispatchd] [--quick] [--only NAME,...] [--keep]

--quick shortens every attack to about 2 s (the whole run well under 60 s); the default
runs each attack for about 10 s.
"""

import argparse
import base64
import json
import os
import queue
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

try:
    import websocket  # Debian: python3-websocket
except ImportError:
    # A pyenv or venv python may lack Debian's module; Debian's own python has it.
    deb = "/usr/bin/python3"
    if (not os.environ.get("ATTACK_PY_REEXEC") and os.path.exists(deb)
            and os.path.realpath(sys.executable) != os.path.realpath(deb)):
        env = dict(os.environ, ATTACK_PY_REEXEC="1")
        os.execve(deb, [deb, os.path.abspath(__file__)] + sys.argv[1:], env)
    print("SKIP: the python module 'websocket' is missing (apt-get install -y python3-websocket)")
    sys.exit(77)

HOST = "127.0.0.1"  # the only address this script ever talks to
MiB = 1024 * 1024
RSS_LIMIT = 256 * MiB  # growth over the attack's start that fails a check
RATE = 200.0  # --rate given to dispatchd: messages per second, burst 2x
BURST = 2 * RATE

# --------------------------------------------------------------------------------------
# Small helpers


def now_ms():
    return int(time.time() * 1000)


def mib(n):
    return "%.0f MiB" % (n / MiB)


class Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self):
        return max(0.0, self.end - time.monotonic())

    def passed(self):
        return time.monotonic() >= self.end


# --------------------------------------------------------------------------------------
# dispatchd as a child process


class Dispatchd:
    """One dispatchd; restart() replaces a dead or bloated one with a fresh database."""

    def __init__(self, binary, workdir, tag, extra_args):
        self.binary = binary
        self.workdir = workdir
        self.tag = tag
        self.extra = list(extra_args)
        self.proc = None
        self.port = None
        self.generation = 0
        self.deaths = []  # descriptions of instances that died under attack
        self.stops = []  # (label, ok, detail) for each instance stopped by us

    def start(self):
        self.generation += 1
        g = self.generation
        db = os.path.join(self.workdir, "%s-%d.db" % (self.tag, g))
        self.stderr_path = os.path.join(self.workdir, "%s-%d.stderr" % (self.tag, g))
        args = [self.binary, "--listen", HOST + ":0", "--db", db,
                "--tokens", os.path.join(self.workdir, "tokens.json"),
                "--fleet", os.path.join(self.workdir, "fleet.json")] + self.extra
        self.stderr_file = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.stderr_file, cwd=self.workdir)
        lines = queue.Queue()

        def pump(out):
            for line in iter(out.readline, b""):
                lines.put(line.decode("utf-8", "replace").rstrip("\n"))
            lines.put(None)

        threading.Thread(target=pump, args=(self.proc.stdout,), daemon=True).start()
        dl = Deadline(60)
        while not dl.passed():
            try:
                line = lines.get(timeout=min(1.0, dl.left() + 0.01))
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if line is None:
                break
            m = re.match(r"listening on (.+):(\d+)$", line)
            if m:
                self.port = int(m.group(2))
                self.pid = self.proc.pid
                return
        raise RuntimeError("%s did not start: %s" % (self.tag, self.stderr_tail()))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss(self):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
        return None

    def stderr_tail(self, n=6):
        try:
            with open(self.stderr_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return " | ".join(lines[-n:])
        except OSError:
            return ""

    def describe_exit(self):
        rc = self.proc.returncode
        if rc is None:
            return "running"
        if rc < 0:
            try:
                return "killed by %s" % signal.Signals(-rc).name
            except ValueError:
                return "killed by signal %d" % -rc
        return "exit %d" % rc

    def stop(self, label):
        """SIGTERM, then it must exit 0 within 10 s (SIGKILL after)."""
        if self.proc is None:
            return
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=10)
            ok = rc == 0
            detail = "%s #%d %s after SIGTERM" % (self.tag, self.generation, self.describe_exit())
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            ok = False
            detail = "%s #%d still running 10 s after SIGTERM (killed)" % (self.tag, self.generation)
        self.stops.append((label, ok, detail))
        self.stderr_file.close()

    def note_death(self, where):
        d = "%s #%d %s (%s); stderr: %s" % (self.tag, self.generation, self.describe_exit(), where,
                                           self.stderr_tail(3))
        self.deaths.append(d)
        self.stderr_file.close()
        return d

    def ensure_up(self, where):
        """Restarts a dead instance; returns a note about the death, or None."""
        if self.alive():
            return None
        note = self.note_death(where)
        self.start()
        return note

    def restart(self, label):
        self.stop(label)
        self.start()


class RssWatch:
    """Samples VmRSS every 20 ms; `blown` once growth passes the limit (attacks stop early)."""

    def __init__(self, srv):
        self.srv = srv
        self.pid = srv.proc.pid
        self.start = srv.rss() or 0
        self.peak = self.start
        self.blown = False
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            if self.srv.proc.pid != self.pid:  # restarted inside the check: follow it
                self.pid = self.srv.proc.pid
                self.start = max(self.start, self.srv.rss() or 0)
            r = self.srv.rss()
            if r is not None:
                self.peak = max(self.peak, r)
                if r - self.start > RSS_LIMIT:
                    self.blown = True
            self._stop.wait(0.02)

    def finish(self):
        self._stop.set()
        self._t.join(2)

    def should_stop(self):
        return self.blown or not self.srv.alive()


# --------------------------------------------------------------------------------------
# HTTP over raw sockets (so that any request line can be sent as is)


class Resp:
    def __init__(self):
        self.status = None
        self.headers = {}
        self.body = b""
        self.error = None

    def __repr__(self):
        return "<%s %r>" % (self.status, self.body[:60])


class HttpConn:
    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def read_response(self, head=False, max_body=64 * MiB):
        r = Resp()
        try:
            while b"\r\n\r\n" not in self.buf:
                if len(self.buf) > 1 * MiB:
                    raise ValueError("no end of headers")
                self._fill()
            raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
            lines = raw.split(b"\r\n")
            m = re.match(rb"HTTP/1\.[01] (\d{3})", lines[0])
            if not m:
                r.error = "malformed status line %r" % lines[0][:80]
                return r
            r.status = int(m.group(1))
            for l in lines[1:]:
                k, _, v = l.partition(b":")
                r.headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
            if head or r.status in (101, 204, 304) or 100 <= r.status < 200:
                return r
            if "content-length" in r.headers:
                n = int(r.headers["content-length"])
                if n > max_body:
                    raise ValueError("body of %d bytes" % n)
                while len(self.buf) < n:
                    self._fill()
                r.body, self.buf = self.buf[:n], self.buf[n:]
            elif r.headers.get("transfer-encoding", "").lower() == "chunked":
                body = b""
                while True:
                    while b"\r\n" not in self.buf:
                        self._fill()
                    size_line, self.buf = self.buf.split(b"\r\n", 1)
                    size = int(size_line.split(b";")[0], 16)
                    while len(self.buf) < size + 2:
                        self._fill()
                    body += self.buf[:size]
                    self.buf = self.buf[size + 2:]
                    if size == 0:
                        break
                r.body = body
            else:
                try:
                    while len(self.buf) < max_body:
                        self._fill()
                except EOFError:
                    pass
                r.body, self.buf = self.buf, b""
        except (OSError, EOFError, ValueError) as e:
            r.error = "%s: %s" % (type(e).__name__, e)
        return r


def http_raw(port, request, head=False, timeout=5.0):
    """Sends raw bytes on a new connection; returns the first response (status None if none)."""
    try:
        c = HttpConn(port, timeout)
    except OSError as e:
        r = Resp()
        r.error = "connect: %s" % e
        return r
    try:
        c.send(request)
        return c.read_response(head=head)
    except OSError as e:
        r = Resp()
        r.error = "%s: %s" % (type(e).__name__, e)
        return r
    finally:
        c.close()


def get(port, target, token=None, extra=b"", method=b"GET", timeout=5.0):
    if isinstance(target, str):
        target = target.encode()
    req = method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if token:
        req += b"Authorization: Bearer " + token.encode() + b"\r\n"
    req += extra + b"Connection: close\r\n\r\n"
    return http_raw(port, req, head=(method == b"HEAD"), timeout=timeout)


UPGRADE = (b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")


def healthy(port, timeout=5.0):
    r = get(port, "/healthz", timeout=timeout)
    return r.status == 200 and r.body == b"ok\n"


# --------------------------------------------------------------------------------------
# WebSocket over raw sockets: our own frames, and a parser for what comes back


def ws_frame(payload, opcode=1, fin=True):
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    key = os.urandom(4)
    if n:
        k = (key * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")
    else:
        masked = b""
    return head + key + masked


def handshake_bytes(path, token):
    return (b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + UPGRADE +
            b"Authorization: Bearer " + token.encode() + b"\r\n\r\n")


class RawWs:
    """A WebSocket client on a plain socket: it reads only when asked to."""

    def __init__(self, port, path, token, rcvbuf=None, first_frames=b"", timeout=5.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((HOST, port))
        self.sock.sendall(handshake_bytes(path, token) + first_frames)
        buf = b""
        dl = Deadline(timeout)
        while b"\r\n\r\n" not in buf and not dl.passed():
            d = self.sock.recv(4096)
            if not d:
                break
            buf += d
        head, _, self.buf = buf.partition(b"\r\n\r\n")
        m = re.match(rb"HTTP/1\.1 (\d{3})", head)
        self.status = int(m.group(1)) if m else None
        if self.status != 101:
            self.sock.close()
            raise ConnectionError("upgrade of %s answered %r" % (path, head[:60]))
        self.closed_by_server = False
        self.close_code = None
        self.close_reason = b""
        self.texts = []  # text payloads (kept only when keep_text)
        self.counts = {}  # error code -> count
        self.types = {}  # message type -> count
        self.bytes_in = 0
        self._pending = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send_frame(self, frame, timeout=None):
        if timeout is not None:
            self.sock.settimeout(timeout)
        self.sock.sendall(frame)

    def _account(self, payload, keep_text):
        for code in re.findall(rb'"code":"([a-z_]+)"', payload):
            c = code.decode()
            self.counts[c] = self.counts.get(c, 0) + 1
        for t in re.findall(rb'"type":"([a-z_]+)"', payload):
            t = t.decode()
            self.types[t] = self.types.get(t, 0) + 1
        if keep_text:
            self.texts.append(payload)

    def _parse(self, keep_text):
        b = self.buf
        while True:
            if len(b) < 2:
                break
            op = b[0] & 0x0F
            n = b[1] & 0x7F
            off = 2
            if n == 126:
                if len(b) < 4:
                    break
                n = struct.unpack("!H", b[2:4])[0]
                off = 4
            elif n == 127:
                if len(b) < 10:
                    break
                n = struct.unpack("!Q", b[2:10])[0]
                off = 10
            if b[1] & 0x80:
                off += 4  # a server must not mask; tolerate it anyway
            if len(b) < off + n:
                break
            payload = b[off:off + n]
            b = b[off + n:]
            if op == 8:
                self.closed_by_server = True
                if len(payload) >= 2:
                    self.close_code = struct.unpack("!H", payload[:2])[0]
                    self.close_reason = payload[2:]
                else:
                    self.close_code = 1005
            elif op in (0, 1, 2):
                self._account(payload, keep_text)
        self.buf = b

    def drain(self, seconds, max_bytes=64 * MiB, quiet=1.0, keep_text=False, until=None):
        """Reads and parses for up to `seconds`; stops after `quiet` s without data, at EOF,
        after a close frame, or when until() holds."""
        self._parse(keep_text)
        dl = Deadline(seconds)
        got = 0
        while not dl.passed() and got < max_bytes and not self.closed_by_server:
            if until and until():
                break
            self.sock.settimeout(min(quiet, max(0.05, dl.left())))
            try:
                d = self.sock.recv(262144)
            except socket.timeout:
                break
            except OSError:  # reset
                self.closed_by_server = True
                break
            if not d:
                self.closed_by_server = True
                break
            got += len(d)
            self.bytes_in += len(d)
            self.buf += d
            self._parse(keep_text)
        return got


def ws_connect(port, path, token, timeout=5.0):
    return websocket.create_connection("ws://%s:%d%s" % (HOST, port, path),
                                       header=["Authorization: Bearer " + token], timeout=timeout)


def ws_recv_until(ws, pred, seconds):
    """Receives JSON messages until pred(msg) holds; returns (match or None, all seen)."""
    seen = []
    dl = Deadline(seconds)
    while not dl.passed():
        ws.settimeout(max(0.05, dl.left()))
        try:
            t = ws.recv()
        except websocket.WebSocketTimeoutException:
            break
        except (websocket.WebSocketConnectionClosedException, OSError):
            break
        if not t:
            continue
        try:
            v = json.loads(t)
        except ValueError:
            continue
        for m in (v if isinstance(v, list) else [v]):
            seen.append(m)
            if pred(m):
                return m, seen
    return None, seen


# --------------------------------------------------------------------------------------
# Fixture: tokens, fleet, web root

TOKENS = {
    "console": "atk-console",
    "reporter_a": "atk-reporter-a",
    "reporter_b": "atk-reporter-b",
    "unit": "atk-unit-m1",
    "unit_c9": "atk-unit-c9",
    "unit_c8": "atk-unit-c8",
    "gateway": "atk-gateway",
    "pager": "atk-pager",
    "insurer": "atk-picc",
}

XLAT, XLON = 29.5630, 106.5510


def write_fixture(workdir):
    tokens = {"tokens": [
        {"token": TOKENS["console"], "role": "console", "name": "attack console"},
        {"token": TOKENS["reporter_a"], "role": "reporter", "name": "attack reporter A"},
        {"token": TOKENS["reporter_b"], "role": "reporter", "name": "attack reporter B"},
        {"token": TOKENS["unit"], "role": "unit", "units": ["M1"], "name": "attack unit M1"},
        {"token": TOKENS["unit_c9"], "role": "unit", "units": ["C9"], "name": "attack unit C9"},
        {"token": TOKENS["unit_c8"], "role": "unit", "units": ["C8"], "name": "attack unit C8"},
        {"token": TOKENS["gateway"], "role": "gateway", "units": ["*"], "name": "attack gateway"},
        {"token": TOKENS["pager"], "role": "pager", "name": "attack pager"},
        {"token": TOKENS["insurer"], "role": "insurer", "insurer": "PICC", "name": "attack PICC"},
    ]}
    fleet = {"units": [
        {"id": "M1", "kind": "moto", "callsign": "渝警保01", "capcode": "1200001"},
        {"id": "M2", "kind": "moto", "callsign": "渝警保02", "capcode": "1200002"},
        {"id": "M3", "kind": "moto", "callsign": "渝警保03"},
        {"id": "C1", "kind": "car", "callsign": "渝查勘01"},
        {"id": "C8", "kind": "car", "callsign": "渝查勘08"},
        {"id": "C9", "kind": "car", "callsign": "渝查勘09"},
        {"id": "H1", "kind": "heli", "callsign": "渝救援1", "base": {"lat": 29.712254, "lon": 106.651895}},
    ]}
    with open(os.path.join(workdir, "tokens.json"), "w") as f:
        json.dump(tokens, f, ensure_ascii=False)
    with open(os.path.join(workdir, "fleet.json"), "w") as f:
        json.dump(fleet, f, ensure_ascii=False)
    web = os.path.join(workdir, "web")
    os.makedirs(web)
    index = b"<!doctype html><title>attack web root</title><p>console stand-in</p>\n"
    with open(os.path.join(web, "index.html"), "wb") as f:
        f.write(index)
    secret_dir = os.path.join(workdir, "web-secret")
    os.makedirs(secret_dir)
    secret = ("SECRET-%016x" % random.getrandbits(64)).encode()
    with open(os.path.join(secret_dir, "secret.txt"), "wb") as f:
        f.write(secret + b"\n")
    return web, index, secret


def report(rid, lat, lon, severity="minor"):
    return json.dumps({"type": "report", "id": rid, "lat": lat, "lon": lon, "ts": now_ms(),
                       "severity": severity, "injured": 0, "drivable": False, "parties_agree": False,
                       "vehicles": [{"plate": "渝A%05d" % random.randrange(100000), "insurer": "PICC"}],
                       "note": "attack.py"}, ensure_ascii=False)


def position(unit, lat, lon, ts=None):
    return {"type": "position", "unit": unit, "lat": lat, "lon": lon, "ts": ts or now_ms()}


# --------------------------------------------------------------------------------------
# The checks. Each returns (ok, figure); the runner adds liveness, health and RSS.


class Ctx:
    def __init__(self, args, srv, workdir, web, index, secret):
        self.args = args
        self.srv = srv
        self.workdir = workdir
        self.web = web
        self.index = index
        self.secret = secret
        self.D = 2.0 if args.quick else 10.0
        self.watch = None
        self.run_id = "%06x" % random.getrandbits(24)

    @property
    def port(self):
        return self.srv.port


def check_malformed(ctx):
    """1. Bad percent-escapes and %00 paths: a 4xx answer each; the server stays up."""
    con = TOKENS["console"]
    cases = [
        ("GET /api/units?token=%zz", b"GET /api/units?token=%zz HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("WS /ws/unit?token=%zz", b"GET /ws/unit?token=%zz HTTP/1.1\r\nHost: x\r\n" + UPGRADE + b"\r\n"),
        ("GET /api/incidents?state=%zz", b"GET /api/incidents?state=%zz HTTP/1.1\r\nHost: x\r\n"
         b"Authorization: Bearer " + con.encode() + b"\r\n\r\n"),
        ("WS /ws/console?batch=%g1", b"GET /ws/console?batch=%g1 HTTP/1.1\r\nHost: x\r\n" + UPGRADE +
         b"Authorization: Bearer " + con.encode() + b"\r\n\r\n"),
        ("GET /api/incidents?state=%", b"GET /api/incidents?state=% HTTP/1.1\r\nHost: x\r\n"
         b"Authorization: Bearer " + con.encode() + b"\r\n\r\n"),
        ("GET /%", b"GET /% HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("GET /%00", b"GET /%00 HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("GET /index.html%00.js", b"GET /index.html%00.js HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("GET /api/incidents/I-000001%00", b"GET /api/incidents/I-000001%00 HTTP/1.1\r\nHost: x\r\n"
         b"Authorization: Bearer " + con.encode() + b"\r\n\r\n"),
        ("GET /api/units?token=%00", b"GET /api/units?token=%00 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ]
    bad = []
    crashed = []
    for name, req in cases:
        r = http_raw(ctx.port, req)
        time.sleep(0.05)
        if not ctx.srv.alive():
            crashed.append(name)
            ctx.srv.ensure_up("check malformed: " + name)
            continue
        if r.status is None or not (400 <= r.status < 500):
            bad.append("%s -> %s" % (name, r.status if r.status is not None else (r.error or "no answer")))
    ok = not bad and not crashed
    fig = "%d/%d answered 4xx" % (len(cases) - len(bad) - len(crashed), len(cases))
    if crashed:
        fig += "; dispatchd DIED on: " + ", ".join(crashed)
    if bad:
        fig += "; not 4xx: " + "; ".join(bad)
    return ok, fig


def check_malformed_raw(ctx):
    """1b (contract 2: 'malformed requests of any kind ... get a 4xx answer'): bytes the HTTP
    parser itself refuses: a NUL in the target, a header line without a colon, a bad version."""
    cases = [
        ("NUL byte in the target", b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("header line without a colon", b"GET /healthz HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n"),
        ("version HTTP/9.z", b"GET /healthz HTTP/9.z\r\nHost: x\r\n\r\n"),
        ("space in a header name", b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n"),
    ]
    bad, crashed = [], []
    for name, req in cases:
        r = http_raw(ctx.port, req)
        time.sleep(0.05)
        if not ctx.srv.alive():
            crashed.append(name)
            ctx.srv.ensure_up("check malformed_raw: " + name)
            continue
        if r.status is None or not (400 <= r.status < 500):
            bad.append("%s -> %s" % (name, r.status if r.status is not None else "closed without an answer"))
    fig = "%d/%d answered 4xx" % (len(cases) - len(bad) - len(crashed), len(cases))
    if crashed:
        fig += "; dispatchd DIED on: " + ", ".join(crashed)
    if bad:
        fig += "; " + "; ".join(bad)
    return not bad and not crashed, fig


def check_metrics_hammer(ctx):
    """2. Many concurrent GET /metrics (with positions flowing): always 200, server stays up."""
    D = ctx.D
    stats = {"ok": 0, "bad": 0, "errors": 0, "other": {}}
    lock = threading.Lock()
    stop = threading.Event()
    max_requests = 200000

    def worker(fresh):
        c = None
        req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + (b"Connection: close\r\n" if fresh else b"") + b"\r\n"
        while not stop.is_set():
            with lock:
                if stats["ok"] + stats["bad"] + stats["errors"] >= max_requests:
                    return
            try:
                if c is None:
                    c = HttpConn(ctx.port, 5.0)
                c.send(req)
                r = c.read_response()
            except OSError as e:
                r = Resp()
                r.error = str(e)
            with lock:
                if r.status == 200 and b"dispatch_frames_in_total" in r.body:
                    stats["ok"] += 1
                elif r.status is None:
                    stats["errors"] += 1
                    k = (r.error or "no answer")[:60]
                    stats["other"][k] = stats["other"].get(k, 0) + 1
                else:
                    stats["bad"] += 1
                    k = "status %s" % r.status
                    stats["other"][k] = stats["other"].get(k, 0) + 1
            if fresh or r.status is None or r.headers.get("connection", "").lower() == "close":
                if c:
                    c.close()
                c = None
                if not ctx.srv.alive():
                    return
        if c:
            c.close()

    def load():  # positions through a gateway keep the engine and the store busy
        try:
            ws = ws_connect(ctx.port, "/ws/unit", TOKENS["gateway"])
        except Exception:
            return
        i = 0
        while not stop.is_set() and i < 100000:
            i += 1
            t = now_ms()
            batch = [position(u, XLAT + 0.001 * (i % 10), XLON + 0.0005 * k, t)
                     for k, u in enumerate(("M1", "M2", "M3", "C1"))]
            try:
                ws.send(json.dumps(batch))
            except Exception:
                break
            time.sleep(0.01)
        try:
            ws.close()
        except Exception:
            pass

    # Half keep their connection, half open a new one per request.
    threads = [threading.Thread(target=worker, args=(i % 2 == 1,), daemon=True) for i in range(48)]
    threads.append(threading.Thread(target=load, daemon=True))
    for t in threads:
        t.start()
    dl = Deadline(D)
    while not dl.passed() and not ctx.watch.should_stop():
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(10)
    total = stats["ok"] + stats["bad"] + stats["errors"]
    fig = "%d requests by 48 concurrent clients in %.0f s (positions flowing): %d x 200" % (
        total, D, stats["ok"])
    if stats["other"]:
        fig += "; " + ", ".join("%s: %d" % kv for kv in sorted(stats["other"].items()))
    return stats["bad"] == 0 and stats["errors"] == 0 and stats["ok"] > 0, fig


def flood(ctx, ws, frame, max_frames, seconds):
    """Sends `frame` again and again without reading; returns (frames sent, closed early)."""
    sent = 0
    pending = memoryview(b"")
    ws.sock.settimeout(0.2)
    dl = Deadline(seconds)
    while not dl.passed() and sent < max_frames and not ctx.watch.should_stop():
        if not pending:
            pending = memoryview(frame)
        try:
            n = ws.sock.send(pending)
        except socket.timeout:
            continue
        except OSError:
            return sent, True
        pending = pending[n:]
        if not pending:
            sent += 1
    return sent, False


def rate_verdict(ws, frames, msgs_per_frame, elapsed, reply_code):
    """What the contract allows a client that floods: `rate_limited` at most once a second,
    and answers to at most burst + rate x elapsed messages; or the server closes it."""
    rl = ws.counts.get("rate_limited", 0)
    answered = ws.counts.get(reply_code, 0)
    allowed = int((BURST + RATE * elapsed) * 1.1) + 10
    closed = ws.closed_by_server
    fig = "%d frames (%d messages) sent in %.1f s; drained %s: %d x %s, %d x rate_limited" % (
        frames, frames * msgs_per_frame, elapsed, mib(ws.bytes_in), answered, reply_code, rl)
    if closed:
        fig += "; closed by server (%s%s)" % (
            ws.close_code if ws.close_code is not None else "no close frame",
            (" " + ws.close_reason.decode("utf-8", "replace")) if ws.close_reason else "")
    problems = []
    if not closed and rl == 0:
        problems.append("never rate-limited nor closed")
    if rl > elapsed + 2:
        problems.append("rate_limited %d times in %.1f s (contract: at most once a second)" % (rl, elapsed))
    if answered > allowed and not closed:
        problems.append("%d %s answers > %d allowed by the rate" % (answered, reply_code, allowed))
    if problems:
        fig += "; " + "; ".join(problems)
    return not problems, fig


def check_slow_pager(ctx):
    """3a. A pager that never reads sends 64 KiB frames of [1,1,...]: memory bounded; the
    server closes it (1008) or rate-limits it."""
    n = (65000 - 2) // 2
    payload = "[" + ",".join(["1"] * n) + "]"
    assert len(payload) <= 65536
    frame = ws_frame(payload)
    t0 = time.monotonic()
    ws = RawWs(ctx.port, "/ws/pager", TOKENS["pager"], rcvbuf=4096)
    try:
        frames, closed = flood(ctx, ws, frame, 20000, ctx.D)
        ws.closed_by_server |= closed
        ws.drain(min(5.0, ctx.D + 1), max_bytes=32 * MiB)
        return rate_verdict(ws, frames, n, time.monotonic() - t0, "bad_message")
    finally:
        ws.close()


def check_slow_insurer(ctx):
    """3b. An insurer far over the rate limit that never reads: bounded; rate_limited at most
    once a second, or closed."""
    one = ws_frame('{"type":"claim_paid","claim":"C-999999","amount":1}')
    frame = one * 500  # 500 frames per write
    t0 = time.monotonic()
    ws = RawWs(ctx.port, "/ws/insurer", TOKENS["insurer"], rcvbuf=4096)
    try:
        writes, closed = flood(ctx, ws, frame, 4000, ctx.D)
        ws.closed_by_server |= closed
        ws.drain(min(5.0, ctx.D + 1), max_bytes=32 * MiB)
        return rate_verdict(ws, writes * 500, 1, time.monotonic() - t0, "bad_message")
    finally:
        ws.close()


def check_binary_frames(ctx):
    """3c. Binary frames count in the rate limit: a flood of them gets rate_limited (or a
    close), memory bounded."""
    one = ws_frame(b"\x01\x02\x03binary" * 8, opcode=2)
    frame = one * 500
    t0 = time.monotonic()
    # A unit token: the plain --rate (a gateway may be given a bulk rate of its own).
    ws = RawWs(ctx.port, "/ws/unit", TOKENS["unit"], rcvbuf=4096)
    try:
        writes, closed = flood(ctx, ws, frame, 4000, ctx.D)
        ws.closed_by_server |= closed
        ws.drain(min(5.0, ctx.D + 1), max_bytes=32 * MiB)
        return rate_verdict(ws, writes * 500, 1, time.monotonic() - t0, "bad_json")
    finally:
        ws.close()


def check_report_ids_scoped(ctx):
    """4. Two reporter tokens, the same report id, different places: two incidents (v2 5.2)."""
    rid = "same-%s" % ctx.run_id
    a = ws_connect(ctx.port, "/ws/report", TOKENS["reporter_a"])
    b = ws_connect(ctx.port, "/ws/report", TOKENS["reporter_b"])
    try:
        a.send(report(rid, XLAT, XLON))
        ma, seen_a = ws_recv_until(a, lambda m: m.get("type") in ("accepted", "error"), 10)
        b.send(report(rid, XLAT + 0.05, XLON - 0.05))
        mb, seen_b = ws_recv_until(b, lambda m: m.get("type") in ("accepted", "error"), 10)
    finally:
        a.close()
        b.close()
    if not ma or not mb or ma.get("type") != "accepted" or mb.get("type") != "accepted":
        return False, "answers: A %s, B %s" % (ma, mb)
    ia, ib = ma.get("incident"), mb.get("incident")
    fig = "reporter A -> %s, reporter B -> %s" % (ia, ib)
    if ia == ib:
        return False, fig + " (the same incident: B's accident is lost)"
    # Each incident is where its own reporter put it.
    ra = get(ctx.port, "/api/incidents/" + ia, token=TOKENS["console"])
    rb = get(ctx.port, "/api/incidents/" + ib, token=TOKENS["console"])
    try:
        la = json.loads(ra.body)["lat"]
        lb = json.loads(rb.body)["lat"]
    except (ValueError, KeyError, TypeError):
        return False, fig + "; GET /api/incidents/{id}: %s %s" % (ra, rb)
    if abs(la - XLAT) > 1e-6 or abs(lb - (XLAT + 0.05)) > 1e-6:
        return False, fig + "; positions wrong: %s, %s" % (la, lb)
    return True, fig + "; each at its own reporter's place"


def check_incident_paging(ctx):
    """5. state=all&limit=2 returns at most 2; before=<last id> continues; every incident once."""
    ids = []
    a = ws_connect(ctx.port, "/ws/report", TOKENS["reporter_a"])
    try:
        for i in range(7):
            a.send(report("page-%s-%d" % (ctx.run_id, i), XLAT + 0.001 * i, XLON))
            m, _ = ws_recv_until(a, lambda m: m.get("type") in ("accepted", "error"), 10)
            if not m or m.get("type") != "accepted":
                return False, "report %d answered %s" % (i, m)
            ids.append(m["incident"])
    finally:
        a.close()
    con = TOKENS["console"]
    r = get(ctx.port, "/api/incidents?state=all", token=con)
    if r.status != 200:
        return False, "GET state=all: %s" % r
    everything = [o["id"] for o in json.loads(r.body)]
    missing = set(ids) - set(everything)
    if missing:
        return False, "state=all lacks %s" % sorted(missing)
    pages = []
    seen = []
    problems = []
    before = None
    for _ in range(len(everything) + 3):  # bounded
        target = "/api/incidents?state=all&limit=2" + ("&before=" + before if before else "")
        r = get(ctx.port, target, token=con)
        if r.status != 200:
            problems.append("%s -> %s" % (target, r.status))
            break
        page = [o["id"] for o in json.loads(r.body)]
        pages.append(len(page))
        if len(page) > 2:
            problems.append("page %d holds %d incidents" % (len(pages), len(page)))
        dup = [i for i in page if i in seen]
        if dup:
            problems.append("page %d repeats %s" % (len(pages), dup[:3]))
            break
        seen += page
        if not page:
            break
        before = page[-1]
    else:
        problems.append("paging did not end")
    if set(seen) != set(everything):
        problems.append("pages list %d of %d incidents" % (len(set(seen) & set(everything)), len(everything)))
    if [i for i in seen] != [i for i in everything if i in seen]:
        problems.append("pages are not in state=all's order (newest first)")
    fig = "%d incidents; pages of %s" % (len(everything), pages[:12])
    if problems:
        fig += "; " + "; ".join(problems)
    return not problems, fig


class Reader:
    """A WebSocket read on its own thread; each message of each frame goes to _take()."""

    def _start(self, ws):
        self.ws = ws
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        dl = Deadline(120)
        while not self.stop.is_set() and not dl.passed():
            self.ws.settimeout(0.2)
            try:
                t = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except Exception:
                break
            try:
                v = json.loads(t)
            except ValueError:
                continue
            with self.lock:
                for m in (v if isinstance(v, list) else [v]):
                    if isinstance(m, dict):
                        self._take(m)

    def close(self):
        self.stop.set()
        self.t.join(2)
        self.ws.close()


class UnitFeed(Reader):
    """A console's view of units, read on a thread."""

    def __init__(self, ctx):
        con = ws_connect(ctx.port, "/ws/console", TOKENS["console"])
        snap, _ = ws_recv_until(con, lambda m: m.get("type") == "snapshot", 10)
        if not snap:
            raise RuntimeError("no console snapshot")
        self.status = {u["id"]: u.get("status") for u in snap["units"]}
        self.seen = {}  # unit -> unit messages since start
        self._start(con)

    def _take(self, m):
        if m.get("type") == "unit" and m.get("id"):
            self.status[m["id"]] = m.get("status")
            self.seen[m["id"]] = self.seen.get(m["id"], 0) + 1

    def get(self, unit):
        with self.lock:
            return self.status.get(unit), self.seen.get(unit, 0)


class UnitConn(Reader):
    """A unit connection's errors, read on a thread."""

    def __init__(self, ctx, token):
        self.errors = []
        self._start(ws_connect(ctx.port, "/ws/unit", token))

    def _take(self, m):
        if m.get("type") == "error":
            self.errors.append(m.get("code"))

    def error_count(self):
        with self.lock:
            return len(self.errors)

    def counts(self):
        with self.lock:
            c = {}
            for e in self.errors:
                c[e] = c.get(e, 0) + 1
            return c

    def send(self, obj):
        self.ws.send(json.dumps(obj))


def toggle_until_refused(feed, conn, unit, max_changes, seconds):
    """Single status changes, one frame each, paced well under the message rate; each is
    taken when the console shows it, refused on an error or when it does not show. Returns
    (changes taken, refused, error codes of the refusal)."""
    taken = 0
    dl = Deadline(seconds)
    while taken < max_changes and not dl.passed():
        cur, _ = feed.get(unit)
        want = "available" if cur == "off_duty" else "off_duty"
        errs = conn.error_count()
        conn.send({"type": "status", "unit": unit, "status": want})
        step = Deadline(1.5)
        while not step.passed():
            if feed.get(unit)[0] == want:
                break
            if conn.error_count() > errs:
                break
            time.sleep(0.005)
        if feed.get(unit)[0] == want:
            taken += 1
            time.sleep(0.02)
            continue
        return taken, True, conn.errors[errs:]
    return taken, False, []


def check_status_toggle(ctx):
    """6. A unit toggles off_duty/available 600 times in one frame: rate_limited after a cap;
    at most ~60 changes taken. The rate_limited answer may come once a second only (v2), so
    the number taken is measured: a fresh unit (C8) changes status one frame at a time until
    refused (its cap), then C9 sends the 600 in one frame and afterwards changes one at a time
    until refused; the batch took (cap - those). When the server answers each refused message
    with an error, 600 - errors must agree. Cars, as the policy never assigns them (no
    assignment can turn a toggle into `conflict`)."""
    feed = UnitFeed(ctx)
    c8 = UnitConn(ctx, TOKENS["unit_c8"])
    c9 = UnitConn(ctx, TOKENS["unit_c9"])
    try:
        for conn, u in ((c8, "C8"), (c9, "C9")):  # a position first: plainly available
            conn.send(position(u, XLAT, XLON))
        wait = Deadline(5)
        while not wait.passed() and (feed.get("C8")[1] == 0 or feed.get("C9")[1] == 0):
            time.sleep(0.02)
        cap, cap_refused, cap_errs = toggle_until_refused(feed, c8, "C8", 65, ctx.D + 8)

        status0, seen0 = feed.get("C9")
        first = "off_duty" if status0 != "off_duty" else "available"
        other = "available" if first == "off_duty" else "off_duty"
        c9.send([{"type": "status", "unit": "C9", "status": first if i % 2 == 0 else other}
                 for i in range(600)])
        settle = Deadline(ctx.D + 2)
        last = (-1, -1)
        quiet = time.monotonic()
        while not settle.passed():  # until answers and console are quiet for 1 s
            now = (c9.error_count(), feed.get("C9")[1])
            if now != last:
                last, quiet = now, time.monotonic()
            elif time.monotonic() - quiet > 1.0:
                break
            time.sleep(0.05)
        batch_errors = c9.counts()
        status1, seen1 = feed.get("C9")
        time.sleep(1.1)  # a new rate_limited answer may be told from now on
        after, after_refused, _ = toggle_until_refused(feed, c9, "C9", 65, ctx.D + 8)
    finally:
        c8.close()
        c9.close()
        feed.close()
    rl = batch_errors.get("rate_limited", 0)
    errors = sum(batch_errors.values())
    fig = "C8 one at a time: %s; C9's 600 in one frame: errors %s, console saw %d message(s); " \
          "then C9 one at a time: %s" % (
              "%d taken, then refused (%s)" % (cap, ",".join(map(str, cap_errs)) or "silently") if cap_refused
              else "%d taken, never refused" % cap,
              batch_errors or "none", seen1 - seen0,
              "%d taken, then refused" % after if after_refused else "%d taken, never refused" % after)
    problems = []
    if rl == 0:
        problems.append("the batch got no rate_limited")
    if not cap_refused or not after_refused or cap > 60:
        problems.append("no cap of ~30-60 status changes")
        taken = None
    else:
        taken = max(0, cap - after)
        fig += "; so the batch took %d" % taken
        if taken > 60:
            problems.append("the batch took %d changes (> 60)" % taken)
        if errors >= 540 and abs((600 - errors) - taken) > 2:
            problems.append("600 - errors = %d disagrees" % (600 - errors))
        if taken == 0 and seen1 != seen0 and status1 != status0:
            problems.append("yet the console saw C9 change")
    if errors >= 540:
        fig += "; 600 - errors = %d" % (600 - errors)
    if problems:
        fig += "; " + "; ".join(problems)
    return not problems, fig


def check_traversal(ctx):
    """7. Targets that escape the web root: never the secret; 4xx."""
    cases = [
        b"GET -secret/secret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /../web-secret/secret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /%2e%2e/web-secret/secret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /%2E%2E/web-secret/secret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /..%2fweb-secret/secret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET -secret%2fsecret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET " + ctx.workdir.encode() + b"/web-secret/secret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    leaks, not4xx, answers = [], [], []
    for req in cases:
        target = req.split(b" ")[1].decode()
        r = http_raw(ctx.port, req)
        if not ctx.srv.alive():
            ctx.srv.ensure_up("check traversal: " + target)
            not4xx.append(target + " -> dispatchd DIED")
            continue
        answers.append("%s" % r.status)
        if ctx.secret in r.body:
            leaks.append("%s -> %s with the secret" % (target, r.status))
        elif r.status is None or not (400 <= r.status < 500):
            not4xx.append("%s -> %s" % (target, r.status if r.status is not None else "no answer"))
    fig = "answers %s" % " ".join(answers)
    if leaks:
        fig += "; LEAKED: " + "; ".join(leaks)
    if not4xx:
        fig += "; not 4xx: " + "; ".join(not4xx)
    return not leaks and not not4xx, fig


def check_idle_sockets(ctx):
    """8. 50 idle TCP sockets against --max-connections 50: a gateway still connects within
    a few seconds."""
    srv = Dispatchd(ctx.args.dispatchd, ctx.workdir, "maxconn",
                    ["--web-root", ctx.web, "--rate", str(RATE), "--max-connections", "50"])
    srv.start()
    ctx.extra_servers.append(srv)
    watch = RssWatch(srv)
    idle = []
    try:
        for _ in range(50):
            try:
                idle.append(socket.create_connection((HOST, srv.port), timeout=2))
            except OSError:
                break
        time.sleep(0.2)
        budget = 8.0 if ctx.args.quick else 10.0
        t0 = time.monotonic()
        dl = Deadline(budget)
        attempts = 0
        outcome = None
        last = ""
        while not dl.passed() and attempts < 200:
            attempts += 1
            try:
                ws = ws_connect(srv.port, "/ws/unit", TOKENS["gateway"], timeout=max(0.5, dl.left()))
                ws.send(json.dumps([position("M2", XLAT, XLON)]))
                ws.close()
                outcome = time.monotonic() - t0
                break
            except Exception as e:
                last = str(e)[:60]
                time.sleep(0.2)
        # How many of the idle sockets the server has closed by now.
        closed = 0
        for s in idle:
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    closed += 1
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
    finally:
        for s in idle:
            s.close()
        watch.finish()
    alive = srv.alive()
    fig = "%d idle sockets open; " % len(idle)
    if outcome is not None:
        fig += "gateway connected after %.1f s (%d attempts); %d idle sockets closed by the server" % (
            outcome, attempts, closed)
    else:
        fig += "gateway could not connect in %.0f s (%d attempts, last: %s)" % (budget, attempts, last)
    fig += "; rss %s -> peak %s" % (mib(watch.start), mib(watch.peak))
    if not alive:
        fig += "; dispatchd DIED: " + srv.note_death("check idle_sockets")
    ok = outcome is not None and alive and watch.peak - watch.start <= RSS_LIMIT
    srv.stop("idle_sockets (--max-connections 50)")
    return ok, fig


def check_head(ctx):
    """9. HEAD on a keep-alive connection: no body; the GET after it is well-formed."""
    problems = []
    figs = []
    for path, want in (("/healthz", b"ok\n"), ("/", ctx.index)):
        c = HttpConn(ctx.port, 5.0)
        try:
            c.send(b"HEAD " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            h = c.read_response(head=True)
            if h.status != 200:
                problems.append("HEAD %s -> %s" % (path, h.status or h.error))
                continue
            time.sleep(0.3)  # a body sent after a HEAD answer would be here by now
            c.sock.setblocking(False)
            try:
                while True:
                    d = c.sock.recv(65536)
                    if not d:
                        break
                    c.buf += d
            except (BlockingIOError, OSError):
                pass
            c.sock.settimeout(5.0)
            extra = len(c.buf)
            if extra:
                problems.append("HEAD %s: %d body bytes sent after it" % (path, extra))
            c.send(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            g = c.read_response()
            if g.status != 200 or g.body != want:
                problems.append("GET %s after HEAD is not well-formed" % path)
            figs.append("HEAD %s: 200 + %d stray bytes, then GET: %s" % (
                path, extra, g.status if g.status == 200 and g.body == want else (g.error or g.status)))
        finally:
            c.close()
    fig = "; ".join(figs)
    if problems:
        fig += "; " + "; ".join(problems)
    return not problems, fig


def check_utf8_and_coalesced(ctx):
    """10. Invalid UTF-8 in a text frame: 1007 or bad_json, never echoed. A frame in the same
    TCP write as the upgrade request: answered."""
    problems, figs = [], []
    variants = [
        ("0xFF 0xFE", b"\xff\xfe"),
        ("overlong /", b"\xc0\xaf"),
        ("surrogate", b"\xed\xa0\x80"),
        ("truncated", b"\xe6\xb8"),
    ]
    for name, bad in variants:
        payload = (b'{"type":"report","id":"utf8-' + bad + b'","lat":29.56,"lon":106.55,'
                   b'"severity":"minor","note":"' + bad + b'"}')
        ws = RawWs(ctx.port, "/ws/report", TOKENS["reporter_a"])
        try:
            ws.send_frame(ws_frame(payload))
            ws.drain(5.0, keep_text=True, quiet=2.0,
                     until=lambda: ws.closed_by_server or ws.counts or ws.types.get("accepted"))
        finally:
            ws.close()
        echoed = any(bad in t for t in ws.texts) or bad in ws.close_reason
        got = []
        if ws.close_code is not None:
            got.append("close %d" % ws.close_code)
        elif ws.closed_by_server:
            got.append("closed without a close frame")
        got += ["%s" % c for c in ws.counts]
        if ws.types.get("accepted"):
            got.append("accepted")
        figs.append("%s: %s" % (name, ", ".join(got) or "no answer"))
        if echoed:
            problems.append("%s: the invalid bytes were echoed" % name)
        if ws.types.get("accepted"):
            problems.append("%s: accepted as a report" % name)
        elif not (ws.close_code == 1007 or ws.counts.get("bad_json")):
            problems.append("%s: neither 1007 nor bad_json" % name)

    # The upgrade request and a first frame in one sendall.
    rid = "coalesced-%s" % ctx.run_id
    first = ws_frame(report(rid, XLAT, XLON))
    try:
        ws = RawWs(ctx.port, "/ws/report", TOKENS["reporter_a"], first_frames=first)
    except (ConnectionError, OSError) as e:
        problems.append("handshake with a coalesced frame: %s" % e)
    else:
        try:
            ws.drain(5.0, keep_text=True, quiet=5.0,
                     until=lambda: ws.types.get("accepted") or ws.types.get("error"))
        finally:
            ws.close()
        answer = ws.texts[0][:80].decode("utf-8", "replace") if ws.texts else None
        figs.append("frame in the upgrade's write: %s" % (answer or "no answer in 5 s (dropped)"))
        if not answer:
            problems.append("the frame sent with the upgrade request was dropped")
    fig = "; ".join(figs)
    if problems:
        fig += " -- " + "; ".join(problems)
    return not problems, fig


def check_foreign_units(ctx):
    """11. A unit token for M1 about M2 (exists) and ZZZ (does not): both forbidden."""
    ws = ws_connect(ctx.port, "/ws/unit", TOKENS["unit"])
    answers = {}
    try:
        for u in ("M2", "ZZZ"):
            ws.send(json.dumps(position(u, XLAT, XLON)))
            m, _ = ws_recv_until(ws, lambda m: m.get("type") == "error", 5)
            answers[u] = m.get("code") if m else None
        # and as a batch, and as a status message
        ws.send(json.dumps([position("M2", XLAT, XLON), position("ZZZ", XLAT, XLON)]))
        m1, _ = ws_recv_until(ws, lambda m: m.get("type") == "error", 5)
        m2, _ = ws_recv_until(ws, lambda m: m.get("type") == "error", 5)
        answers["batch"] = "%s/%s" % (m1 and m1.get("code"), m2 and m2.get("code"))
        for u in ("M2", "ZZZ"):
            ws.send(json.dumps({"type": "status", "unit": u, "status": "off_duty"}))
            m, _ = ws_recv_until(ws, lambda m: m.get("type") == "error", 5)
            answers["status " + u] = m.get("code") if m else None
    finally:
        ws.close()
    fig = ", ".join("%s: %s" % kv for kv in answers.items())
    ok = all(v in ("forbidden", "forbidden/forbidden") for v in answers.values())
    return ok, fig


CHECKS = [
    ("malformed_requests", check_malformed),
    ("malformed_raw", check_malformed_raw),
    ("metrics_hammer", check_metrics_hammer),
    ("slow_pager_amplification", check_slow_pager),
    ("insurer_over_rate", check_slow_insurer),
    ("binary_frames_rate", check_binary_frames),
    ("report_ids_per_token", check_report_ids_scoped),
    ("incident_paging", check_incident_paging),
    ("status_toggle_batch", check_status_toggle),
    ("web_root_traversal", check_traversal),
    ("idle_sockets", check_idle_sockets),
    ("head_keep_alive", check_head),
    ("utf8_and_coalesced_frame", check_utf8_and_coalesced),
    ("foreign_units", check_foreign_units),
]


# --------------------------------------------------------------------------------------


def run_check(ctx, name, fn):
    srv = ctx.srv
    srv.ensure_up("before " + name)
    deaths_before = len(srv.deaths)
    own_server = fn is check_idle_sockets
    ctx.watch = None if own_server else RssWatch(srv)
    t0 = time.monotonic()
    try:
        ok, fig = fn(ctx)
    except Exception as e:
        ok = False
        fig = "attack aborted: %s: %s" % (type(e).__name__, e)
        if ctx.args.verbose:
            traceback.print_exc()
    elapsed = time.monotonic() - t0
    if own_server:
        return ok, fig, elapsed
    watch = ctx.watch
    time.sleep(0.1)
    watch.finish()
    notes = []
    if not srv.alive():
        ok = False
        notes.append("dispatchd DIED: " + srv.note_death("check " + name))
        srv.start()
    elif len(srv.deaths) > deaths_before:
        ok = False  # died and was restarted inside the check (the figure says where)
    elif not healthy(srv.port):
        ok = False
        notes.append("GET /healthz not 200 after the attack")
    grew = watch.peak - watch.start
    if grew > RSS_LIMIT or watch.blown:
        ok = False
        notes.append("RSS grew %s (> 256 MiB; attack stopped early)" % mib(grew))
    fig += "; rss %s -> peak %s" % (mib(watch.start), mib(watch.peak))
    if notes:
        fig += "; " + "; ".join(notes)
    # A bloated server would skew the checks after it: start a fresh one.
    if srv.alive() and (watch.blown or (srv.rss() or 0) - watch.start > RSS_LIMIT // 2):
        srv.restart("restart after %s (rss %s)" % (name, mib(srv.rss() or 0)))
    return ok, fig, elapsed


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dispatchd", default=os.path.join(here, "..", "build", "net", "dispatchd"))
    ap.add_argument("--quick", action="store_true", help="about 2 s per attack instead of 10 s")
    ap.add_argument("--only", default="", help="comma-separated check names (default: all)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (logs, databases)")
    ap.add_argument("--io-threads", type=int, default=2, help="dispatchd --io-threads (default 2)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    args.dispatchd = os.path.abspath(args.dispatchd)
    if not os.access(args.dispatchd, os.X_OK) or os.path.getsize(args.dispatchd) == 0:
        print("attack.py: no dispatchd at %s (build it: ninja -C build dispatchd)" % args.dispatchd)
        return 2
    names = [n for n, _ in CHECKS]
    only = [s for s in args.only.split(",") if s]
    for o in only:
        if o not in names:
            print("attack.py: unknown check %r; checks: %s" % (o, ", ".join(names)))
            return 2
    random.seed()
    workdir = tempfile.mkdtemp(prefix="dispatch-attack-")
    web, index, secret = write_fixture(workdir)
    srv = Dispatchd(args.dispatchd, workdir, "dispatchd",
                    ["--web-root", web, "--rate", str(RATE), "--io-threads", str(args.io_threads)])
    ctx = Ctx(args, srv, workdir, web, index, secret)
    ctx.extra_servers = []
    results = []
    t_all = time.monotonic()
    print("attack.py: %s, %s s per attack, work dir %s" % (args.dispatchd, int(ctx.D), workdir), flush=True)
    try:
        srv.start()
        print("dispatchd pid %d on %s:%d, rss %s" % (srv.proc.pid, HOST, srv.port, mib(srv.rss() or 0)),
              flush=True)
        for i, (name, fn) in enumerate(CHECKS, 1):
            if only and name not in only:
                continue
            ok, fig, elapsed = run_check(ctx, name, fn)
            results.append((name, ok))
            print("%s %2d %-26s %s (%.1f s)" % ("PASS" if ok else "FAIL", i, name, fig, elapsed), flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        results.append(("interrupted", False))
    except Exception as e:
        print("FAIL    setup: %s: %s" % (type(e).__name__, e), flush=True)
        if args.verbose:
            traceback.print_exc()
        results.append(("setup", False))
    finally:
        srv.stop("final")
        for s in ctx.extra_servers:
            s.stop("extra")
    stops = srv.stops + [st for s in ctx.extra_servers for st in s.stops]
    stop_ok = all(ok for _, ok, _ in stops) and bool(stops)
    print("%s    %-26s %s" % ("PASS" if stop_ok else "FAIL", "clean_shutdown",
                               "; ".join("%s: %s" % (label, d) for label, _, d in stops) or "nothing to stop"),
          flush=True)
    results.append(("clean_shutdown", stop_ok))
    failed = [n for n, ok in results if not ok]
    print("%d checks, %d failed%s; %.0f s" % (len(results), len(failed),
                                              (": " + ", ".join(failed)) if failed else "",
                                              time.monotonic() - t_all), flush=True)
    if args.keep or failed and os.environ.get("ATTACK_KEEP_ON_FAIL"):
        print("kept %s" % workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
