#!/usr/bin/env python3
"""The installed dispatchd serves the whole console from its own prefix (issue 17).

`cmake --install` from the already-built build tree into a temporary prefix, the prefix
copied to another temporary path (and the first one deleted), then the copied dispatchd
started with only --listen, --db and --tokens: it must say it uses the copied prefix's
share/dispatch, and serve /, every file the console page loads (index.html's scripts and
stylesheets, the modules they import, the images the stylesheets use) and /geo/*, all 200.
--check-config on the copy: 0 with the shipped files, non-zero with a broken one.

Usage: test_install.py BUILD_DIR
"""
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

DEADLINE_S = 20


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def get(base, path, token=None):
    url = base + path
    if token:
        url += ("&" if "?" in url else "?") + "token=" + token
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


def references(path, body, ctype):
    """Local files a page, module or stylesheet loads, as absolute paths."""
    text = body.decode("utf-8", "replace")
    found = []
    if "html" in ctype:
        found += re.findall(r'<(?:script|link)\b[^>]*?\b(?:src|href)\s*=\s*["\']([^"\']+)["\']', text, re.I)
    elif "javascript" in ctype:
        found += re.findall(r'\b(?:import|export)\b[^;\'"]*?\bfrom\s*["\']([^"\']+)["\']', text)
        found += re.findall(r'\bimport\s*["\']([^"\']+)["\']', text)
        found += re.findall(r'\bimport\(\s*["\']([^"\']+)["\']\s*\)', text)
    elif "css" in ctype:
        found += re.findall(r'url\(\s*["\']?([^"\')]+)["\']?\s*\)', text)
    out = []
    for ref in found:
        if ref.startswith("data:") or "://" in ref or ref.startswith("//"):
            continue
        if "javascript" in ctype and not ref.startswith((".", "/")):
            continue  # a bare specifier would fail in the browser anyway; none expected
        ref = ref.split("#")[0].split("?")[0]
        out.append(urllib.parse.urljoin(path, ref))
    return out


