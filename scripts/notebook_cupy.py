#!/usr/bin/env python3
"""Times the notebook's own training code (cupy) for a fixed number of
iterations, to compare scratchnet's CUDA backend with it.

usage: notebook_cupy.py NOTEBOOK.txt mnist.pkl.gz ITERS

Runs the notebook's cells up to and including `train_model` (data loading
with the path replaced, the helper functions), then calls
`train_model(X_train, Y_train, iter=ITERS, ...)` with the hyper-parameters of
the notebook's final run, after a 2-iteration warm-up (kernel compilation).
Prints one JSON line: iterations, seconds, seconds per iteration.
"""
import json
import re
import sys
import time


def code_cells(path):
    """The code of each `In [..]:` cell (up to the next `**` heading)."""
    cells, cur = [], None
    for line in open(path, encoding="utf-8").read().splitlines():
        if re.match(r"^In \[\d*\]:", line):
            cur = []
            cells.append(cur)
        elif line.startswith("**"):
            cur = None
        elif cur is not None:
            cur.append(line)
    return ["\n".join(c) for c in cells]


def main():
    notebook, data, iters = sys.argv[1], sys.argv[2], int(sys.argv[3])
    env = {}
    for cell in code_cells(notebook):
        cell = cell.replace("import matplotlib.pyplot as plt", "")
        cell = re.sub(r"gzip\.open\('[^']*'", f"gzip.open({data!r}", cell)
        exec(cell, env)
        if "def train_model" in cell:
            break
    run = lambda n: env["train_model"](
        env["X_train"], env["Y_train"], iter=n,
        keep_prob_11=0.8, keep_prob_12=0.8, keep_prob_2=0.8,
        reg_fact_3=2.22, reg_fact_2=1.07, reg_fact_12=1.05, reg_fact_11=1.19)
    run(2)
    env["np"].cuda.Stream.null.synchronize()
    t = time.time()
    run(iters)
    env["np"].cuda.Stream.null.synchronize()
    s = time.time() - t
    print(json.dumps({"iters": iters, "seconds": s, "s_per_iter": s / iters}))


if __name__ == "__main__":
    main()
