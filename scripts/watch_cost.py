#!/usr/bin/env python3
"""What watching a run costs: `scratchnet train` plain, with `--watch` and
nobody looking, with `--watch` and a client that follows the events and
fetches the pictures as a browser on another machine would, and with
`--watch` and a headless Chromium showing the page on this machine, in
alternating rounds; prints each run's training time (the `done:` line's
seconds of training steps) and whole time, their medians, and each watched
mode's overhead over the plain median.

    python3 scripts/watch_cost.py [--rounds 7] [-- TRAIN OPTIONS...]

The browser is started once, before the rounds, and opens each run's page
(through its DevTools endpoint) as the run prints it: its start-up is not
the page's cost. Needs target/release/scratchnet and, for the browser mode,
chromium.
"""

import argparse
import json
import re
import socket
import urllib.request
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "target" / "release" / "scratchnet"
DONE = re.compile(r"done: \d+ steps in ([0-9.]+) s \(([0-9.]+) s training")


class Browser:
    """A headless Chromium, told through its DevTools endpoint to open a page
    in a new tab (the tab before it closed)."""

    def __init__(self, profile):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.chromium = subprocess.Popen(
            ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}",
             f"--remote-debugging-port={self.port}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                self.call("GET", "json/version")
                break
            except OSError:
                time.sleep(0.1)
        self.tab = None

    def call(self, method, path):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/{path}", method=method)
        with urllib.request.urlopen(req, timeout=60) as r:
            body = r.read()
        # `json/close` answers in plain words.
        return json.loads(body) if body.startswith(b"{") else None

    def go(self, url):
        if self.tab:
            self.call("GET", f"json/close/{self.tab}")
            self.tab = None
        if url:
            self.tab = self.call("PUT", f"json/new?{url}")["id"]

    def close(self):
        self.chromium.terminate()
        self.chromium.wait()


def follow(url):
    """A client of the page that is not a browser: it reads the event stream
    and fetches each evaluation's pictures, as a browser elsewhere would."""
    with urllib.request.urlopen(f"{url}events", timeout=600) as events:
        kind = None
        for line in events:
            line = line.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "look":
                look = json.loads(line[6:])
                for b in range(len(look["units"])):
                    urllib.request.urlopen(f"{url}units?branch={b}&iter={look['iter']}").read()
            elif kind == "end":
                return


def one(mode, options, browser):
    """One run in `mode`: its (training, whole) seconds."""
    args = [str(BIN), "train", "-q", "--data", str(ROOT / "data" / "mnist"), *options]
    if mode != "plain":
        args.append("--watch")
    with tempfile.TemporaryDirectory() as work:
        run = subprocess.Popen(args, cwd=work, stdout=subprocess.PIPE, text=True)
        try:
            for line in run.stdout:
                url = re.search(r"http://\S+", line)
                if url and mode == "browser":
                    # Not waited for: the page loads while the run trains.
                    threading.Thread(target=browser.go, args=(url.group(0),)).start()
                if url and mode == "client":
                    threading.Thread(target=follow, args=(url.group(0),), daemon=True).start()
                done = DONE.search(line)
                if done:
                    return float(done.group(2)), float(done.group(1))
            raise SystemExit(f"no `done:` line from {' '.join(args)}")
        finally:
            run.send_signal(signal.SIGINT)
            run.wait()
            if mode == "browser":
                browser.go(None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("options", nargs="*", help="train's options (after --)")
    a = ap.parse_args()
    browse = shutil.which("chromium")
    modes = ["plain", "watched", "client", "browser"][: 4 if browse else 3]
    seen = {m: [] for m in modes}
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        browser = Browser(profile) if browse else None
        try:
            for r in range(a.rounds):
                for m in modes:
                    train, whole = one(m, a.options, browser)
                    seen[m].append((train, whole))
                    print(f"round {r + 1} {m:8s} training {train:.3f} s  whole {whole:.3f} s",
                          flush=True)
                    time.sleep(0.5)
        finally:
            if browser:
                browser.close()
    base = statistics.median(t for t, _ in seen["plain"])
    for m in modes:
        train = statistics.median(t for t, _ in seen[m])
        whole = statistics.median(w for _, w in seen[m])
        print(f"{m:8s} median training {train:.3f} s ({100 * (train / base - 1):+.1f}%), "
              f"whole {whole:.3f} s")


if __name__ == "__main__":
    sys.exit(main())
