"""The module where notebook users meet it: progress bars, pictures, reprs,
photos of digits and ONNX, in a real Jupyter kernel and in plain Python.

Needs the `notebook` extra's packages (matplotlib, tqdm, ipykernel,
ipywidgets, onnxruntime) and nbclient.
"""

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scratchnet as sn
from scratchnet import plots
from skips import need

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data" / "mnist"
PHOTO = REPO / "examples" / "photo-of-a-3.jpg"

# A short run in a child process, for what depends on where stderr goes.
SHORT_RUN = textwrap.dedent(f"""
    import sys
    import scratchnet as sn
    (x, y), (xv, yv), _ = sn.load_mnist({str(DATA)!r})
    progress = {{"default": None, "on": True, "off": False}}[sys.argv[1]]
    sn.train(x[:2000], y[:2000], xv[:500], yv[:500], iters=30, eval_every=10, progress=progress)
    print("trained")
""")


@pytest.fixture(scope="module")
def mnist():
    return sn.load_mnist(DATA)


@pytest.fixture(scope="module")
def trained(mnist):
    """Two epochs of the default preset, with test accuracy at each evaluation."""
    (xtr, ytr), (xva, yva), (xte, yte) = mnist
    return sn.train(xtr, ytr, xva, yva, X_test=xte, y_test=yte, epochs=2, eval_every=1,
                    threads=2, progress=False)


def run_piped(mode):
    done = subprocess.run([sys.executable, "-c", SHORT_RUN, mode], capture_output=True,
                          text=True, timeout=300, check=True)
    assert done.stdout.strip() == "trained"
    return done.stderr


def test_no_bar_when_stderr_is_piped_unless_asked():
    assert run_piped("default") == ""
    assert run_piped("off") == ""
    asked = run_piped("on")
    # tqdm's text bar: the description, the end, and the last evaluation's numbers.
    assert "training: 100%" in asked and "30/30" in asked, asked
    assert "loss=" in asked and "J=" in asked and "val=" in asked, asked


