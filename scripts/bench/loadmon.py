#!/usr/bin/env python3
"""Runs one command and measures how busy the machine was with OTHER work meanwhile.

The 1-minute load average cannot tell a noisy neighbour from the benchmark itself (a
2-thread benchmark alone pushes it towards 2), so this samples /proc twice a second:

    foreign CPU = (busy jiffies of the whole machine) - (jiffies of the command's process tree)

expressed in cores (0 = the machine was ours alone, 2 = a 2-core machine was fully taken by
others). Exited descendants stay counted through their parent's cutime/cstime. Hypervisor
steal time is reported separately (it is invisible to the guest but slows it down all the same).

Usage:
    loadmon.py --json OUT.json -- CMD [ARG...]
    loadmon.py --probe SECONDS     prints the cores other processes used during SECONDS

Writes one JSON object to OUT.json (and stderr): cmd, exit code, wall_s, loadavg before/after,
foreign_cpu_mean, foreign_cpu_max_5s (worst 5-second window), steal_mean (cores).
The exit status is the command's.
"""
import json
import os
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")
PERIOD_S = 0.5
WINDOW_S = 5.0


def machine_jiffies():
    """(busy, steal) jiffies summed over all CPUs; busy excludes idle, iowait and steal."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = f[:7]
    steal = f[7] if len(f) > 7 else 0
    return user + nice + system + irq + softirq, steal


def proc_table():
    """pid -> (ppid, utime + stime + cutime + cstime) for every live process."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                s = fh.read()
        except OSError:
            continue  # exited while we looked
        # comm may contain spaces and parentheses: split after the last ')'
        rest = s[s.rindex(")") + 2:].split()
        ppid = int(rest[1])
        ticks = sum(int(x) for x in rest[11:15])  # utime stime cutime cstime
        out[int(name)] = (ppid, ticks)
    return out


def tree_jiffies(root):
    table = proc_table()
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            total += table[pid][1]
        stack.extend(children.get(pid, ()))
    return total


def loadavg():
    with open("/proc/loadavg") as fh:
        return [float(x) for x in fh.read().split()[:3]]


def probe(seconds):
    """Cores used by every process but this one during `seconds`."""
    busy0, _ = machine_jiffies()
    own0 = tree_jiffies(os.getpid())
    t0 = time.monotonic()
    time.sleep(seconds)
    busy1, _ = machine_jiffies()
    own1 = tree_jiffies(os.getpid())
    return max(0, (busy1 - busy0) - (own1 - own0)) / HZ / (time.monotonic() - t0)


def main(argv):
    if len(argv) == 2 and argv[0] == "--probe":
        print(f"{probe(float(argv[1])):.3f}")
        return 0
    if len(argv) < 4 or argv[0] != "--json" or argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    out_path, cmd = argv[1], argv[3:]
    before = loadavg()
    t0 = time.monotonic()
    busy0, steal0 = machine_jiffies()
    child = subprocess.Popen(cmd)
    own_prev, busy_prev = tree_jiffies(os.getpid()), busy0
    samples = []  # (dt_s, foreign_jiffies)
    t_prev = t0
    while True:
        try:
            child.wait(timeout=PERIOD_S)
            done = True
        except subprocess.TimeoutExpired:
            done = False
        now = time.monotonic()
        busy, _ = machine_jiffies()
        # after wait() the child is reaped: its final times are no longer readable, so the
        # last interval credits the machine's busy time to the command (conservative)
        own = tree_jiffies(os.getpid()) if not done else own_prev + (busy - busy_prev)
        samples.append((now - t_prev, max(0, (busy - busy_prev) - (own - own_prev))))
        t_prev, busy_prev, own_prev = now, busy, own
        if done:
            break
    wall = time.monotonic() - t0
    busy1, steal1 = machine_jiffies()
    foreign = sum(j for _, j in samples)
    # worst sliding window of ~WINDOW_S seconds
    worst, i, acc_t, acc_j = 0.0, 0, 0.0, 0
    for dt, j in samples:
        acc_t += dt
        acc_j += j
        while acc_t - samples[i][0] >= WINDOW_S:
            acc_t -= samples[i][0]
            acc_j -= samples[i][1]
            i += 1
        if acc_t >= min(WINDOW_S, wall) * 0.9:
            worst = max(worst, acc_j / HZ / acc_t)
    rec = {
        "cmd": " ".join(cmd),
        "exit": child.returncode,
        "wall_s": round(wall, 1),
        "loadavg_before": before,
        "loadavg_after": loadavg(),
        "foreign_cpu_mean": round(foreign / HZ / max(wall, 1e-9), 3),
        "foreign_cpu_max_5s": round(worst, 3),
        "steal_mean": round((steal1 - steal0) / HZ / max(wall, 1e-9), 3),
    }
    line = json.dumps(rec)
    with open(out_path, "w") as fh:
        fh.write(line + "\n")
    print("loadmon: " + line, file=sys.stderr)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
