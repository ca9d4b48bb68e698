"""Pictures as matplotlib figures: a run's curves, a confusion matrix, digits.

matplotlib is an optional extra: `pip install "./python[plot]"`. Each function
returns a `matplotlib.figure.Figure`, which a notebook shows inline and a
script saves with `fig.savefig(path)`. Figures are made without pyplot's
global state, so that nothing is drawn twice or left open.
"""

import numpy as np

CLASSES = 10
SIDE = 28


def _figure(**kw):
    """A new figure, not registered with pyplot."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            'scratchnet\'s pictures need matplotlib: pip install "./python[plot]" '
            "(from a clone of scratchnet) or pip install matplotlib"
        ) from e
    _shown_inline(Figure)
    return Figure(**kw)


def _shown_inline(figure_type):
    """In a notebook, figures display as PNG images, as with `%matplotlib
    inline`, unless the notebook already chose a format."""
    from .progress import in_notebook

    if not in_notebook():
        return
    from IPython import get_ipython
    from IPython.core.pylabtools import select_figure_formats

    shell = get_ipython()
    formatters = shell.display_formatter.formatters.values()
    if not any(figure_type in f.type_printers for f in formatters):
        select_figure_formats(shell, {"png"})


def curves(model):
    """The run's loss (J and, where measured, the validation loss) and
    accuracies (train, validation, test) against the iteration: two axes.

    Where the run follows the notebook's L2 schedule (`reg_every`), a dotted
    line marks each step at which the L2 factors are rescaled: J includes the
    L2 term, so it steps there. The accuracy axis spans the range the curves
    reach after the first tenth of the run, where they live; the earliest
    evaluations fall below it."""
    records = model.metrics
    if not records:
        raise ValueError(
            "this model has no curves: only a model trained in this process holds its "
            "evaluations (a saved model keeps the last one, in `metadata`)"
        )
    iters = [r["iter"] for r in records]
    fig = _figure(figsize=(10, 4), layout="constrained")
    loss, acc = fig.subplots(1, 2)
    loss.plot(iters, [r["J"] for r in records], marker=".", label="J (training, with dropout)")
    if any(r.get("val_loss") is not None for r in records):
        loss.plot(iters, [r.get("val_loss") for r in records], marker=".", label="validation loss")
    loss.set(xlabel="iteration", ylabel="loss", yscale="log", title="Loss")
    every = (getattr(model, "config", None) or {}).get("reg_every") or 0
    for k, step in enumerate(range(every, iters[-1] + 1, every) if every else []):
        label = f"L2 factors rescaled (every {every} iterations)" if k == 0 else None
        loss.axvline(step, color="0.5", linestyle=":", linewidth=1, label=label)
    late = []
    for key, label in [("train_acc", "train"), ("val_acc", "validation"), ("test_acc", "test")]:
        values = [r.get(key) for r in records]
        if any(v is not None for v in values):
            acc.plot(iters, [None if v is None else 100 * v for v in values], marker=".", label=label)
            late += [100 * v for i, v in zip(iters, values) if v is not None and i >= iters[-1] / 10]
    acc.set(xlabel="iteration", ylabel="accuracy (%)", title="Accuracy")
    if late:
        lo, hi = min(late), max(late)
        margin = max(0.1, (hi - lo) * 0.1)
        acc.set_ylim(max(0.0, lo - margin), min(100.0, hi + margin))
    for ax in (loss, acc):
        ax.grid(alpha=0.3)
        ax.legend()
    return fig


def confusion_matrix(labels, predictions):
    """Counts of (true digit, predicted digit): int64 of shape (10, 10)."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape:
        raise ValueError(
            f"labels of shape {labels.shape} and predictions of shape {predictions.shape}: "
            "expected one prediction per label"
        )
    counts = np.zeros((CLASSES, CLASSES), dtype=np.int64)
    np.add.at(counts, (labels.astype(np.int64), predictions.astype(np.int64)), 1)
    return counts


def confusion(model, X, y):
    """The confusion matrix of the model's predictions on (X, y), with each
    row's count and each digit's accuracy: one axes."""
    counts = confusion_matrix(y, model.predict(X))
    fig = _figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues", norm=_log_norm(counts))
    top = counts.max()
    for t in range(CLASSES):
        for p in range(CLASSES):
            if counts[t, p]:
                ax.text(p, t, str(counts[t, p]), ha="center", va="center", fontsize=8,
                        color="white" if counts[t, p] > top / 3 else "black")
    digits = range(CLASSES)
    per_class = counts.diagonal() / np.maximum(counts.sum(axis=1), 1)
    ax.set_xticks(digits)
    ax.set_yticks(digits, [f"{d} ({100 * a:.1f}%)" for d, a in zip(digits, per_class)])
    accuracy = counts.trace() / max(counts.sum(), 1)
    ax.set(xlabel="predicted digit", ylabel="true digit (accuracy)",
           title=f"Confusion matrix: {counts.sum()} images, {100 * accuracy:.2f}% right")
    fig.colorbar(image, ax=ax, label="images")
    return fig


def _log_norm(counts):
    from matplotlib.colors import LogNorm

    return LogNorm(vmin=1, vmax=max(int(counts.max()), 2), clip=True)


def digits(X, labels=None, predictions=None, columns=10, limit=100):
    """A grid of the first `limit` images of X (rows of 784 pixels or 28x28
    arrays), each titled with its label and, where given, the prediction;
    wrong predictions in red."""
    images = np.asarray(X, dtype=np.float32)
    if images.ndim == 2 and images.shape[1] == SIDE * SIDE:
        images = images.reshape(-1, SIDE, SIDE)
    if images.ndim != 3 or images.shape[1:] != (SIDE, SIDE):
        raise ValueError(
            f"X of shape {images.shape}: expected images of 784 pixels, shape (N, 784) "
            "or (N, 28, 28)"
        )
    n = min(len(images), limit)
    if n == 0:
        raise ValueError("X holds no images")
    for name, values in [("labels", labels), ("predictions", predictions)]:
        if values is not None and len(values) < n:
            raise ValueError(f"{name}: {len(values)} values for {n} images")
    columns = min(columns, n)
    rows = -(-n // columns)
    fig = _figure(figsize=(columns * 0.9, rows * 1.05), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= n:
            continue
        ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=1)
        title, colour = [], "black"
        if labels is not None:
            title.append(str(int(labels[i])))
        if predictions is not None:
            title.append(f"→{int(predictions[i])}")
            if labels is not None and int(predictions[i]) != int(labels[i]):
                colour = "red"
        ax.set_title(" ".join(title), fontsize=9, color=colour)
    return fig


def photo(path, prepared, reading=None):
    """The picture at `path` as it is, beside `prepared` (28x28, 0..1 ink):
    what the network reads. `reading` is (digit, probability), if known."""
    from matplotlib.image import imread

    fig = _figure(figsize=(7, 3.4), layout="constrained")
    original, seen = fig.subplots(1, 2, width_ratios=[1.6, 1])
    original.imshow(imread(path))
    original.set_title("the photo")
    seen.imshow(np.asarray(prepared).reshape(SIDE, SIDE), cmap="gray_r", vmin=0, vmax=1)
    title = "what the network sees (28x28)"
    if reading is not None:
        title += f"\nread as {reading[0]} (probability {reading[1]:.3f})"
    seen.set_title(title)
    for ax in (original, seen):
        ax.set_axis_off()
    return fig

