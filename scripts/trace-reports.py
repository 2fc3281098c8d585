#!/usr/bin/env python3
"""Where a report's time goes, from both sides of a run (issue 13, docs/performance.md).

  dispatchd ... --trace-reports server.trace
  dispatch-sim run ... --trace sim.trace
  scripts/trace-reports.py server.trace sim.trace

Both write monotonic microseconds (the same clock on one machine). Joined per incident,
a report's time splits into: inbound (the simulator's send -> the server's read of the
frame), engine wait (-> the engine thread takes it), engine (-> accepted), commit
(-> its first assign released after the commit), to client (-> the simulator reads the
assign: the I/O thread, the socket, the simulator's gateway thread). Prints p50, p90,
p99 and max of each, and each one's mean over the slowest 2% of reports.
"""
import sys

SEGMENTS = ["total", "inbound", "engine wait", "engine", "commit", "to client"]


def read_server(path):
    reports, assigns = {}, {}
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if p[0] == "report" and len(p) == 6:
                reports[p[2]] = tuple(int(x) for x in p[3:6])
            elif p[0] == "assign" and len(p) == 3:
                assigns.setdefault(p[1], int(p[2]))
    return reports, assigns


def join(server_path, sim_path):
    reports, assigns = read_server(server_path)
    rows, seen = [], 0
    with open(sim_path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if p[0] != "report" or len(p) != 5:
                continue
            seen += 1
            incident, sent, arrived = p[2], int(p[3]), int(p[4])
            if incident not in reports or incident not in assigns:
                continue
            read, took, accepted = reports[incident]
            if read == 0:  # not from a WebSocket frame
                continue
            released = assigns[incident]
            rows.append({"total": arrived - sent, "inbound": read - sent, "engine wait": took - read,
                         "engine": accepted - took, "commit": released - accepted, "to client": arrived - released,
                         "incident": incident, "sent": sent, "arrived": arrived})
    return rows, seen


def quantile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rows, seen = join(sys.argv[1], sys.argv[2])
    print(f"{len(rows)} reports joined of {seen} the simulator saw assigned")
    if not rows:
        sys.exit(1)
    worst = sorted(rows, key=lambda r: -r["total"])[:max(1, len(rows) // 50)]
    print(f"| segment (us) | p50 | p90 | p99 | max | slowest 2% (mean) |")
    print("|---|---:|---:|---:|---:|---:|")
    for s in SEGMENTS:
        v = sorted(r[s] for r in rows)
        mean = sum(r[s] for r in worst) / len(worst)
        print(f"| {s} | {quantile(v, .5)} | {quantile(v, .9)} | {quantile(v, .99)} | {v[-1]} | {mean:.0f} |")


if __name__ == "__main__":
    main()
