"""`PruningCallback`: an Optuna trial fed by `scratchnet.train`'s evaluations."""

import optuna


class PruningCallback:
    """Reports each evaluation of a `scratchnet.train` run to an Optuna trial
    and stops the run when the study's pruner rejects the trial, raising
    `optuna.TrialPruned` from `train`, as Optuna's integrations for other
    trainers do:

        model = sn.train(X, y, X_val, y_val, callback=PruningCallback(trial))

    monitor: the evaluation's key to report ("val_acc", to maximise, or
    "val_loss", to minimise: the study's direction must agree). The step
    is the number of training steps done. `evaluations` counts the reports.
    """

    def __init__(self, trial, monitor="val_acc"):
        self.trial = trial
        self.monitor = monitor
        self.evaluations = 0

    def __call__(self, record):
        value = record.get(self.monitor)
        if value is None:
            have = ", ".join(k for k, v in record.items() if v is not None)
            raise ValueError(
                f"PruningCallback: the evaluation has no {self.monitor!r} "
                f"(a validation split gives val_acc and val_loss); it has {have}"
            )
        step = record["iter"]
        self._storage(lambda: self.trial.report(value, step))
        self.evaluations += 1
        if self._storage(self.trial.should_prune):
            raise optuna.TrialPruned(f"pruned at step {step} with {self.monitor} {value:.4f}")
        return True

    def _storage(self, call):
        """Runs one call on the trial's storage (a worker retries them)."""
        return call()
