#!/usr/bin/env python3
"""The notebook's math in numpy (float64), as an independent reference for
scratchnet's training loop: 20 full-batch iterations of the seed preset
without dropout, from fixed weights, on the bundled MNIST.

Writes tests/fixtures/golden_seed.json: J at every iteration (before the
update, as the notebook prints it), the train/validation/test accuracies
after it, and each weight matrix's mean square at the end.

    pip install numpy
    python3 scripts/golden_trajectory.py

Written from ../shared/SPEC.md and the notebook's own functions (samples as
columns, X is 784 x m), sharing no code with scratchnet. The starting
weights are a formula both sides compute (tests/golden.rs has the same):
for weight matrix k (W11, W12, W2, W3) and its element i in row-major order,
u = ((i * 2654435761 + (k + 1) * 40503) mod 2^32) / 2^32 and
w = (2u - 1) * sqrt(3) * sqrt(gain / fan_in), rounded to float32, with the
notebook's gains (2, 2, 1, 2); biases are zero.
"""

import gzip
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "data", "mnist")
OUT = os.path.join(ROOT, "tests", "fixtures", "golden_seed.json")



def f32(v):
    """A hyper-parameter as scratchnet's configuration holds it (float32):
    0.999 is 0.99900001287 there, which alone moves every Adam step by
    6e-6 against the float64 value, far more than the arithmetic differs."""
    return float(np.float32(v))


ITERS = 20
LR, BETA1, BETA2, EPS = f32(0.001), f32(0.9), f32(0.999), f32(1e-7)
L2 = [f32(v) for v in (1.19, 1.05, 1.07, 2.22)]  # W11, W12, W2, W3
REG_EVERY = 1000
SHAPES = [(128, 784), (64, 784), (48, 192), (10, 48)]
GAINS = [2.0, 2.0, 1.0, 2.0]


def idx(name):
    with gzip.open(os.path.join(DATA, name)) as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * d : 8 + 4 * d], "big") for d in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def split(images, labels):
    """Samples as columns (784 x m), pixels byte / 256, labels one-hot (10 x m)."""
    x = images.reshape(len(images), -1).T.astype(np.float64) / 256.0
    y = np.zeros((10, len(labels)))
    y[labels, np.arange(len(labels))] = 1.0
    return x, y, labels.astype(np.int64)


def fixed_weights():
    ws = []
    for k, ((rows, cols), gain) in enumerate(zip(SHAPES, GAINS)):
        i = np.arange(rows * cols, dtype=np.uint64)
        h = (i * np.uint64(2654435761) + np.uint64((k + 1) * 40503)) % np.uint64(2**32)
        u = h.astype(np.float64) / 2.0**32
        w = (2.0 * u - 1.0) * np.sqrt(3.0) * np.sqrt(gain / cols)
        ws.append(w.astype(np.float32).astype(np.float64).reshape(rows, cols))
    return ws


def relu(z):
    return np.maximum(0.0, z)


def softmax(z):
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def forward(x, p):
    w11, b11, w12, b12, w2, b2, w3, b3 = p
    z11 = w11 @ x + b11
    z12 = w12 @ x + b12
    a11, a12 = relu(z11), np.tanh(z12)
    a1 = np.concatenate((a11, a12))
    z2 = w2 @ a1 + b2
    a2 = relu(z2)
    z3 = w3 @ a2 + b3
    return softmax(z3), (a11, a12, a1, z11, z12, z2, a2)


def loss(a3, y, p, l2):
    w11, _, w12, _, w2, _, w3, _ = p
    ce = -np.sum(y * np.log(a3 + 1e-7)) / y.shape[1]
    reg = (l2[3] * np.mean(w3**2) + l2[2] * np.mean(w2**2)
           + l2[1] * np.mean(w12**2) + l2[0] * np.mean(w11**2)) / 2
    return ce + reg


def backward(x, y, p, a3, cache, l2):
    w11, _, w12, _, w2, _, w3, _ = p
    a11, a12, a1, z11, z12, z2, a2 = cache
    m = x.shape[1]
    dz3 = a3 - y
    dw3, db3 = dz3 @ a2.T / m, dz3.sum(axis=1, keepdims=True) / m
    dz2 = (w3.T @ dz3) * (z2 > 0)
    dw2, db2 = dz2 @ a1.T / m, dz2.sum(axis=1, keepdims=True) / m
    da1 = w2.T @ dz2
    dz12 = da1[128:] * (1.0 - np.tanh(z12) ** 2)
    dz11 = da1[:128] * (z11 > 0)
    dw12, db12 = dz12 @ x.T / m, dz12.sum(axis=1, keepdims=True) / m
    dw11, db11 = dz11 @ x.T / m, dz11.sum(axis=1, keepdims=True) / m
    # The notebook's decay: l * W / m (m is the batch: the whole training set).
    dw11 += l2[0] * w11 / m
    dw12 += l2[1] * w12 / m
    dw2 += l2[2] * w2 / m
    dw3 += l2[3] * w3 / m
    return [dw11, db11, dw12, db12, dw2, db2, dw3, db3]


def accuracy(x, labels, p):
    a3, _ = forward(x, p)
    return float(np.mean(np.argmax(a3, axis=0) == labels))


def main():
    images, labels = idx("train-images-idx3-ubyte.gz"), idx("train-labels-idx1-ubyte.gz")
    xtr, ytr, ltr = split(images[:50000], labels[:50000])
    xva, _, lva = split(images[50000:], labels[50000:])
    xte, _, lte = split(idx("t10k-images-idx3-ubyte.gz"), idx("t10k-labels-idx1-ubyte.gz"))
    w11, w12, w2, w3 = fixed_weights()
    p = [w11, np.zeros((128, 1)), w12, np.zeros((64, 1)), w2, np.zeros((48, 1)), w3, np.zeros((10, 1))]
    v = [np.zeros_like(t) for t in p]
    s = [np.zeros_like(t) for t in p]
    l2 = list(L2)
    rows = []
    for i in range(ITERS):
        a3, cache = forward(xtr, p)
        j = loss(a3, ytr, p, l2)
        grads = backward(xtr, ytr, p, a3, cache, l2)
        for t, g in enumerate(grads):
            v[t] = BETA1 * v[t] + (1 - BETA1) * g
            s[t] = BETA2 * s[t] + (1 - BETA2) * g**2
            p[t] = p[t] - LR * v[t] / (np.sqrt(s[t]) + EPS)
        if i % REG_EVERY == 0:
            l2 = [f32(l * np.sqrt(i / REG_EVERY + 2) / 2) for l in l2]
        row = {"iter": i, "J": float(j), "train_acc": accuracy(xtr, ltr, p),
               "val_acc": accuracy(xva, lva, p), "test_acc": accuracy(xte, lte, p)}
        rows.append(row)
        print(row, file=sys.stderr)
    mean_sq = {name: float(np.mean(p[t] ** 2)) for name, t in
               [("W11", 0), ("W12", 2), ("W2", 4), ("W3", 6)]}
    out = {"about": "scripts/golden_trajectory.py: the seed preset, no dropout, "
                    "fixed weights, numpy float64, numpy " + np.__version__,
           "iterations": rows, "final_mean_square": mean_sq}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
