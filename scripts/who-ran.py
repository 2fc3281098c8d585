#!/usr/bin/env python3
"""Which threads held the CPUs while the slowest reports waited (issue 13, docs/performance.md).

  dispatchd ... --trace-reports server.trace          (or TRACE=1 KEEP=DIR scripts/bench.sh)
  dispatch-sim run ... --trace sim.trace
  perf record -k CLOCK_MONOTONIC -e sched:sched_switch -e sched:sched_wakeup -a -o ps.data -- sleep 8
  perf sched timehist --state -i ps.data > timehist.txt  (during the run, on the same machine)
  scripts/who-ran.py timehist.txt server.trace sim.trace [N]

For the N (default 10) slowest reports inside the recorded window: each one's segments (as
scripts/trace-reports.py splits them), how long after the simulator's latest round of
positions it was sent, the CPU time each thread (of any process) had while it was on
its way, and the time threads waited for a CPU meanwhile (runnable, not running), with
how much of it another CPU was idle. Then where the slowest 1% fell in the position period. Both traces and the
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
    """From `perf sched timehist` (with --state, or without): run slices (start_us, end_us,
    thread), idle left out; the waits for a CPU (start_us, end_us, thread): the "sch delay"
    before a slice, or with --state its whole wait when it was switched out runnable
    (preempted) before; and the CPUs' idle slices (start_us, end_us)."""
    slices, waits, idle = [], [], []
    last_state = {}
    with open(path) as f:
        for line in f:
            p = line.split()
            # time cpu task wait sch-delay run-time [state]
            if len(p) < 6 or not p[1].startswith("["):
                continue
            state = p.pop() if p[-1].isalpha() else None
            try:
                end = float(p[0]) * 1e6
                run = float(p[-1]) * 1e3
                delay = float(p[-2]) * 1e3
                wait = float(p[-3]) * 1e3
            except ValueError:
                continue
            task = " ".join(p[2:-3])
            if task.startswith("<idle>"):
                idle.append((end - run, end))
                continue
            slices.append((end - run, end, task))
            if last_state.get(task) == "R":
                delay = wait  # preempted: runnable all along
            if state:
                last_state[task] = state
            if delay > 0:
                waits.append((end - run - delay, end - run, task))
    slices.sort()
    return slices, waits, idle


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


def waited_by_thread(waits, idle, a, b):
    """Time (us) each thread waited for a CPU within [a, b] (runnable, not running), and how
    much of it some CPU was idle meanwhile (a CPU that held the thread would not be idle,
    so that is time it waited on a busy CPU while another had nothing to do: the kernel
    leaves a thread woken or preempted on a busy CPU until its next load balance)."""
    waited, with_idle = collections.Counter(), collections.Counter()
    for s, e, task in waits:
        lo, hi = max(s, a), min(e, b)
        if hi <= lo:
            continue
        waited[task] += hi - lo
        spans = sorted((max(lo, i_s), min(hi, i_e)) for i_s, i_e in idle if i_e > lo and i_s < hi)
        end = lo
        for x, y in spans:  # the union of the CPUs' idle time within the wait
            x = max(x, end)
            if y > x:
                with_idle[task] += y - x
                end = y
    return waited, with_idle


def phase_ms(rounds, t):
    i = bisect.bisect_right(rounds, t) - 1
    return (t - rounds[i]) / 1000 if i >= 0 else None


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    n = int(sys.argv[4]) if len(sys.argv) == 5 else 10
    tr = load_trace_reports()
    slices, waits, idle = read_timehist(sys.argv[1])
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
        waited, with_idle = waited_by_thread(waits, idle, r["sent"], r["arrived"])
        for task, us in waited.most_common(4):
            if us >= 50:
                print(f"  {task:<36} {us:8.0f} us waiting for a CPU ({with_idle[task]:.0f} with a CPU idle)")
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
