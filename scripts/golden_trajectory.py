#!/usr/bin/env python3
"""The notebook's math in numpy (float64), as an independent reference for
scratchnet's training loop, on the bundled MNIST, from fixed weights:

- seed: 20 full-batch iterations of the seed preset without dropout (the
  notebook's Adam without bias correction, its L2 factors and schedule);
- minibatch: 30 steps of the default preset's optimiser (Adam with bias
  correction, beta2 0.99, a cosine schedule over the 30 steps, the L2
  gradient l * W / N with N the training-set size), batches of 128 whose
  samples and one-pixel shifts are drawn here and written into the fixture;
- dropout: the same steps with per-sample dropout masks, drawn here too.

Each run writes tests/fixtures/golden_<run>.safetensors: the inputs that
both sides read (the batches, shifts and masks), J at every step, the
accuracies, and every parameter tensor at the end.

    pip install numpy safetensors
    python3 scripts/golden_trajectory.py           # write the fixtures
    python3 scripts/golden_trajectory.py --check   # regenerate and compare

Written from ../shared/SPEC.md and the optimisers' definitions (samples as
columns, X is 784 x m), sharing no code with scratchnet. The starting
weights are a formula both sides compute (tests/it/golden.rs has the same):
for weight matrix k (W11, W12, W2, W3) and its element i in row-major order,
u = ((i * 2654435761 + (k + 1) * 40503) mod 2^32) / 2^32 and
w = (2u - 1) * sqrt(3) * sqrt(gain / fan_in), rounded to float32, with the
notebook's gains (2, 2, 1, 2); biases are zero.
"""

import argparse
import gzip
import os
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "data", "mnist")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")


def f32(v):
    """A hyper-parameter as scratchnet's configuration holds it (float32):
    0.999 is 0.99900001287 there, which alone moves every Adam step by
    6e-6 against the float64 value, far more than the arithmetic differs."""
    return float(np.float32(v))


SHAPES = [(128, 784), (64, 784), (48, 192), (10, 48)]
GAINS = [2.0, 2.0, 1.0, 2.0]
NAMES = ["W11", "b11", "W12", "b12", "W2", "b2", "W3", "b3"]
L2 = [f32(v) for v in (1.19, 1.05, 1.07, 2.22)]  # W11, W12, W2, W3
TRAIN = 50000

# The seed preset: the notebook's Adam (no bias correction) and L2 schedule.
SEED_ITERS = 20
SEED_LR, SEED_BETA2, SEED_EPS = f32(0.001), f32(0.999), f32(1e-7)
REG_EVERY = 1000

# The default preset's optimiser over a short run.
MINI_STEPS, MINI_BATCH, MINI_SHIFT = 30, 128, 1
MINI_LR, MINI_BETA2, MINI_EPS = f32(0.003), f32(0.99), f32(1e-8)
BETA1 = f32(0.9)
# Keep probabilities of A11, A12 and A2 in the dropout run.
KEEPS = [f32(0.9), f32(0.8), f32(0.85)]
UNITS = [128, 64, 48]


def idx(name):
    with gzip.open(os.path.join(DATA, name)) as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * d : 8 + 4 * d], "big") for d in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def columns(images):
    """Samples as columns (784 x m), pixels byte / 256."""
    return images.reshape(len(images), -1).T.astype(np.float64) / 256.0


def one_hot(labels):
    y = np.zeros((10, len(labels)))
    y[labels, np.arange(len(labels))] = 1.0
    return y


def fixed_weights():
    ws = []
    for k, ((rows, cols), gain) in enumerate(zip(SHAPES, GAINS)):
        i = np.arange(rows * cols, dtype=np.uint64)
        h = (i * np.uint64(2654435761) + np.uint64((k + 1) * 40503)) % np.uint64(2**32)
        u = h.astype(np.float64) / 2.0**32
        w = (2.0 * u - 1.0) * np.sqrt(3.0) * np.sqrt(gain / cols)
        ws.append(w.astype(np.float32).astype(np.float64).reshape(rows, cols))
    w11, w12, w2, w3 = ws
    return [w11, np.zeros((128, 1)), w12, np.zeros((64, 1)),
            w2, np.zeros((48, 1)), w3, np.zeros((10, 1))]