def test_a_bar_on_a_terminal_by_default():
    parent, child = pty.openpty()
    # A terminal of 120 columns (a new pty has none, and tqdm would fit its bar into 0).
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    with subprocess.Popen([sys.executable, "-c", SHORT_RUN, "default"], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=child) as proc:
        os.close(child)
        seen = b""
        while True:
            try:
                chunk = os.read(parent, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        assert proc.wait(timeout=300) == 0
    os.close(parent)
    text = seen.decode(errors="replace")
    assert "training: 100%" in text and "30/30" in text, text


def test_a_progress_callable_sees_every_step_counted(mnist):
    (xtr, ytr), (xva, yva), _ = mnist
    calls = []
    sn.train(xtr[:2000], ytr[:2000], xva[:500], yva[:500], iters=25,
             progress=lambda done, total, loss: calls.append((done, total, loss)))
    assert calls, "progress was never called"
    assert calls[-1][:2] == (25, 25), calls[-1]
    assert all(total == 25 for _, total, _ in calls)
    assert [done for done, _, _ in calls] == sorted(done for done, _, _ in calls)
    assert all(np.isfinite(loss) and loss > 0 for _, _, loss in calls)


def test_in_a_jupyter_kernel_the_bar_is_a_widget_and_pictures_are_images():
    nbformat = need("nbformat", "test")
    nbclient = need("nbclient", "test")
    cells = [
        f"import scratchnet as sn\n(x, y), (xv, yv), _ = sn.load_mnist({str(DATA)!r})",
        "model = sn.train(x[:2000], y[:2000], xv[:500], yv[:500], iters=30, eval_every=10)",
        "model",
        "model.plot_curves()",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    trained, shown, curves = (c.outputs for c in nb.cells[1:])
    widgets = [o for o in trained if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets, f"no progress widget among {trained}"
    # The bar's end as text too, for a notebook read as a file.
    text = "".join(o["text"] for o in trained if o.get("name") == "stderr")
    assert text.startswith("training: 100%") and "30/30" in text and "val=" in text, trained
    html = shown[0]["data"]["text/html"]
    assert "<table>" in html and "784 -&gt; [relu 128 | tanh 64]" in html, html
    assert "160474" in html and "validation" in html, html
    assert any("image/png" in o.get("data", {}) for o in curves), curves


def test_repr_names_the_architecture_parameters_and_accuracy(trained, tmp_path):
    last = trained.metrics[-1]
    text = repr(trained)
    assert text.startswith("<scratchnet.Model 784 -> [relu 128 | tanh 64] -> relu 48 -> "
                           "softmax 10 (160474 parameters)"), text
    assert f"val {100 * last['val_acc']:.2f}%" in text and f"test {100 * last['test_acc']:.2f}%" in text
    html = trained._repr_html_()
    assert "configuration" in html and "epochs = 2" in html, html
    # A loaded model shows the accuracies it was saved with.
    path = tmp_path / "m.safetensors"
    trained.save(path)
    assert repr(sn.load(path)) == text


def test_curves_draw_every_evaluation(trained):
    fig = trained.plot_curves()
    loss, acc = fig.axes
    assert (loss.get_title(), acc.get_title()) == ("Loss", "Accuracy")
    iters = [m["iter"] for m in trained.metrics]
    assert list(loss.lines[0].get_xdata()) == iters
    assert [line.get_label() for line in acc.lines] == ["train", "validation", "test"]
    test_line = acc.lines[2].get_ydata()
    assert np.allclose(test_line, [100 * m["test_acc"] for m in trained.metrics])
    # The accuracy axis spans where the curves are after the first tenth
    # of the run, not 0-100%.
    late = [100 * m[k] for m in trained.metrics if m["iter"] >= iters[-1] / 10
            for k in ("train_acc", "val_acc", "test_acc")]
    lo, hi = acc.get_ylim()
    assert lo <= min(late) and max(late) <= hi and hi - lo < 10, (lo, hi, late)
    # The default preset has no L2 schedule: no dotted lines.
    assert not [line for line in loss.lines if line.get_linestyle() == ":"]


def test_the_l2_schedule_is_marked_where_it_rescales(mnist):
    (xtr, ytr), (xva, yva), _ = mnist
    model = sn.train(xtr[:2000], ytr[:2000], xva[:500], yva[:500], preset="seed", iters=45,
                     reg_every=10, eval_every=5, threads=2, progress=False)
    loss, _ = model.plot_curves().axes
    marks = [line.get_xdata()[0] for line in loss.lines if line.get_linestyle() == ":"]
    assert marks == [10, 20, 30, 40], marks
    assert "L2 factors rescaled (every 10 iterations)" in [t.get_text()
                                                           for t in loss.get_legend().texts]


def test_a_loaded_model_has_no_curves_to_draw(trained, tmp_path):
    path = tmp_path / "m.safetensors"
    trained.save(path)
    with pytest.raises(ValueError, match="no curves"):
        sn.load(path).plot_curves()


def test_the_confusion_matrix_counts_each_pair(trained, mnist):
    assert plots.confusion_matrix([0, 1, 1, 9, 9, 9], [0, 1, 7, 9, 9, 4]).tolist() == [
        [1] + [0] * 9,
        [0, 1, 0, 0, 0, 0, 0, 1, 0, 0],
        *[[0] * 10] * 7,
        [0, 0, 0, 0, 1, 0, 0, 0, 0, 2],
    ]
    with pytest.raises(ValueError, match="one prediction per label"):
        plots.confusion_matrix([1, 2], [1])
    _, _, (xte, yte) = mnist
    fig = trained.plot_confusion(xte, yte)
    (ax, _colorbar) = fig.axes
    accuracy = trained.evaluate(xte, yte)
    assert ax.get_title() == f"Confusion matrix: 10000 images, {100 * accuracy:.2f}% right"
    counts = plots.confusion_matrix(yte, trained.predict(xte))
    assert counts.sum() == 10_000 and counts.trace() == round(accuracy * 10_000)


def test_digits_are_drawn_with_their_labels_and_wrong_ones_in_red(mnist):
    _, _, (xte, yte) = mnist
    predictions = yte[:12].copy()
    predictions[3] = (predictions[3] + 1) % 10
    fig = sn.show_digits(xte[:12], yte[:12], predictions, columns=5)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 15 and len(shown) == 12
    assert shown[0].get_title() == f"{yte[0]} →{yte[0]}"
    red = [i for i, ax in enumerate(shown) if ax.title.get_color() == "red"]
    assert red == [3]
    with pytest.raises(ValueError, match="784 pixels"):
        sn.show_digits(np.zeros((3, 100)))


def test_without_matplotlib_the_error_says_what_to_install(trained, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "\./python\[plot\]"'):
        trained.plot_curves()


def test_a_photo_of_a_3_reads_as_3(trained):
    digit = sn.read_digit(PHOTO)
    assert digit.shape == (28, 28) and digit.dtype == np.float32
    assert 0 <= digit.min() and digit.max() <= 1 and digit.sum() > 30
    assert trained.predict(digit.reshape(1, 784))[0] == 3
    with pytest.raises(FileNotFoundError, match="no-such-file.png"):
        sn.read_digit("no-such-file.png")
    # The photo as it is, beside what the network sees and its reading.
    photo, seen = sn.show_photo(PHOTO, trained).axes
    assert photo.images[0].get_array().shape[:2] == plt_image_shape(PHOTO)
    assert np.array_equal(seen.images[0].get_array(), digit)
    assert "read as 3" in seen.get_title()


def plt_image_shape(path):
    from matplotlib.image import imread

    return imread(path).shape[:2]


def test_onnx_runtime_gives_the_models_probabilities(trained, mnist, tmp_path):
    ort = need("onnxruntime", "notebook")
    _, _, (xte, _) = mnist
    path = tmp_path / "m.onnx"
    trained.export_onnx(path)
    runtime = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = runtime.run(["probabilities"], {"pixels": xte})[0]
    ours = trained.predict_proba(xte)
    # Worst seen 2026-12-06 (seeds 1, 2): 1.4e-6; bound about 10x.
    assert np.abs(theirs - ours).max() < 1e-5
    with pytest.raises(OSError, match="no-such-dir"):
        trained.export_onnx(tmp_path / "no-such-dir" / "m.onnx")


def test_live_draws_one_figure_updated_in_place_in_a_jupyter_kernel():
    nbformat = need("nbformat", "test")
    nbclient = need("nbclient", "test")
    cells = [
        "import IPython.display as d\n"
        "updates = []\n"
        "first = d.DisplayHandle.update\n"
        "def counted(self, obj, **kw):\n"
        "    updates.append(self.display_id)\n"
        "    return first(self, obj, **kw)\n"
        "d.DisplayHandle.update = counted\n"
        f"import scratchnet as sn\n(x, y), (xv, yv), _ = sn.load_mnist({str(DATA)!r})",
        "model = sn.train(x[:6000], y[:6000], xv[:1000], yv[:1000], epochs=4, eval_every=47,\n"
        "                 live=True, progress=False)",
        "print(len(updates), len(set(updates)), len(model.metrics))",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    trained, counts = nb.cells[1].outputs, nb.cells[2].outputs
    figures = [o for o in trained if "image/png" in o.get("data", {})]
    assert len(figures) == 1, f"one figure, not one per update: {trained}"
    assert figures[0]["output_type"] == "display_data"
    updates, handles, evaluations = map(int, counts[0]["text"].split())
    # 4 epochs of 47 steps, evaluated after each: the figure drawn again
    # after several of them (at most every 0.5 s), always through the one handle.
    assert evaluations == 4 and handles == 1 and updates >= 2, counts


def test_tensorboard_reads_back_every_scalar_the_metrics_file_holds(tmp_path):
    need("tensorboard", "test")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    bin_ = Path(os.environ.get("SCRATCHNET_BIN", REPO / "target" / "release" / "scratchnet"))
    runs, metrics = tmp_path / "runs", tmp_path / "m.jsonl"
    subprocess.run([str(bin_), "train", "-q", "--epochs", "2", "--eval-every", "100",
                    "--data", str(DATA), "--tensorboard", str(runs / "cli"),
                    "--metrics", str(metrics)], check=True, timeout=300)
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    (xtr, ytr), (xva, yva), (xte, yte) = sn.load_mnist(DATA)
    model = sn.train(xtr[:5000], ytr[:5000], xva[:1000], yva[:1000], X_test=xte[:1000],
                     y_test=yte[:1000], epochs=2, eval_every=10, progress=False,
                     tensorboard=runs / "python")
    for run, want in [("cli", records), ("python", model.metrics)]:
        acc = EventAccumulator(str(runs / run), size_guidance={"images": 0, "scalars": 0})
        acc.Reload()
        tags = acc.Tags()
        assert len(want) >= 8, (run, len(want))
        for tag, field in [("loss/train", "J"), ("loss/validation", "val_loss"),
                           ("loss/l2", "l2"), ("accuracy/train", "train_acc"),
                           ("accuracy/validation", "val_acc"), ("accuracy/test", "test_acc"),
                           ("learning_rate", "lr")]:
            assert tag in tags["scalars"], (run, tag, tags)
            got = [(e.step, e.value) for e in acc.Scalars(tag)]
            # Written as float32: within float32's rounding of each value.
            assert [s for s, _ in got] == [r["iter"] for r in want], (run, tag)
            for (_, v), r in zip(got, want):
                assert v == pytest.approx(r[field], rel=1e-7, abs=1e-12), (run, tag, v, r[field])
        for tag, size in [("first_layer/relu_128", (231, 463)), ("first_layer/tanh_64", (115, 463))]:
            images = acc.Images(tag)
            assert [i.step for i in images] == [r["iter"] for r in want], (run, tag)
            assert (images[-1].height, images[-1].width) == size
            picture = np.frombuffer(images[-1].encoded_image_string, np.uint8)
            assert picture[:8].tobytes() == b"\x89PNG\r\n\x1a\n"
        content = acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
        start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
        assert start.hparams["arch"].string_value == "relu:128|tanh:64,relu:48", run
        assert start.hparams["epochs"].number_value == 2, run
    # Two runs in one second into one folder: a file each.
    for _ in range(2):
        sn.train(xtr[:1000], ytr[:1000], epochs=1, progress=False, tensorboard=runs / "twice")
    assert len(list((runs / "twice").iterdir())) == 2
