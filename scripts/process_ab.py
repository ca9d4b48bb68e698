#!/usr/bin/env python3
"""Whole-process comparison of scratchnet binaries on a shared, noisy machine.

Runs `BINARY train -q ARGS --save TMP` under /usr/bin/time for each binary in
turn, ROUNDS times (interleaved, so load from other tenants hits all alike),
and prints per binary the medians of wall time, user and system CPU, peak
resident memory and the test accuracy of the `done:` line.

On a virtual machine, memory another process freed a moment ago is cheap to
touch again, and memory the host took back (seconds later) is dear; in turn,
each binary would inherit the pages of the one before. `--settle S` waits S
seconds before every run, so that each starts as a command typed after a
pause does.

    scripts/process_ab.py --rounds 5 --settle 20 OLD NEW [MORE ...] -- --seed 1
"""

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one(binary, args, out):
    fmt = "TIME %e %U %S %M"
    cmd = ["/usr/bin/time", "-f", fmt, binary, "train", "-q", *args, "--save", out]
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    text = p.stdout + p.stderr
    wall, user, sys_, rss = re.search(r"TIME (\S+) (\S+) (\S+) (\d+)", text).groups()
    test = re.search(r"test (\d\.\d+)", text)
    return {
        "wall_s": float(wall),
        "user_s": float(user),
        "sys_s": float(sys_),
        "peak_mb": int(rss) / 1024,
        "test": float(test.group(1)) if test else float("nan"),
    }


def main():
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--settle", type=float, default=0.0, help="seconds to wait before each run")
    ap.add_argument("binaries", nargs="+")
    a = ap.parse_args(argv[:cut])
    args = argv[cut + 1 :]
    runs = {b: [] for b in a.binaries}
    with tempfile.TemporaryDirectory() as d:
        for _ in range(a.rounds):
            for b in a.binaries:
                time.sleep(a.settle)
                runs[b].append(one(b, args, str(Path(d) / "m.snm")))
    for b, rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        walls = ", ".join(f"{r['wall_s']:.2f}" for r in rs)
        print(
            f"{b}: wall {med['wall_s']:.2f} s ({walls}), user {med['user_s']:.2f} s, "
            f"sys {med['sys_s']:.2f} s, peak {med['peak_mb']:.0f} MB, test {med['test']:.4f}"
        )


if __name__ == "__main__":
    main()