def relu(z):
    return np.maximum(0.0, z)


def softmax(z):
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def forward(x, p, scales=None):
    """A3 and what the backward pass needs; `scales` (mask / keep for A11,
    A12 and A2, units x m) applies inverted dropout."""
    w11, b11, w12, b12, w2, b2, w3, b3 = p
    s11, s12, s2 = scales if scales is not None else (1.0, 1.0, 1.0)
    z11 = w11 @ x + b11
    z12 = w12 @ x + b12
    a11, a12 = relu(z11) * s11, np.tanh(z12) * s12
    a1 = np.concatenate((a11, a12))
    z2 = w2 @ a1 + b2
    a2 = relu(z2) * s2
    z3 = w3 @ a2 + b3
    return softmax(z3), (a1, z11, z12, z2, a2, (s11, s12, s2))


def cross_entropy(a3, y):
    return -np.sum(y * np.log(a3 + 1e-7)) / y.shape[1]


def penalty(p, l2):
    """The L2 term of J: sum of l * mean(W^2) / 2 (SPEC.md, "Loss")."""
    w11, _, w12, _, w2, _, w3, _ = p
    return (l2[3] * np.mean(w3**2) + l2[2] * np.mean(w2**2)
            + l2[1] * np.mean(w12**2) + l2[0] * np.mean(w11**2)) / 2


def backward(x, y, p, a3, cache, l2, n):
    """Every parameter's gradient; the L2 term is l * W / n (SPEC.md,
    "Backward"): n is the batch in the notebook's full-batch runs, the
    training-set size in minibatch runs."""
    _, _, _, _, w2, _, w3, _ = p
    a1, z11, z12, z2, a2, (s11, s12, s2) = cache
    m = x.shape[1]
    dz3 = a3 - y
    dw3, db3 = dz3 @ a2.T / m, dz3.sum(axis=1, keepdims=True) / m
    dz2 = (w3.T @ dz3) * (z2 > 0) * s2
    dw2, db2 = dz2 @ a1.T / m, dz2.sum(axis=1, keepdims=True) / m
    da1 = w2.T @ dz2
    dz12 = da1[128:] * (1.0 - np.tanh(z12) ** 2) * s12
    dz11 = da1[:128] * (z11 > 0) * s11
    dw12, db12 = dz12 @ x.T / m, dz12.sum(axis=1, keepdims=True) / m
    dw11, db11 = dz11 @ x.T / m, dz11.sum(axis=1, keepdims=True) / m
    grads = [dw11, db11, dw12, db12, dw2, db2, dw3, db3]
    for t, l in zip((0, 2, 4, 6), l2):
        grads[t] = grads[t] + l * p[t] / n
    return grads


class Adam:
    """v = b1 v + (1 - b1) g; s = b2 s + (1 - b2) g^2; with bias correction
    (Kingma and Ba) v and s are divided by 1 - b^t first, t counting from 1;
    p -= lr v / (sqrt(s) + eps)."""

    def __init__(self, p, beta2, eps, corrected):
        self.v = [np.zeros_like(t) for t in p]
        self.s = [np.zeros_like(t) for t in p]
        self.beta2, self.eps, self.corrected, self.t = beta2, eps, corrected, 0

    def step(self, p, grads, lr):
        self.t += 1
        b1, b2 = BETA1, self.beta2
        c1, c2 = (1 - b1**self.t, 1 - b2**self.t) if self.corrected else (1.0, 1.0)
        for k, g in enumerate(grads):
            self.v[k] = b1 * self.v[k] + (1 - b1) * g
            self.s[k] = b2 * self.s[k] + (1 - b2) * g**2
            p[k] = p[k] - lr * (self.v[k] / c1) / (np.sqrt(self.s[k] / c2) + self.eps)


