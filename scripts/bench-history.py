#!/usr/bin/python3
"""History and export at scale (docs/performance.md, "History and export").

Starts dispatchd on a fresh database, files N reports over /ws/report (array frames), then
times GET /api/incidents with the history filters and the CSV export of everything, and
reads the server's peak resident memory (VmHWM) before and after the export.

    /usr/bin/python3 scripts/bench-history.py --dispatchd build/net/dispatchd --reports 100000
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request

import websocket  # Debian's python3-websocket


def hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmHWM:", "VmRSS:")):
                yield line.split(":")[0], int(line.split()[1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dispatchd", required=True)
    ap.add_argument("--reports", type=int, default=100000)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="dispatch-bench-history-")
    tokens = os.path.join(work, "tokens.json")
    with open(tokens, "w") as f:
        json.dump({"tokens": [{"token": "c", "role": "console", "name": "desk"},
                              {"token": "r", "role": "reporter", "name": "cc"}]}, f)
    proc = subprocess.Popen([args.dispatchd, "--listen", "127.0.0.1:0", "--db", os.path.join(work, "d.db"),
                             "--tokens", tokens, "--rate", "10000000", "--max-open-per-token", "0",
                             "--sync-normal", "--max-frame", "1048576"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        line = proc.stdout.readline().decode()
        where = re.search(r"listening on (\S+)", line).group(1)
        base = "http://" + where
        ws = websocket.create_connection("ws://%s/ws/report" % where, header=["Authorization: Bearer r"])
        t0 = int(time.time() * 1000) - 30 * 86400 * 1000
        places = [(29.556, 106.573), (29.575, 106.535), (29.541, 106.447), (29.60, 106.50)]
        sev = ["minor", "injury", "critical", "minor"]
        start = time.monotonic()
        sent = accepted = 0
        while sent < args.reports:
            batch = []
            for _ in range(min(500, args.reports - sent)):
                sent += 1
                lat, lon = places[sent % 4]
                batch.append({"type": "report", "id": "b%d" % sent, "lat": lat, "lon": lon,
                              "severity": sev[sent % 4], "ts": t0 + sent * 20000, "note": "追尾, \"bench\"",
                              "vehicles": [{"plate": "渝A%05d" % (sent % 100000), "insurer": "PICC"}]})
            ws.send(json.dumps(batch))
            while accepted < sent - 2000:
                accepted += ws.recv().count('"accepted"')
        while accepted < sent:
            accepted += ws.recv().count('"accepted"')
        filed = time.monotonic() - start
        print("filed %d reports in %.1f s" % (sent, filed))

        def timed(path):
            req = urllib.request.Request(base + path, headers={"Authorization": "Bearer c"})
            t = time.monotonic()
            with urllib.request.urlopen(req, timeout=600) as r:
                n = 0
                while True:
                    chunk = r.read(1 << 16)
                    if not chunk:
                        break
                    n += len(chunk)
            return time.monotonic() - t, n

        mid = t0 + (args.reports // 2) * 20000
        for label, path in [
            ("newest page of 1,000, no filter", "/api/incidents?state=all&limit=1000"),
            ("page of 100, one day (from/to)", "/api/incidents?state=all&limit=100&from=%d&to=%d" % (mid, mid + 86400000)),
            ("page of 100, severity=critical", "/api/incidents?state=all&limit=100&severity=critical"),
            ("one plate, matching 1 (scan)", "/api/incidents?state=all&plate=%s" % urllib.parse.quote("渝A00042")),
            ("district, oldest page (before)", "/api/incidents?state=all&limit=100&district=%s&before=I-%06d"
             % (urllib.parse.quote("沙坪坝区"), 1000)),
        ]:
            dt, n = timed(path)
            print("%-40s %8.1f ms  %9d bytes" % (label, dt * 1000, n))
        before = dict(hwm_kib(proc.pid))
        dt, n = timed("/api/incidents.csv?state=all")
        after = dict(hwm_kib(proc.pid))
        print("CSV export of all %d: %.2f s, %.1f MB, %.0f rows/s; server VmHWM %d -> %d KiB"
              % (args.reports, dt, n / 1e6, args.reports / dt, before["VmHWM"], after["VmHWM"]))
        dt, n = timed("/api/incidents?state=all")
        after_json = dict(hwm_kib(proc.pid))
        print("for contrast, JSON of all %d in one answer: %.2f s, %.1f MB; server VmHWM -> %d KiB"
              % (args.reports, dt, n / 1e6, after_json["VmHWM"]))
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    import urllib.parse  # noqa: F401
    main()
