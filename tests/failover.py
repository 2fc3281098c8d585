#!/usr/bin/env python3
"""Active and standby on one PostgreSQL (wire contract v2 section 9), end to end.

Two real dispatchd on one database (ctest runs this under Debian's pg_virtualenv, which
makes a throw-away cluster and sets PGHOST/PGPORT/PGUSER/PGPASSWORD):

1. SIGKILL of the active one in a stream of reports: the standby serves within the lease
   plus one second (measured and printed); every accepted report is there; ids sent again
   give the same incidents; the assignments sent before the kill are intact; units come
   back at their last known positions.
2. SIGSTOP of the (new) active one: a third server takes over; after SIGCONT the paused
   one answers 503 `standby` and stays so; nothing is duplicated.

Waits on events with deadlines (polling), never on fixed sleeps. Exit 77 (skip) when no
PostgreSQL is reachable or Python's websocket module is missing.
"""
import argparse
import http.client
import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

try:
    import websocket  # Debian: python3-websocket
except ImportError:
    print("SKIP: python3-websocket is missing")
    sys.exit(77)

HOST = "127.0.0.1"
LAT, LON = 29.5630, 106.5510
REPORTER, GATEWAY, CONSOLE = "fo-reporter", "fo-gateway", "fo-console"
UNITS = ["M%d" % i for i in range(1, 7)] + ["C%d" % i for i in range(1, 5)]


def now_ms():
    return int(time.time() * 1000)


class Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self):
        return max(0.0, self.end - time.monotonic())

    def passed(self):
        return time.monotonic() >= self.end


def wait_until(pred, seconds, every=0.01):
    dl = Deadline(seconds)
    while not dl.passed():
        v = pred()
        if v:
            return v
        time.sleep(every)
    return pred()