def cosine(base, t, total):
    """Half a cosine from `base` at step 0 down to 0 at the last step."""
    return base * 0.5 * (1 + np.cos(np.pi * t / (total - 1)))


def accuracy(x, labels, p):
    a3, _ = forward(x, p)
    return float(np.mean(np.argmax(a3, axis=0) == labels))


def load():
    images, labels = idx("train-images-idx3-ubyte.gz"), idx("train-labels-idx1-ubyte.gz")
    test_images, test_labels = idx("t10k-images-idx3-ubyte.gz"), idx("t10k-labels-idx1-ubyte.gz")
    return {
        "train": (images[:TRAIN], labels[:TRAIN].astype(np.int64)),
        "val": (images[TRAIN:], labels[TRAIN:].astype(np.int64)),
        "test": (test_images, test_labels.astype(np.int64)),
    }


def accuracies(data, p):
    return {f"{name}_acc": accuracy(columns(images), labels, p)
            for name, (images, labels) in data.items()}


def params_out(p):
    return {name: t.astype(np.float32) for name, t in zip(NAMES, p)}


def seed_run(data):
    """20 full-batch iterations; J before each update (as the notebook
    prints it), the accuracies after it."""
    images, labels = data["train"]
    x, y = columns(images), one_hot(labels)
    p = fixed_weights()
    opt = Adam(p, SEED_BETA2, SEED_EPS, corrected=False)
    l2 = list(L2)
    out = {"J": [], "train_acc": [], "val_acc": [], "test_acc": []}
    for i in range(SEED_ITERS):
        a3, cache = forward(x, p)
        out["J"].append(cross_entropy(a3, y) + penalty(p, l2))
        opt.step(p, backward(x, y, p, a3, cache, l2, x.shape[1]), SEED_LR)
        if i % REG_EVERY == 0:
            l2 = [f32(l * np.sqrt(i / REG_EVERY + 2) / 2) for l in l2]
        for k, v in accuracies(data, p).items():
            out[k].append(v)
        print(f"seed {i}: J {out['J'][-1]:.6f}", file=sys.stderr)
    tensors = {k: np.array(v) for k, v in out.items()}
    tensors.update(params_out(p))
    return tensors


