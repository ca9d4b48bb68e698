#!/usr/bin/env python3
"""The workloads of `scratchnet bench`, in PyTorch: the reference scratchnet's speed
is compared against (the notebook's network, 784 -> [ReLU 128 | tanh 64] -> ReLU 48 -> softmax 10,
f32, on the same bundled MNIST).

    python3 scripts/torch_reference.py [--runs 7] [--threads 2] [--precision f32|bf16]
                                       [--data data/mnist] [--json]

Needs torch and numpy (not installed by the project: `pip install torch numpy`). Each
workload is timed as `scratchnet bench` times it (one warm-up, then the median of --runs):
- a full-batch iteration on 50,000 images: forward, cross-entropy plus the notebook's
  L2 term, backward and an Adam step, dropout (keep 0.9) with one mask per unit as the
  seed preset draws it;
- a minibatch epoch over 60,000 images, batch 128, shuffled, Adam, dropout per sample
  (keep 0.9); unlike scratchnet's, no random shifts (less work for PyTorch);
- inference on the 10,000 test images (argmax of the logits).
`--precision bf16` runs the forward passes and the loss under
`torch.autocast("cpu", torch.bfloat16)`, as `scratchnet bench --precision bf16` compares.
"""
import argparse
import contextlib
import gzip
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def idx(path):
    """An IDX file's array (uint8 data)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


class Net(nn.Module):
    """Stage 1 is one 784 x 192 product whose columns are the two branches."""

    def __init__(self, keep):
        super().__init__()
        self.l1 = nn.Linear(784, 192)
        self.l2 = nn.Linear(192, 48)
        self.l3 = nn.Linear(48, 10)
        self.keep = keep
        self.per_unit = False

    def drop(self, a):
        if not self.training or self.keep >= 1.0:
            return a
        rows = 1 if self.per_unit else a.shape[0]
        mask = torch.bernoulli(torch.full((rows, a.shape[1]), self.keep)) / self.keep
        return a * mask

    def forward(self, x):
        z = self.l1(x)
        a = torch.cat([torch.relu(z[:, :128]), torch.tanh(z[:, 128:])], dim=1)
        a = self.drop(a)
        a = self.drop(torch.relu(self.l2(a)))
        return self.l3(a)


def timed(runs, f):
    f()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/mnist")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    def cast():
        if args.precision == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    torch.set_num_threads(args.threads)
    # Subnormals flushed to zero, as scratchnet does: without it PyTorch slowed down
    # several-fold as training went on (inference 0.44 -> 0.13 M images/s after 8 epochs).
    torch.set_flush_denormal(True)
    torch.manual_seed(1)
    d = Path(args.data)
    x = torch.from_numpy(idx(d / "train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255)
    y = torch.from_numpy(idx(d / "train-labels-idx1-ubyte.gz").astype(np.int64))
    xt = torch.from_numpy(idx(d / "t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255)

    net = Net(keep=0.9)
    weights = [net.l1.weight, net.l2.weight, net.l3.weight]
    l2 = [1.1, 1.07, 2.22]  # the seed preset's factors (stage 1's two averaged)

    def step(opt, xb, yb, n):
        opt.zero_grad(set_to_none=True)
        with cast():
            loss = nn.functional.cross_entropy(net(xb), yb)
            loss = loss + sum(k * (w * w).sum() for k, w in zip(l2, weights)) / (2 * n)
        loss.backward()
        opt.step()

    rows = []

    # Full batch: the seed preset's iteration on 50,000 samples, one mask per unit.
    net.train()
    net.per_unit = True
    opt = torch.optim.Adam(net.parameters(), lr=0.001, eps=1e-7)
    xf, yf = x[:50_000], y[:50_000]
    rows.append(("full-batch iteration, 50k samples", "ms", 1e3,
                 timed(args.runs, lambda: step(opt, xf, yf, 50_000))))

    # Minibatch epoch: 60,000 samples, batch 128, shuffled, dropout per sample.
    net.per_unit = False
    opt = torch.optim.Adam(net.parameters(), lr=0.002)

    def epoch():
        perm = torch.randperm(x.shape[0])
        for i in range(0, x.shape[0], 128):
            ids = perm[i : i + 128]
            step(opt, x[ids], y[ids], x.shape[0])

    rows.append(("minibatch epoch, 60k samples, batch 128, Adam", "s", 1.0, timed(args.runs, epoch)))

    # Inference on the test set.
    net.eval()

    def infer():
        with torch.inference_mode(), cast():
            net(xt).argmax(dim=1)

    t = timed(args.runs, infer)
    rate = [xt.shape[0] / s / 1e6 for s in t]
    rows.append(("inference, 10k test images", "M images/s", None, rate))

    if args.json:
        print(json.dumps({"torch": torch.__version__, "threads": args.threads, "runs": args.runs,
                          "precision": args.precision,
                          "rows": [{"workload": w, "unit": u, "median": statistics.median(
                              [v * s if s else v for v in vals])} for w, u, s, vals in rows]}))
        return
    print(f"PyTorch {torch.__version__} reference: {args.threads} threads, precision {args.precision}, "
          f"median of {args.runs} runs (after one warm-up)\n")
    print("| workload | median | min | max |")
    print("|---|---|---|---|")
    for w, unit, scale, vals in rows:
        vals = [v * scale if scale else v for v in vals]
        print(f"| {w} | {statistics.median(vals):.3f} {unit} | {min(vals):.3f} | {max(vals):.3f} |")


if __name__ == "__main__":
    main()