def main():
    if len(sys.argv) != 2:
        fail("usage: test_install.py BUILD_DIR")
    build = os.path.abspath(sys.argv[1])
    work = tempfile.mkdtemp(prefix="dispatch-install-")
    proc = None
    try:
        first = os.path.join(work, "first-prefix")
        t0 = time.monotonic()
        r = subprocess.run(["cmake", "--install", build, "--prefix", first, "--component", "server"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            fail("cmake --install failed:\n" + r.stdout + r.stderr)
        for rel in ["bin/dispatchd", "share/dispatch/web/index.html", "share/dispatch/assets/geo/README.md",
                    "share/dispatch/assets/places/README.md", "share/dispatch/config/demo-tokens.json",
                    "share/dispatch/config/insurers.json", "lib/systemd/system/dispatchd.service",
                    "lib/sysusers.d/dispatch.conf", "share/doc/dispatch/README.md"]:
            if not os.path.exists(os.path.join(first, rel)):
                fail("not installed: " + rel)
        unit = open(os.path.join(first, "lib/systemd/system/dispatchd.service")).read()
        for want in ["User=dispatch", "ProtectSystem=strict", "StateDirectory=dispatch", "Restart=on-failure",
                     "ExecStart=" + os.path.join(first, "bin/dispatchd") + " "]:
            if want not in unit:
                fail("dispatchd.service lacks " + want)
        # Somewhere else entirely; the first prefix goes away.
        prefix = os.path.join(work, "moved", "elsewhere")
        shutil.copytree(first, prefix, symlinks=True)
        shutil.rmtree(first)
        share = os.path.join(prefix, "share", "dispatch")
        dispatchd = os.path.join(prefix, "bin", "dispatchd")
        tokens = os.path.join(share, "config", "demo-tokens.json")
        run_dir = os.path.join(work, "run")
        os.mkdir(run_dir)

        # --check-config on the copy: the shipped files are good...
        r = subprocess.run([dispatchd, "--check-config", "--tokens", tokens,
                            "--fleet", os.path.join(share, "config", "demo-fleet.json"),
                            "--db", os.path.join(run_dir, "d.db")], capture_output=True, text=True, cwd=run_dir)
        if r.returncode != 0:
            fail("--check-config on the installed files: rc %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
        for want in ["web root " + os.path.join(share, "web"), "zones " + share, "places " + share,
                     "insurers " + share, "fleet "]:
            if want not in r.stdout:
                fail("--check-config did not report '%s':\n%s" % (want, r.stdout))
        # ... and a broken fleet is named with what is wrong.
        bad_fleet = os.path.join(run_dir, "fleet.json")
        with open(bad_fleet, "w") as f:
            json.dump({"units": [{"id": "M1", "kind": "moto"}, {"id": "M1", "kind": "moto"}]}, f)
        r = subprocess.run([dispatchd, "--check-config", "--tokens", tokens, "--fleet", bad_fleet],
                           capture_output=True, text=True, cwd=run_dir)
        if r.returncode == 0 or "unit M1 appears twice" not in r.stderr:
            fail("--check-config with a bad fleet: rc %d\n%s%s" % (r.returncode, r.stdout, r.stderr))

        # The server from the copy, with nothing but --listen, --db and --tokens.
        err_path = os.path.join(run_dir, "dispatchd.err")
        err = open(err_path, "w")
        proc = subprocess.Popen([dispatchd, "--listen", "127.0.0.1:0", "--db", os.path.join(run_dir, "d.db"),
                                 "--tokens", tokens], stdout=subprocess.PIPE, stderr=err, cwd=run_dir)
        where = None
        buf = b""
        end = time.monotonic() + DEADLINE_S
        while where is None:
            left = end - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                fail("dispatchd did not start:\n" + open(err_path).read())
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                buf += chunk
                m = re.search(rb"listening on (\S+)\n", buf)
                if m:
                    where = m.group(1).decode()
        log = open(err_path).read()
        if "web root " + os.path.join(share, "web") + ";" not in log:
            fail("dispatchd does not use its own prefix's web root:\n" + log)
        if "zones " + os.path.join(share, "assets") not in log:
            fail("dispatchd does not use its own prefix's districts:\n" + log)
        base = "http://" + where

        seen, todo, fetched = set(), ["/"], []
        while todo:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            status, body, ctype = get(base, path)
            if status != 200 or not body:
                fail("GET %s: %d (%d bytes)" % (path, status, len(body)))
            fetched.append(path)
            todo += references(path, body, ctype)
        for want in ["/app.js", "/console.css"]:
            if want not in seen:
                fail("the page does not load " + want + "; loaded: " + ", ".join(sorted(seen)))
        if not any("leaflet" in p and p.endswith(".js") for p in seen):
            fail("the page loads no Leaflet module: " + ", ".join(sorted(seen)))
        if not any("leaflet" in p and p.endswith(".css") for p in seen):
            fail("the page loads no Leaflet stylesheet: " + ", ".join(sorted(seen)))
        if not any(p.endswith(".png") for p in seen):
            fail("Leaflet's stylesheet images were not followed: " + ", ".join(sorted(seen)))
        for geo in ["/geo/districts.geojson", "/geo/places.geojson"]:
            status, body, _ = get(base, geo)
            if status != 200:
                fail("GET %s: %d" % (geo, status))
            features = json.loads(body).get("features", [])
            if not features:
                fail(geo + " has no features: the prefix's assets were not loaded")
        status, _, _ = get(base, "/api/units", "demo-console")
        if status != 200:
            fail("GET /api/units with the demo console token: %d" % status)

        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            fail("dispatchd did not stop on SIGTERM")
        proc = None
        if rc != 0:
            fail("dispatchd exited %d on SIGTERM" % rc)
        print("ok: installed, moved to %s, %d files of the console served (%s), /geo/* loaded; %.1f s"
              % (prefix, len(fetched), ", ".join(sorted(fetched)), time.monotonic() - t0))
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
