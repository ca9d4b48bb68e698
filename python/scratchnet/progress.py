"""A training run's progress bar, fitted to where it runs: a widget in a
Jupyter notebook, a text line on a terminal, nothing in a pipe."""

import sys
import time


def wanted(progress):
    """Whether to show a bar: `progress` if given, else whether a person is
    watching (a notebook's kernel, or stderr on a terminal)."""
    if progress is None:
        return in_notebook() or sys.stderr.isatty()
    return bool(progress)


def in_notebook():
    """Whether this runs in a Jupyter kernel (IPython's ZMQ shell)."""
    ipython = sys.modules.get("IPython")
    shell = ipython and ipython.get_ipython()
    return type(shell).__name__ == "ZMQInteractiveShell"


class Bar:
    """tqdm's bar over the run's steps, with the last step's loss and, after
    each evaluation, J and the accuracies.

    `steps` is called from the thread that called `train` (where a
    notebook's widgets must be updated); `evaluation` only notes values,
    shown at the next update.
    """

    ORDER = ["loss", "J", "train", "val", "test"]

    def __init__(self, file=None):
        self.file = file or sys.stderr
        self.started = time.time()
        self.bar = None
        self.shown = {}

    def steps(self, done, total, loss):
        # The bar starts at the first report, when the total is known.
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="training", unit="step", file=self.file,
                            dynamic_ncols=True)
            self.bar.start_t = self.started
        self.shown["loss"] = f"{loss:.4f}"
        self.bar.set_postfix(self._postfix(), refresh=False)
        self.bar.update(done - self.bar.n)

    def _postfix(self):
        return {k: self.shown[k] for k in self.ORDER if k in self.shown}

    def evaluation(self, record):
        self.shown["J"] = f"{record['J']:.4f}"
        for key, name in [("train_acc", "train"), ("val_acc", "val"), ("test_acc", "test")]:
            value = record.get(key)
            if value is not None:
                self.shown[name] = f"{100 * value:.2f}%"

    def close(self):
        if self.bar is None:
            return
        self.bar.set_postfix(self._postfix(), refresh=True)
        self.bar.close()
        if in_notebook():
            # A notebook read as a file (on a code host) shows a widget's
            # first text, 0%; this line keeps the end.
            print(str(self.bar), file=self.file)
