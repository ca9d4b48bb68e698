#!/usr/bin/env python3
"""Training through the Python module against the command line, alternating:
the default preset on the bundled MNIST, 2 threads, ROUNDS rounds of each.

    python3 scripts/python_speed.py [ROUNDS]      # from the repository root

Needs the module installed (`pip install ./python`) and `cargo build --release`.
Prints, per round and as medians: the training loop's time as each reports it
(`elapsed_s` of the last evaluation), and the whole `sn.train` call (the loop
plus copying the arrays in once and setting up the trainer).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import scratchnet as sn

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 9
(xtr, ytr), (xva, yva), (xte, yte) = sn.load_mnist("data/mnist")
cli, py, call = [], [], []
with tempfile.TemporaryDirectory() as tmp:
    metrics = os.path.join(tmp, "m.jsonl")
    for _ in range(rounds):
        subprocess.run(
            ["target/release/scratchnet", "train", "-q", "--threads", "2",
             "--data", "data/mnist", "--metrics", metrics,
             "--checkpoint", os.path.join(tmp, "ck.safetensors")],
            check=True, capture_output=True)
        with open(metrics) as f:
            cli.append(json.loads(f.readlines()[-1])["elapsed_s"])
        os.remove(metrics)
        t = time.perf_counter()
        model = sn.train(xtr, ytr, xva, yva, X_test=xte, y_test=yte, threads=2)
        call.append(time.perf_counter() - t)
        py.append(model.metrics[-1]["elapsed_s"])
for name, xs in [("command line, loop", cli), ("Python, loop", py), ("Python, sn.train call", call)]:
    print(f"{name:22} median {statistics.median(xs):.3f} s   "
          + " ".join(f"{x:.2f}" for x in xs))
