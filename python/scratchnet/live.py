"""`sn.train(..., live=True)`: one matplotlib figure, updated in place while
a run trains: the loss and accuracy curves at each evaluation, and the
first layer's units as pictures (red positive weights, blue negative), so
one sees strokes emerge from noise.

The training thread only notes what it hears; the figure is drawn from the
thread that called `train` (where a notebook's outputs must be updated),
at most every `EVERY` seconds, and once at the end."""

import time

EVERY = 0.5


class Live:
    def __init__(self):
        import matplotlib.pyplot as plt

        from .progress import in_notebook

        self.records, self.units, self.dirty, self.drawn = [], None, False, 0.0
        self.fig = plt.figure(figsize=(12, 5.5), layout="constrained")
        grid = self.fig.add_gridspec(2, 2, width_ratios=[1, 1.2])
        self.loss = self.fig.add_subplot(grid[0, 0])
        self.accuracy = self.fig.add_subplot(grid[1, 0], sharex=self.loss)
        self.pictures = grid[:, 1]
        self.picture_axes = []
        self.handle = None
        if in_notebook():
            from IPython.display import display

            # Shown once, through a handle that later draws replace; closed
            # so that the cell's end does not show it a second time.
            plt.close(self.fig)
            self.handle = display(self.fig, display_id=True)
        else:
            plt.show(block=False)

    def evaluation(self, record):
        self.records.append(record)
        self.dirty = True

    def look(self, iteration, pictures):
        self.units = (iteration, pictures)
        self.dirty = True

    def steps(self, done, total, loss):
        if self.dirty and time.monotonic() - self.drawn >= EVERY:
            self.draw()

    def close(self):
        if self.dirty:
            self.draw()

    def draw(self):
        self.dirty, self.drawn = False, time.monotonic()
        iters = [r["iter"] for r in self.records]
        self.loss.clear()
        self.accuracy.clear()
        for key, name in [("J", "train (since last evaluation)"), ("val_loss", "validation")]:
            points = [(i, r[key]) for i, r in zip(iters, self.records) if r.get(key) is not None]
            if points:
                self.loss.plot(*zip(*points), marker=".", label=name)
        for key, name in [("train_acc", "train"), ("val_acc", "validation")]:
            points = [(i, 100 * r[key]) for i, r in zip(iters, self.records)
                      if r.get(key) is not None]
            if points:
                self.accuracy.plot(*zip(*points), marker=".", label=name)
        self.loss.set_ylabel("loss")
        self.loss.set_yscale("log")
        self.accuracy.set_ylabel("accuracy (%)")
        self.accuracy.set_xlabel("step")
        for ax in (self.loss, self.accuracy):
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(loc="best", fontsize="small")
        if self.units is not None:
            iteration, pictures = self.units
            if len(self.picture_axes) != len(pictures):
                for ax in self.picture_axes:
                    ax.remove()
                rows = self.pictures.subgridspec(len(pictures), 1,
                                                 height_ratios=[p.shape[0] for _, p in pictures])
                self.picture_axes = [self.fig.add_subplot(rows[k]) for k in range(len(pictures))]
            for ax, (label, picture) in zip(self.picture_axes, pictures):
                ax.clear()
                ax.imshow(picture, interpolation="nearest")
                ax.set_title(f"first layer: {label} units, step {iteration}", fontsize="small")
                ax.set_axis_off()
        if self.handle is not None:
            self.handle.update(self.fig)
        else:
            self.fig.canvas.draw_idle()
            self.fig.canvas.flush_events()
