#!/usr/bin/env python3
"""What watching a run costs: `scratchnet train` plain, with `--watch` and
nobody looking, and with `--watch` and a headless Chromium showing the page,
in alternating rounds; prints each run's training time (the `done:` line's
seconds of training steps) and whole time, their medians, and each watched
mode's overhead over the plain median.

    python3 scripts/watch_cost.py [--rounds 7] [-- TRAIN OPTIONS...]

Needs target/release/scratchnet and, for the browser mode, chromium.
"""

import argparse
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "target" / "release" / "scratchnet"
DONE = re.compile(r"done: \d+ steps in ([0-9.]+) s \(([0-9.]+) s training")


def one(mode, options):
    """One run in `mode`: its (training, whole) seconds."""
    args = [str(BIN), "train", "-q", "--data", str(ROOT / "data" / "mnist"), *options]
    if mode != "plain":
        args.append("--watch")
    browser = None
    with tempfile.TemporaryDirectory() as work:
        run = subprocess.Popen(args, cwd=work, stdout=subprocess.PIPE, text=True)
        try:
            for line in run.stdout:
                url = re.search(r"http://\S+", line)
                if url and mode == "browser":
                    browser = subprocess.Popen(
                        ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", f"--user-data-dir={work}/profile",
                         "--remote-debugging-port=0", url.group(0)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                done = DONE.search(line)
                if done:
                    return float(done.group(2)), float(done.group(1))
            raise SystemExit(f"no `done:` line from {' '.join(args)}")
        finally:
            if browser:
                browser.terminate()
                browser.wait()
            run.send_signal(signal.SIGINT)
            run.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("options", nargs="*", help="train's options (after --)")
    a = ap.parse_args()
    modes = ["plain", "watched", "browser"] if shutil.which("chromium") else ["plain", "watched"]
    seen = {m: [] for m in modes}
    for r in range(a.rounds):
        for m in modes:
            train, whole = one(m, a.options)
            seen[m].append((train, whole))
            print(f"round {r + 1} {m:8s} training {train:.3f} s  whole {whole:.3f} s", flush=True)
        time.sleep(0.5)
    base = statistics.median(t for t, _ in seen["plain"])
    for m in modes:
        train = statistics.median(t for t, _ in seen[m])
        whole = statistics.median(w for _, w in seen[m])
        print(f"{m:8s} median training {train:.3f} s ({100 * (train / base - 1):+.1f}%), "
              f"whole {whole:.3f} s")


if __name__ == "__main__":
    sys.exit(main())
