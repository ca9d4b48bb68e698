"""Hyper-parameter search with Optuna, on one machine or many.

    import optuna, scratchnet as sn

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        model = sn.train(X, y, X_val, y_val, lr=lr,
                         callback=sn.tune.PruningCallback(trial, monitor="val_acc"))
        return model.metrics[-1]["val_acc"]

    optuna.create_study(direction="maximize").optimize(objective, n_trials=20)

or the notebook's search over the learning rate, the L2 factors and the keep
probabilities, by workers on every machine that share one database:

    sn.tune.optimize("postgresql://user:pw@db-host/studies", "mnist", trials=100)
    $ scratchnet-tune worker --storage postgresql://... --study mnist --trials 100

Needs the `tune` extra: pip install "scratchnet[tune]".
"""

try:
    import optuna  # noqa: F401
except ImportError as e:  # pragma: no cover - the message is what matters
    raise ImportError(
        f'scratchnet.tune needs Optuna ({e}); install the extra: pip install "scratchnet[tune]"'
    ) from e

from .callback import PruningCallback
from .report import report, trial_rows
from .storage import StorageError
from .worker import optimize

__all__ = ["PruningCallback", "StorageError", "optimize", "report", "trial_rows"]
