#!/usr/bin/env python3
"""Which threads held the CPUs while the slowest reports waited (issue 13, docs/performance.md).

  dispatchd ... --trace-reports server.trace          (or TRACE=1 KEEP=DIR scripts/bench.sh)
  dispatch-sim run ... --trace sim.trace
  perf record -k CLOCK_MONOTONIC -e sched:sched_switch -e sched:sched_wakeup -a -o ps.data -- sleep 8
  perf sched timehist -i ps.data > timehist.txt        (during the run, on the same machine)
  scripts/who-ran.py timehist.txt server.trace sim.trace [N]

For the N (default 10) slowest reports inside the recorded window: each one's segments (as
scripts/trace-reports.py splits them), how long after the simulator's latest round of
positions it was sent, and the CPU time each thread (of any process) had while it was on
its way. Then where the slowest 1% fell in the position period. Both traces and the
timehist are on CLOCK_MONOTONIC (`-k CLOCK_MONOTONIC`), so they line up.
"""
import bisect
import collections
import importlib.util
import os
import sys


def load_trace_reports():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "trace-reports.py")
    spec = importlib.util.spec_from_file_location("trace_reports", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def read_timehist(path):
    """Run slices (start_us, end_us, thread) from `perf sched timehist` (idle left out)."""
    slices = []
    with open(path) as f:
        for line in f:
            p = line.split()
            # time cpu task wait sch-delay run-time
            if len(p) < 6 or not p[1].startswith("["):
                continue
            try:
                end = float(p[0]) * 1e6
                run = float(p[-1]) * 1e3
            except ValueError:
                continue
            task = " ".join(p[2:-3])
            if task.startswith("<idle>"):
                continue
            slices.append((end - run, end, task))
    slices.sort()
    return slices


def read_rounds(sim_path):
    rounds = []
    with open(sim_path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if p[0] == "positions" and len(p) == 3:
                rounds.append(int(p[1]))
    rounds.sort()
    return rounds


def cpu_by_thread(slices, starts, a, b):
    """CPU time (us) each thread had within [a, b]."""
    held = collections.Counter()
    for s, e, task in slices[:bisect.bisect_left(starts, b)]:  # a slice may be long: all before b
        overlap = min(e, b) - max(s, a)
        if overlap > 0:
            held[task] += overlap
    return held


def phase_ms(rounds, t):
    i = bisect.bisect_right(rounds, t) - 1
    return (t - rounds[i]) / 1000 if i >= 0 else None


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    n = int(sys.argv[4]) if len(sys.argv) == 5 else 10
    tr = load_trace_reports()
    slices = read_timehist(sys.argv[1])
    if not slices:
        sys.exit(f"{sys.argv[1]}: no run slices (the output of perf sched timehist?)")
    starts = [s[0] for s in slices]
    rows, _ = tr.join(sys.argv[2], sys.argv[3])
    lo, hi = slices[0][0], max(s[1] for s in slices)
    rows = [r for r in rows if lo <= r["sent"] and r["arrived"] <= hi]
    if not rows:
        sys.exit("no report lies inside the recorded window (was perf recording with -k CLOCK_MONOTONIC?)")
    rounds = read_rounds(sys.argv[3])
    rows.sort(key=lambda r: -r["total"])
    parts = [s for s in tr.SEGMENTS if s != "total"]
    print(f"{len(rows)} reports inside the recorded window; the {min(n, len(rows))} slowest:")
    for r in rows[:n]:
        ph = phase_ms(rounds, r["sent"]) if rounds else None
        where = f", sent {ph:.1f} ms after a round of positions" if ph is not None else ""
        print(f"\n{r['incident']}: {r['total']} us{where}")
        print("  " + ", ".join(f"{s} {r[s]}" for s in parts))
        for task, us in cpu_by_thread(slices, starts, r["sent"], r["arrived"]).most_common(6):
            print(f"  {task:<36} {us:8.0f} us on a CPU")
    if rounds:
        period = (rounds[-1] - rounds[0]) / max(1, len(rounds) - 1) / 1000
        worst = rows[:max(1, len(rows) // 100)]
        bins = collections.Counter()
        for r in worst:
            ph = phase_ms(rounds, r["sent"])
            if ph is not None:
                bins[min(9, int(ph / period * 10))] += 1
        print(f"\nThe slowest 1% ({len(worst)}) by when they were sent within the position period "
              f"({period:.0f} ms, tenths):")
        print("  " + "  ".join(f"{k * 10}%: {bins[k]}" for k in range(10)))


if __name__ == "__main__":
    main()
