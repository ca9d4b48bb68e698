"""scratchnet: the MNIST notebook's neural network, written from scratch in Rust.

    import scratchnet as sn
    (Xtr, ytr), (Xva, yva), (Xte, yte) = sn.load_mnist()
    model = sn.train(Xtr, ytr, Xva, yva, preset="seed", iters=500)
    model.evaluate(Xte, yte)
    model.plot_curves(); model.plot_confusion(Xte, yte)   # the `plot` extra
    model.save("m.safetensors"); model = sn.load("m.safetensors")

`scratchnet.tune` (the `tune` extra) searches hyper-parameters with Optuna,
on one machine or many.
"""

import os

from . import _scratchnet, progress as _progress
from ._scratchnet import Model, __version__, load, load_mnist, read_digit


def train(X, y, X_val=None, y_val=None, *, progress=None, callback=None, live=False,
          tensorboard=None, **options):
    """Trains a network on (X, y) and returns the Model.

    X: float32 (or convertible) of shape (N, 784), values in [0, 1]; y: the
    digits, shape (N,). X_val/y_val, and the keywords X_test/y_test, are
    evaluated at each evaluation. Options are the command line's, by their
    configuration names: preset ("fast", the default, "best", "seed"), epochs,
    iters, lr, l2, keep, shift, rotate, arch, seed, precision ("f32" or
    "bf16"), threads, keep_best, patience, ...

    progress: True shows a bar of the steps with the loss, J and the last
    accuracies (a widget in Jupyter, text on stderr elsewhere); False shows
    nothing; None (the default) shows it in a notebook or when stderr is a
    terminal, not when it is piped. A callable is called as
    `progress(done, total, loss)` instead, about every 0.1 s.

    callback(metrics) receives each evaluation as a dict and stops the run
    by returning False. Ctrl-C stops within a step and raises
    KeyboardInterrupt, whose `model` attribute holds the model as of the
    last finished step.

    live=True draws the loss and accuracy curves and the first layer's
    units in one matplotlib figure that updates in place while the run
    trains (the `plot` extra). tensorboard="runs/a" writes TensorBoard's
    event files there: the scalars, the units as images, the settings.
    """
    bar = None
    if not callable(progress) and _progress.wanted(progress):
        bar = _progress.Bar()
    view = None
    if live:
        from .live import Live

        view = Live()
    hearing = [h for h in (bar, view) if h is not None]

    def evaluation(record):
        for h in hearing:
            h.evaluation(record)
        return None if callback is None else callback(record)

    def steps(done, total, loss):
        for h in hearing:
            h.steps(done, total, loss)
        if callable(progress):
            progress(done, total, loss)

    try:
        return _scratchnet.train(
            X, y, X_val, y_val,
            callback=evaluation if hearing else callback,
            progress=steps if hearing or callable(progress) else None,
            look=None if view is None else view.look,
            **({} if tensorboard is None else {"tensorboard": os.fspath(tensorboard)}),
            **options)
    finally:
        for h in hearing:
            h.close()


def show_digits(X, labels=None, predictions=None, columns=10, limit=100):
    """A matplotlib figure of the first `limit` images of X (shape (N, 784) or
    (N, 28, 28)) in a grid, each titled with its label and, where given, the
    predicted digit (red where wrong). Needs the `plot` extra."""
    from . import plots

    return plots.digits(X, labels, predictions, columns=columns, limit=limit)


def show_photo(path, model=None):
    """A matplotlib figure of a picture of a digit beside what the network sees
    of it (`read_digit(path)`: cropped to the ink, fitted into 20x20 and
    centred in 28x28), titled with the model's reading where `model` is given.
    Needs the `plot` extra."""
    from . import plots

    prepared = read_digit(path)
    reading = None
    if model is not None:
        p = model.predict_proba(prepared.reshape(1, -1))[0]
        reading = (int(p.argmax()), float(p.max()))
    return plots.photo(path, prepared, reading)


def __getattr__(name):
    # `sn.tune` without importing Optuna until it is used.
    if name == "tune":
        import importlib

        return importlib.import_module(".tune", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Model", "load", "load_mnist", "read_digit", "show_digits", "show_photo", "train",
           "__version__"]