def shifted(image, dx, dy):
    """`image` (28 x 28) moved dx pixels right and dy down, zero-filled."""
    out = np.zeros_like(image)
    h, w = image.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        image[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def plan():
    """Each step's samples (an epoch's permutation, cut into batches), each
    sample's shift (dx, dy), and per-sample keep masks (0 or 1) for the
    240 hidden units (A11, A12, A2), packed 8 to a byte, low bit first."""
    rng = np.random.default_rng(20261206)
    ids = rng.permutation(TRAIN)[:MINI_STEPS * MINI_BATCH].reshape(MINI_STEPS, MINI_BATCH)
    shifts = rng.integers(-MINI_SHIFT, MINI_SHIFT + 1, size=(MINI_STEPS, MINI_BATCH, 2))
    keeps = np.repeat(KEEPS, UNITS)
    kept = rng.random((MINI_STEPS, MINI_BATCH, sum(UNITS))) < keeps
    masks = np.packbits(kept, axis=-1, bitorder="little")
    return ids.astype(np.uint32), shifts.astype(np.int8), masks


def minibatch_run(data, ids, shifts, masks=None):
    """The default preset's optimiser on the planned batches: J (the batch's
    cross-entropy plus the L2 term, before the update) at every step, and
    the cross-entropy alone."""
    images, labels = data["train"]
    p = fixed_weights()
    opt = Adam(p, MINI_BETA2, MINI_EPS, corrected=True)
    out = {"J": [], "loss": []}
    for t in range(MINI_STEPS):
        batch = np.stack([shifted(images[i].reshape(28, 28), dx, dy)
                          for i, (dx, dy) in zip(ids[t], shifts[t])])
        x, y = columns(batch), one_hot(labels[ids[t]])
        scales = None
        if masks is not None:
            kept = np.unpackbits(masks[t], axis=-1, count=sum(UNITS), bitorder="little")
            s = kept.T.astype(np.float64) / np.repeat(KEEPS, UNITS)[:, None]
            scales = (s[:128], s[128:192], s[192:])
        a3, cache = forward(x, p, scales)
        ce = cross_entropy(a3, y)
        out["loss"].append(ce)
        out["J"].append(ce + penalty(p, L2))
        grads = backward(x, y, p, a3, cache, L2, TRAIN)
        opt.step(p, grads, f32(cosine(MINI_LR, t, MINI_STEPS)))
        print(f"minibatch{'' if masks is None else ' dropout'} {t}: J {out['J'][-1]:.6f}",
              file=sys.stderr)
    tensors = {k: np.array(v) for k, v in out.items()}
    tensors.update({f"final_{k}": np.array([v]) for k, v in accuracies(data, p).items()})
    tensors.update(params_out(p))
    tensors.update({"ids": ids, "shifts": shifts})
    if masks is not None:
        tensors["masks"] = masks
        tensors["keeps"] = np.array(KEEPS, dtype=np.float32)
    return tensors


def runs():
    data = load()
    ids, shifts, masks = plan()
    about = f"scripts/golden_trajectory.py, numpy {np.__version__}, float64"
    yield "seed", seed_run(data), about + ": 20 iterations of the seed preset without dropout"
    yield "minibatch", minibatch_run(data, ids, shifts), \
        about + ": 30 steps of the default preset's optimiser on planned batches and shifts"
    yield "dropout", minibatch_run(data, ids, shifts, masks), \
        about + ": the minibatch run with planned per-sample dropout masks"


def check(name, fresh):
    """The committed fixture against one made now: inputs and accuracies
    exactly, float64 values to 1e-12 relative and float32 tensors to one
    unit in the last place (a BLAS that sums in another order may move the
    last bits, nothing more)."""
    path = os.path.join(FIXTURES, f"golden_{name}.safetensors")
    committed = load_file(path)
    if sorted(committed) != sorted(fresh):
        return [f"{path}: tensors {sorted(committed)} != {sorted(fresh)}"]
    problems = []
    for k, a in fresh.items():
        b = committed[k]
        if a.shape != b.shape or a.dtype != b.dtype:
            problems.append(f"{name} {k}: {b.dtype}{b.shape} committed, {a.dtype}{a.shape} now")
        elif a.dtype == np.float64 and not k.endswith("_acc"):
            worst = np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))
            if worst > 1e-12:
                problems.append(f"{name} {k}: differs by {worst:.1e} relative")
        elif a.dtype == np.float32:
            ulps = np.max(np.abs(a.view(np.int32).astype(np.int64) - b.view(np.int32)))
            if ulps > 1:
                problems.append(f"{name} {k}: differs by {ulps} units in the last place")
        elif not np.array_equal(a, b):
            problems.append(f"{name} {k}: differs")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="regenerate and compare with the committed fixtures")
    args = ap.parse_args()
    problems = []
    for name, tensors, about in runs():
        if args.check:
            problems += check(name, tensors)
            continue
        os.makedirs(FIXTURES, exist_ok=True)
        path = os.path.join(FIXTURES, f"golden_{name}.safetensors")
        # Written beside, then renamed: a fixture is never half-written.
        with tempfile.NamedTemporaryFile(dir=FIXTURES, delete=False) as tmp:
            pass
        save_file(tensors, tmp.name, metadata={"about": about})
        os.replace(tmp.name, path)
        print(f"wrote {path}", file=sys.stderr)
    if args.check:
        for p in problems:
            print(p, file=sys.stderr)
        print("golden fixtures: " + ("DIFFER from the script's output" if problems
              else "the committed files are what the script computes"), file=sys.stderr)
        sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
