"""The Python module against real MNIST and the command line.

Run from the repository after `cargo build --release` and installing the
wheel: `pytest python/tests`. The command line's binary is
$SCRATCHNET_BIN, else target/release/scratchnet.
"""

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scratchnet as sn

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data" / "mnist"
BIN = Path(os.environ.get("SCRATCHNET_BIN", REPO / "target" / "release" / "scratchnet"))


@pytest.fixture(scope="module")
def mnist():
    return sn.load_mnist(DATA)


def test_load_mnist_gives_the_notebook_splits(mnist):
    (xtr, ytr), (xva, yva), (xte, yte) = mnist
    assert xtr.shape == (50_000, 784) and xva.shape == (10_000, 784) and xte.shape == (10_000, 784)
    assert xtr.dtype == np.float32 and ytr.dtype == np.uint8
    assert list(ytr[:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert list(yte[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    # byte / 256, as the notebook's pickle holds them
    assert xtr.max() == np.float32(255 / 256) and xtr.min() == 0


def test_the_default_preset_reaches_98_5_percent(mnist):
    (xtr, ytr), (xva, yva), (xte, yte) = mnist
    seen = []
    model = sn.train(xtr, ytr, xva, yva, X_test=xte, y_test=yte, callback=seen.append)
    acc = model.evaluate(xte, yte)
    assert acc >= 0.985, acc
    assert acc == seen[-1]["test_acc"]
    assert [m["epoch"] for m in seen] == [3.0, 6.0, 9.0, 12.0]
    assert model.metrics == seen


@pytest.mark.parametrize("precision", ["f32", "bf16"])
def test_twenty_seed_preset_iterations_match_the_command_line(mnist, tmp_path, precision):
    if not BIN.exists():
        pytest.fail(f"{BIN} is missing: run `cargo build --release` first")
    metrics, saved = tmp_path / "m.jsonl", tmp_path / "cli.safetensors"
    subprocess.run(
        [BIN, "train", "-q", "--preset", "seed", "--iters", "20", "--threads", "2",
         "--precision", precision, "--data", DATA, "--metrics", metrics, "--save", saved,
         "--checkpoint", tmp_path / "ck.safetensors"],
        check=True, capture_output=True,
    )
    cli = [json.loads(line) for line in metrics.read_text().splitlines()]
    (xtr, ytr), (xva, yva), (xte, yte) = mnist
    model = sn.train(xtr, ytr, xva, yva, X_test=xte, y_test=yte, preset="seed", iters=20, threads=2,
                     precision=precision)
    assert len(model.metrics) == len(cli) == 2
    for ours, theirs in zip(model.metrics, cli):
        for k in ["iter", "epoch", "J", "train_acc", "val_acc", "test_acc", "lr"]:
            assert ours[k] == theirs[k], (k, ours[k], theirs[k])
    theirs = sn.load(saved).weights
    for name, w in model.weights.items():
        assert np.array_equal(w, theirs[name]), name


def test_the_same_seed_gives_the_same_weights(mnist):
    (xtr, ytr), (xva, yva), _ = mnist
    run = lambda seed: sn.train(xtr[:5000], ytr[:5000], xva, yva, iters=30, seed=seed, shift=2,
                                rotate=10, threads=2).weights
    a, b, c = run(3), run(3), run(4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["W11"], c["W11"])


def test_inputs_of_every_accepted_kind_give_the_same_predictions(mnist):
    (xtr, ytr), _, (xte, yte) = mnist
    model = sn.train(xtr[:5000], ytr[:5000], iters=50)
    want = model.predict(xte[:500])
    as_bytes = (xte[:500] * 256).astype(np.uint8)
    for x in [as_bytes, as_bytes.reshape(-1, 28, 28), xte[:500].astype(np.float64),
              np.asfortranarray(xte[:500]), np.repeat(xte[:500], 2, axis=0)[::2]]:
        assert np.array_equal(model.predict(x), want)
    assert model.predict(xte[:3]).dtype == np.int64
    p = model.predict_proba(xte[:100])
    assert p.shape == (100, 10) and np.allclose(p.sum(axis=1), 1, atol=1e-5)
    assert np.array_equal(p.argmax(axis=1), want[:100])
    labels = yte[:500].astype(np.int32)
    assert model.evaluate(xte[:500], labels) == np.mean(want == yte[:500])


def test_bad_inputs_raise_errors_naming_the_argument(mnist, tmp_path):
    (xtr, ytr), (xva, yva), _ = mnist
    x, y = xtr[:100], ytr[:100]
    cases = [
        (TypeError, "X: expected a numpy array", lambda: sn.train(x.tolist(), y)),
        (TypeError, "X: expected a numpy array of uint8, float32 or float64 images, got an array of int64",
         lambda: sn.train(x.astype(np.int64), y)),
        (ValueError, "X: 783 pixels per image is not a square", lambda: sn.train(x[:, :783], y)),
        (ValueError, "X: expected shape (N, 784) or (N, 28, 28)", lambda: sn.train(x.reshape(100, 1, 28, 28), y)),
        (ValueError, "y: 99 labels for 100 images", lambda: sn.train(x, y[:99])),
        (ValueError, "y: label 10 at position 3 is outside 0..9",
         lambda: sn.train(x, np.where(np.arange(100) == 3, 10, y))),
        (TypeError, "y: expected a numpy array of integer labels", lambda: sn.train(x, y.astype(np.float32))),
        (ValueError, "X: image 2, pixel 5 is NaN",
         lambda: sn.train(np.where(np.arange(78400).reshape(100, 784) == 2 * 784 + 5, np.nan, x), y)),
        (ValueError, "X_val and y_val go together", lambda: sn.train(x, y, xva)),
        (ValueError, "X_val: images of 196 pixels, but X has 784", lambda: sn.train(x, y, xva[:, :196], yva)),
        (TypeError, "unexpected keyword argument 'lrr'", lambda: sn.train(x, y, lrr=0.1)),
        (ValueError, "lr=-1.0: a learning rate must be a finite number > 0",
         lambda: sn.train(x, y, lr=-1.0)),
        (ValueError, "keep=[0.9, 1.5]: keep probabilities must be in (0, 1]",
         lambda: sn.train(x, y, keep=[0.9, 1.5])),
        (ValueError, "preset='nope': no such preset (presets: fast, best, seed)",
         lambda: sn.train(x, y, preset="nope")),
        (ValueError, "precision='f16'", lambda: sn.train(x, y, precision="f16")),
        (ValueError, "expected `f32` or `bf16`", lambda: sn.train(x, y, precision="f16")),
        (ValueError, "arch='relu128': branch `relu128` should be activation:width",
         lambda: sn.train(x, y, arch="relu128")),
        (ValueError, "no validation split", lambda: sn.train(x, y, keep_best=True)),
        (ValueError, "threads: must be at least 1", lambda: sn.train(x, y, threads=0)),
    ]
    for kind, message, call in cases:
        with pytest.raises(kind) as e:
            call()
        assert message in str(e.value), (message, str(e.value))
    model = sn.train(x, y, iters=1)
    with pytest.raises(ValueError, match="X: images of 196 pixels, but the model takes 784"):
        model.predict(np.zeros((3, 14, 14), np.float32))
    with pytest.raises(FileNotFoundError, match="no/such/model.safetensors"):
        sn.load("no/such/model.safetensors")
    with pytest.raises(FileNotFoundError, match="no-such-digit.png"):
        sn.read_digit("no-such-digit.png")
    with pytest.raises(ValueError, match="not a scratchnet model: it is a text file"):
        notes = Path(tmp_path) / "notes.safetensors"
        notes.write_text("W11 = 0.5\n")
        sn.load(notes)
    # No error names a command-line flag.
    for _, _, call in cases:
        try:
            call()
        except (TypeError, ValueError) as e:
            assert "--" not in str(e), str(e)


def test_the_callback_sees_each_evaluation_and_stops_on_false(mnist):
    (xtr, ytr), (xva, yva), _ = mnist
    seen = []

    def two_then_stop(m):
        seen.append(m)
        return len(seen) < 2

    model = sn.train(xtr, ytr, xva, yva, epochs=10, callback=two_then_stop)
    assert [m["epoch"] for m in seen] == [3.0, 6.0]
    assert model.metadata["scratchnet.steps"] == str(seen[-1]["iter"])
    # An exception in the callback ends training and comes through.
    with pytest.raises(ZeroDivisionError):
        sn.train(xtr, ytr, xva, yva, epochs=3, callback=lambda m: 1 / 0)


def test_ctrl_c_raises_keyboard_interrupt_with_the_model_so_far(mnist):
    (xtr, ytr), (xva, yva), (xte, yte) = mnist
    seen = []

    def interrupt_after_the_first_evaluation():
        while not seen:
            time.sleep(0.01)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    # Python's own Ctrl-C handler, as in a terminal: a process started in the
    # background by a shell without job control inherits SIGINT ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=interrupt_after_the_first_evaluation, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt) as e:
            sn.train(xtr, ytr, xva, yva, epochs=200, callback=seen.append)
    finally:
        signal.signal(signal.SIGINT, previous)
    model = e.value.model
    steps = int(model.metadata["scratchnet.steps"])
    assert seen[0]["iter"] <= steps < 200 * 391, steps
    assert model.evaluate(xte, yte) > 0.9


def test_a_saved_model_loads_in_safetensors_and_back(mnist, tmp_path):
    from safetensors.numpy import load_file

    (xtr, ytr), (xva, yva), (xte, _) = mnist
    model = sn.train(xtr[:5000], ytr[:5000], xva, yva, iters=40)
    path = tmp_path / "m.safetensors"
    model.save(path)
    tensors = load_file(path)
    assert set(tensors) == set(model.weights)
    for name, w in model.weights.items():
        assert tensors[name].shape == w.shape and np.array_equal(tensors[name], w)
    assert tensors["W11"].shape == (128, 784) and tensors["b3"].shape == (10, 1)
    back = sn.load(path)
    assert np.array_equal(back.predict(xte), model.predict(xte))
    assert back.config == model.config and back.config["iters"] == 40
    assert json.loads(back.metadata["scratchnet.metrics"]) == model.metrics[-1]
    val = f"{100 * model.metrics[-1]['val_acc']:.2f}%"
    assert repr(back) == (f"<scratchnet.Model 784 -> [relu 128 | tanh 64] -> relu 48 -> softmax 10 "
                          f"(160474 parameters), val {val}>")
