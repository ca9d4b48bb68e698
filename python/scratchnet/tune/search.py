"""What a search tries: `scratchnet sweep`'s space (the learning rate drawn
log-uniformly, each L2 factor and each keep probability uniformly), the
budget of each trial, and the samplers and pruners by name."""

import os
import socket
import zlib

import numpy as np
import optuna

from .. import _scratchnet

PRESETS = ("fast", "seed")
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "hyperband", "none")


def parse_range(text):
    """`LO:HI` as a pair of floats (the command line's ranges)."""
    lo, sep, hi = str(text).partition(":")
    try:
        if not sep:
            raise ValueError
        return float(lo), float(hi)
    except ValueError:
        raise ValueError(f"`{text}` is not LO:HI") from None


class Space:
    """The trials' options: the preset and budget shared by all, and the
    ranges each trial draws from."""

    def __init__(self, preset="fast", *, epochs=None, iters=None, eval_every=None,
                 lr=(1e-4, 1e-2), l2=(0.0, 3.0), keep=(0.8, 1.0)):
        if preset not in PRESETS:
            raise ValueError(f"preset {preset!r}: a search starts from one of {', '.join(PRESETS)}")
        if epochs is not None and iters is not None:
            raise ValueError("give epochs or iters, not both")
        self.preset = preset
        self.budget = {k: int(v) for k, v in
                       (("epochs", epochs), ("iters", iters), ("eval_every", eval_every))
                       if v is not None}
        for name, v in self.budget.items():
            if v < 1:
                raise ValueError(f"{name} {v}: must be at least 1")
        self.lr, self.l2, self.keep = (tuple(map(float, r)) for r in (lr, l2, keep))
        for name, (lo, hi) in (("lr", self.lr), ("l2", self.l2), ("keep", self.keep)):
            if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
                raise ValueError(f"{name} {lo:g}:{hi:g}: need finite LO <= HI")
        if self.lr[0] <= 0:
            raise ValueError(f"lr {self.lr[0]:g}:{self.lr[1]:g}: learning rates must be > 0")
        if self.l2[0] < 0:
            raise ValueError(f"l2 {self.l2[0]:g}:{self.l2[1]:g}: factors must be >= 0")
        if self.keep[0] <= 0 or self.keep[1] > 1:
            raise ValueError(f"keep {self.keep[0]:g}:{self.keep[1]:g}: probabilities must be in (0, 1]")
        self.counts = _scratchnet.factor_counts(preset, **self.budget)

    def settings(self):
        """What makes two workers' searches the same search."""
        return {"preset": self.preset, **self.budget,
                "lr": list(self.lr), "l2": list(self.l2), "keep": list(self.keep)}

    def suggest(self, trial):
        """The trial's options for `scratchnet.train`: lr, l2 (one factor per
        weight matrix, parameters l2_0, l2_1, ...) and keep (one per hidden
        branch, keep_0, ...)."""
        return {
            "lr": trial.suggest_float("lr", *self.lr, log=True),
            "l2": [trial.suggest_float(f"l2_{i}", *self.l2) for i in range(self.counts["l2"])],
            "keep": [trial.suggest_float(f"keep_{i}", *self.keep)
                     for i in range(self.counts["keep"])],
        }


def fmt_list(values):
    """A trial's L2 factors or keep probabilities, short: [1.19, 0.9]."""
    return "[" + ", ".join(f"{v:.3g}" for v in values) + "]"


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """Random search whose draws depend only on the seed, the trial's number
    and the parameter's name: as `scratchnet sweep` draws, the same for any
    number of workers, and distinct across the trials of a study."""

    def __init__(self, seed=0):
        self.seed = int(seed)

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        if not isinstance(param_distribution, optuna.distributions.FloatDistribution):
            raise TypeError(f"{param_name}: TrialSeededSampler draws floats only")
        rng = np.random.default_rng([self.seed, trial.number, zlib.crc32(param_name.encode())])
        lo, hi = param_distribution.low, param_distribution.high
        if param_distribution.log:
            return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        return float(rng.uniform(lo, hi))


def sampler(name, seed=None):
    """"tpe" (Optuna's default) or "random" (`TrialSeededSampler`). TPE
    counts the running trials as if they had the worst value seen (its
    "constant liar"), so that workers do not all draw near the same point,
    and its seed is mixed with the worker's process, so that workers
    started by the same command do not draw alike."""
    if name == "random":
        return TrialSeededSampler(0 if seed is None else seed)
    if name == "tpe":
        if seed is not None:
            worker = zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode())
            seed = (int(seed) * 1_000_003 + worker) % 2**32
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    raise ValueError(f"sampler {name!r}: one of {', '.join(SAMPLERS)}")


def pruner(name):
    """"median" (stops a trial below the median of earlier trials at the
    same step, after 5 trials), "hyperband", or "none"."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"pruner {name!r}: one of {', '.join(PRUNERS)}")