def psql(sql, db="postgres"):
    r = subprocess.run(["psql", "-XAtq", "-d", db, "-c", sql], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("psql %s: %s" % (sql, r.stderr.strip()))
    return r.stdout.strip()


def pg_url(db):
    e = os.environ
    return "postgresql://%s:%s@%s:%s/%s" % (e.get("PGUSER", "postgres"), e.get("PGPASSWORD", ""),
                                           e.get("PGHOST", "localhost"), e.get("PGPORT", "5432"), db)


def http_get(port, path, token=None, timeout=2.0):
    """(status, body) or (None, error)."""
    try:
        c = http.client.HTTPConnection(HOST, port, timeout=timeout)
        c.request("GET", path, headers={"Authorization": "Bearer " + token} if token else {})
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body
    except OSError as e:
        return None, str(e)


class Server:
    def __init__(self, binary, workdir, db, name, lease_ms):
        self.name = name
        self.stderr_path = os.path.join(workdir, name + ".stderr")
        args = [binary, "--listen", HOST + ":0", "--db", db, "--lease-ms", str(lease_ms), "--node-name", name,
                "--tokens", os.path.join(workdir, "tokens.json"), "--fleet", os.path.join(workdir, "fleet.json"),
                "--web-root", "", "--zones", "", "--places", ""]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=open(self.stderr_path, "wb"))
        lines = queue.Queue()

        def pump():
            for line in iter(self.proc.stdout.readline, b""):
                lines.put(line.decode("utf-8", "replace").rstrip("\n"))
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        dl = Deadline(30)
        self.port = None
        while not dl.passed() and self.port is None:
            try:
                line = lines.get(timeout=dl.left() + 0.01)
            except queue.Empty:
                break
            if line is None:
                break
            m = re.match(r"listening on (.+):(\d+)$", line)
            if m:
                self.port = int(m.group(2))
        if self.port is None:
            raise RuntimeError("%s did not start: %s" % (name, self.stderr()))

    def health(self):
        return http_get(self.port, "/healthz", timeout=1.0)

    def active(self):
        return self.health()[0] == 200

    def standby(self):
        s, b = self.health()
        return s == 503 and b.strip() == b"standby"

    def state(self):
        try:
            with open("/proc/%d/stat" % self.proc.pid) as f:
                return f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return "?"

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-2000:]
        except OSError:
            return ""

    def kill(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Conn:
    """A WebSocket whose JSON messages are read on a thread into a list."""

    def __init__(self, port, path, token):
        self.ws = websocket.create_connection("ws://%s:%d%s" % (HOST, port, path),
                                              header=["Authorization: Bearer " + token], timeout=5)
        self.msgs = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        self.ws.settimeout(None)
        try:
            while True:
                t = self.ws.recv()
                if not t:
                    continue
                v = json.loads(t)
                with self.lock:
                    self.msgs.extend(v if isinstance(v, list) else [v])
        except Exception:
            self.closed = True

    def send(self, obj):
        self.ws.send(json.dumps(obj, ensure_ascii=False))

    def find(self, pred):
        with self.lock:
            return [m for m in self.msgs if pred(m)]

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


def report(rid, k):
    return {"type": "report", "id": rid, "lat": LAT + 0.0004 * (k % 20), "lon": LON + 0.0003 * (k % 17),
            "ts": now_ms(), "severity": "injury", "injured": 1, "drivable": False, "parties_agree": False,
            "vehicles": [{"plate": "渝A%05d" % k, "insurer": "PICC"}], "note": "failover.py"}


def positions():
    return [{"type": "position", "unit": u, "lat": LAT + 0.001 * i, "lon": LON - 0.001 * i, "ts": now_ms()}
            for i, u in enumerate(UNITS)]


def write_fixture(workdir):
    tokens = {"tokens": [
        {"token": REPORTER, "role": "reporter", "name": "failover reporter"},
        {"token": GATEWAY, "role": "gateway", "units": ["*"], "name": "failover gateway"},
        {"token": CONSOLE, "role": "console", "name": "failover console"},
    ]}
    fleet = {"units": [{"id": u, "kind": "moto" if u[0] == "M" else "car", "callsign": "渝" + u} for u in UNITS]}
    with open(os.path.join(workdir, "tokens.json"), "w") as f:
        json.dump(tokens, f, ensure_ascii=False)
    with open(os.path.join(workdir, "fleet.json"), "w") as f:
        json.dump(fleet, f, ensure_ascii=False)


def nmea_sentence(body):
    cs = 0
    for ch in body.encode():
        cs ^= ch
    return "$%s*%02X\r\n" % (body, cs)


def nmea_coord(v, deg_digits):
    a = abs(v)
    deg = int(a)
    return "%0*d%07.4f" % (deg_digits, deg, (a - deg) * 60)


def nmea_fix(ts_ms, lat, lon):
    t = time.gmtime(ts_ms // 1000)
    hms = "%02d%02d%02d.%03d" % (t.tm_hour, t.tm_min, t.tm_sec, ts_ms % 1000)
    dmy = "%02d%02d%02d" % (t.tm_mday, t.tm_mon, t.tm_year % 100)
    la = nmea_coord(lat, 2) + ",N"
    lo = nmea_coord(lon, 3) + ",E"
    return (nmea_sentence("GNRMC,%s,A,%s,%s,9.7,90.0,%s,,,A" % (hms, la, lo, dmy)) +
            nmea_sentence("GNGGA,%s,%s,%s,1,12,0.8,250.0,M,-30.0,M,," % (hms, la, lo)))


def unit_at(server, unit):
    s, body = http_get(server.port, "/api/units", token=CONSOLE)
    if s != 200:
        return None
    for u in json.loads(body):
        if u.get("id") == unit:
            return u
    return None


FAILS = []


def check(ok, what):
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    if not ok:
        FAILS.append(what)
    return ok


def accepted_ids(rep):
    return [m["id"] for m in rep.find(lambda m: m.get("type") == "accepted")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dispatchd", required=True)
    ap.add_argument("--lease-ms", type=int, default=1500)
    ap.add_argument("--avl", help="dispatch-avl, to check that it follows the active one")
    args = ap.parse_args()
    lease_s = args.lease_ms / 1000.0
    try:
        psql("SELECT 1")
    except Exception as e:
        print("SKIP: no PostgreSQL reachable (run under pg_virtualenv): %s" % e)
        return 77
    db = "dispatch_failover_%d" % os.getpid()
    psql("CREATE DATABASE " + db)
    workdir = tempfile.mkdtemp(prefix="dispatch-failover-")
    write_fixture(workdir)
    url = pg_url(db)
    servers = []
    try:
        a = Server(args.dispatchd, workdir, url, "a", args.lease_ms)
        servers.append(a)
        check(wait_until(a.active, 10), "the first dispatchd takes the lease and serves (GET /healthz 200)")
        b = Server(args.dispatchd, workdir, url, "b", args.lease_ms)
        servers.append(b)
        check(wait_until(b.standby, 5), "the second one is a standby: /healthz 503 'standby'")
        s, _ = http_get(b.port, "/api/units", token=CONSOLE)
        check(s == 503, "a standby answers other requests with 503 (GET /api/units: %s)" % s)
        try:
            websocket.create_connection("ws://%s:%d/ws/report" % (HOST, b.port),
                                        header=["Authorization: Bearer " + REPORTER], timeout=3)
            check(False, "a standby refuses WebSocket upgrades with 503")
        except websocket.WebSocketBadStatusException as e:
            check(e.status_code == 503, "a standby refuses WebSocket upgrades with 503 (%s)" % e.status_code)

        # ---- 1. SIGKILL of the active one in a stream of reports
        gw = Conn(a.port, "/ws/unit", GATEWAY)
        gw.send(positions())
        rep = Conn(a.port, "/ws/report", REPORTER)
        ids, accepted = [], {}
        for k in range(30):
            ids.append("fo-%d" % k)
            rep.send(report("fo-%d" % k, k))
        check(wait_until(lambda: len(accepted_ids(rep)) == 30, 10), "30 reports accepted by the active one")
        # More reports in flight when it dies: some are accepted, some never answered.
        for k in range(30, 40):
            ids.append("fo-%d" % k)
            rep.send(report("fo-%d" % k, k))
        a.kill(signal.SIGKILL)
        t_kill = time.monotonic()
        a.proc.wait()
        for m in rep.find(lambda m: m.get("type") == "accepted"):
            accepted[m["id"]] = m["incident"]
        assigns = gw.find(lambda m: m.get("type") == "assign")
        rep.close()
        gw.close()
        took = wait_until(b.active, lease_s + 5)
        takeover = time.monotonic() - t_kill
        print("takeover: %.0f ms after SIGKILL (lease %d ms)" % (takeover * 1000, args.lease_ms), flush=True)
        check(bool(took) and takeover <= lease_s + 1.0,
              "the standby serves within lease + 1 s (%.0f ms <= %d ms)" % (takeover * 1000, args.lease_ms + 1000))
        # Units at their last known positions.
        s, body = http_get(b.port, "/api/units", token=CONSOLE)
        units = json.loads(body) if s == 200 else []
        placed = [u for u in units if u.get("lat") is not None and u.get("ts")]
        check(len(placed) == len(UNITS), "every unit restored with its last position and time (%d of %d)"
              % (len(placed), len(UNITS)))
        # Every accepted report is there; the same ids again give the same incidents.
        rep = Conn(b.port, "/ws/report", REPORTER)
        for k, rid in enumerate(ids):
            rep.send(report(rid, k))
        wait_until(lambda: len(rep.find(lambda m: m.get("type") in ("accepted", "error"))) >= len(ids), 10)
        again = {m["id"]: m["incident"] for m in rep.find(lambda m: m.get("type") == "accepted")}
        lost = [r for r in accepted if again.get(r) != accepted[r]]
        check(not lost and len(accepted) >= 30,
              "no accepted report lost: %d accepted before the kill, each the same incident again%s"
              % (len(accepted), (" (lost or changed: %s)" % lost[:5]) if lost else ""))
        check(len(again) == len(ids), "every report id sent again is accepted (%d of %d)" % (len(again), len(ids)))
        # Assignments sent before the kill are intact.
        missing = []
        for m in assigns:
            s, body = http_get(b.port, "/api/incidents/" + m["incident"], token=CONSOLE)
            inc = json.loads(body) if s == 200 else {}
            if not any(x.get("assignment") == m.get("assignment") and x.get("unit") == m.get("unit")
                       for x in inc.get("assignments", [])):
                missing.append(m.get("assignment"))
        check(len(assigns) > 0 and not missing, "the %d assignments sent before the kill are intact%s"
              % (len(assigns), (" (missing: %s)" % missing[:5]) if missing else ""))
        rep.close()

        # ---- 2. SIGSTOP / SIGCONT of the active one
        c = Server(args.dispatchd, workdir, url, "c", args.lease_ms)
        servers.append(c)
        check(wait_until(c.standby, 5), "a third dispatchd starts as a standby")
        rep = Conn(b.port, "/ws/report", REPORTER)
        b.kill(signal.SIGSTOP)
        t_stop = time.monotonic()
        check(wait_until(lambda: b.state() == "T", 5), "the active one is stopped (state T)")
        rep.send(report("fo-paused", 99))  # reaches a paused server: never answered by it
        took = wait_until(c.active, lease_s + 5)
        print("takeover after SIGSTOP: %.0f ms" % ((time.monotonic() - t_stop) * 1000), flush=True)
        check(bool(took), "the standby takes over from a paused active one")
        rep2 = Conn(c.port, "/ws/report", REPORTER)
        for k in range(100, 110):
            rep2.send(report("fo-%d" % k, k))
        check(wait_until(lambda: len(accepted_ids(rep2)) == 10, 10), "the new active one accepts reports")
        b.kill(signal.SIGCONT)
        check(wait_until(b.standby, 5), "the resumed former active answers 503 'standby'")
        probes, dl = 0, Deadline(lease_s)
        stays = True
        while not dl.passed():  # observed over a whole lease: every probe says standby
            stays = stays and b.standby()
            probes += 1
        check(stays and b.proc.poll() is None, "... and stays a standby (%d probes over a lease)" % probes)
        check(not rep.find(lambda m: m.get("type") == "accepted" and m.get("id") == "fo-paused"),
              "the resumed one sent nothing for the report it got while paused")
        n_paused = psql("SELECT count(*) FROM incidents WHERE report_id = 'fo-paused'", db)
        check(n_paused == "0", "its commit of that report was fenced: not in the database (%s rows)" % n_paused)
        n, distinct = psql("SELECT count(*) || ' ' || count(DISTINCT (source, report_id)) FROM incidents", db).split()
        check(n == distinct, "nothing duplicated: %s incidents, %s distinct (source, report id)" % (n, distinct))
        epoch = psql("SELECT epoch || ' ' || holder FROM lease", db)
        check(epoch.endswith(" c"), "the lease is the third server's (epoch, holder: %s)" % epoch)
        rep.close()
        rep2.close()

        # ---- 3. The AVL gateway follows the active one; its backlog survives the switch
        if args.avl:
            d = Server(args.dispatchd, workdir, url, "d", args.lease_ms)
            servers.append(d)
            check(wait_until(d.standby, 5), "a fourth dispatchd starts as a standby")
            avl = subprocess.Popen([args.avl, "--server", "%s:%d,%s:%d,%s:%d" % (HOST, b.port, HOST, c.port, HOST, d.port),
                                    "--token", GATEWAY, "--no-gpsd", "--nmea-listen", HOST + ":0",
                                    "--flush-ms", "20", "--backoff-min-ms", "50", "--backoff-max-ms", "200"],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=open(os.path.join(workdir, "avl.stderr"), "wb"))
            try:
                line = avl.stdout.readline().decode()
                m = re.match(r"nmea listening on (.+):(\d+)", line)
                check(bool(m), "dispatch-avl listens for NMEA (%s)" % line.strip())
                import socket
                nm = socket.create_connection((HOST, int(m.group(2))), timeout=5)
                nm.sendall(b"UNIT M6\r\n")
                lat1, lon1 = LAT + 0.005 + 0.0002, LON - 0.005  # near its last position: no GPS jump
                nm.sendall(nmea_fix(now_ms(), lat1, lon1).encode())
                got = wait_until(lambda: (unit_at(c, "M6") or {}).get("lat") and
                                 abs(unit_at(c, "M6")["lat"] - lat1) < 1e-4, 10)
                check(bool(got), "dispatch-avl given a standby first reaches the active one (M6 at %s)"
                      % (unit_at(c, "M6") or {}).get("lat"))
                c.kill(signal.SIGKILL)
                c.proc.wait()
                # Fixes while no server is active: kept in the backlog.
                # A unit driving north at ~40 km/h: 2.2 m every 200 ms (no GPS jump).
                t2 = now_ms()
                lat2, lon2 = lat1 + 0.0001, lon1
                for k in range(5):
                    nm.sendall(nmea_fix(t2 + 200 * k, lat1 + 0.00002 * (k + 1), lon2).encode())
                check(bool(wait_until(d.active, lease_s + 5)), "the fourth takes over")
                got = wait_until(lambda: (unit_at(d, "M6") or {}).get("lat") and
                                 abs(unit_at(d, "M6")["lat"] - lat2) < 1e-4, 15)
                check(bool(got), "dispatch-avl moved to the new active one with its backlog (M6 at %s)"
                      % (unit_at(d, "M6") or {}).get("lat"))
                nm.close()
            finally:
                avl.terminate()
                avl.wait(10)
    finally:
        for s in servers:
            s.stop()
        for s in servers:
            if FAILS:
                print("--- %s stderr:\n%s" % (s.name, s.stderr()))
        try:
            psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db)
        except Exception:
            pass
    print("%d checks failed" % len(FAILS) if FAILS else "all checks passed")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
