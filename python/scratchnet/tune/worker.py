"""`optimize`: one worker of a study. Any number of them, on any machines,
share the study through its database; each starts trials until the study
holds its number of finished or pruned trials."""

import json
import os
import socket
import time
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from .. import load, load_mnist, train
from . import search
from .callback import PruningCallback
from .storage import Storage, StorageError, locked

SETTINGS = "scratchnet.settings"
BEST = "best.safetensors"
# Trials that fail in a row on one worker before it gives up: a fault that
# every trial meets (divergence is a trial's own, and rarely runs long).
FAILURES_IN_A_ROW = 5
DONE = (TrialState.COMPLETE, TrialState.PRUNED)


class _RetryingPruning(PruningCallback):
    """The pruning callback with its storage calls retried by the worker."""

    def __init__(self, trial, store):
        super().__init__(trial, monitor="val_acc")
        self.store = store
        self.seconds = 0.0

    def _storage(self, call):
        started = time.perf_counter()
        try:
            return self.store.call("reporting an evaluation", call)
        finally:
            self.seconds += time.perf_counter() - started


def optimize(storage, study, trials, *, preset="fast", epochs=None, iters=None,
             eval_every=None, lr=(1e-4, 1e-2), l2=(0.0, 3.0), keep=(0.8, 1.0),
             pruner="median", sampler="tpe", seed=None, threads=None, data=None,
             out="tune", heartbeat=10, grace=None, retries=3, db_wait=60.0,
             log=print):
    """Works on the study `study` in the database `storage` (an SQLAlchemy
    URL: postgresql://USER:PASSWORD@HOST/DB for many machines,
    sqlite:///PATH for one) until it holds `trials` finished or pruned
    trials, then returns the optuna.Study. Start the same call on every
    machine; a rerun continues the study.

    Each trial trains `preset` ("fast" or "seed", with `epochs`, `iters`
    and `eval_every` where given) with a learning rate drawn log-uniformly
    from `lr` and each L2 factor and keep probability drawn from `l2` and
    `keep`, as `scratchnet sweep` draws, and is worth its final validation
    accuracy. `pruner`: "median", "hyperband" or "none"; `sampler`: "tpe"
    or "random"; `threads`: computing threads per trial (all cores when
    None); `data`: MNIST's path as `load_mnist` takes it. The best trial's
    model so far is saved as OUT/best.safetensors.

    Faults: a trial whose worker stopped beating for `grace` seconds
    (default 2 heartbeats) is failed and queued again with the same
    parameters, at most `retries` times; Ctrl-C fails the running trial,
    queues it again and raises KeyboardInterrupt; a database unreachable for
    `db_wait` seconds raises StorageError, leaving the trial running to be
    failed by heartbeat and retried.
    """
    space = search.Space(preset, epochs=epochs, iters=iters, eval_every=eval_every,
                         lr=lr, l2=l2, keep=keep)
    total = int(trials)
    if total < 1:
        raise ValueError(f"trials {trials}: must be at least 1")
    out = Path(out)
    _check_out(out, study)
    store = Storage(storage, heartbeat=heartbeat, grace=grace, retries=retries,
                    db_wait=db_wait, log=log)
    st = store.call("opening the study", lambda: optuna.create_study(
        storage=store.rdb, study_name=study, direction="maximize", load_if_exists=True,
        sampler=search.sampler(sampler, seed), pruner=search.pruner(pruner)))
    _same_settings(st, store, space)
    (xtr, ytr), (xva, yva), (xte, yte) = load_mnist(data)
    if len(yva) == 0:
        raise ValueError(f"{data}: no validation split to rank the trials by")
    splits = (xtr, ytr, xva, yva, xte, yte)
    out.mkdir(parents=True, exist_ok=True)
    ran = failures = 0
    while True:
        store.call("failing stale trials", lambda: optuna.storages.fail_stale_trials(st))
        trial = store.call("starting a trial", lambda: _admit(st, store, total))
        if trial == "done":
            break
        if trial == "wait":
            # Trials are running elsewhere; one whose worker dies must be
            # failed and retried here.
            time.sleep(min(store.heartbeat_s, 5))
            continue
        error = _run(st, store, trial, space, splits, threads, out, log)
        ran += 1
        failures = failures + 1 if error else 0
        if failures >= FAILURES_IN_A_ROW:
            raise RuntimeError(f"{failures} trials in a row failed here; the last: {error}")
    log(f"{study}: {total} trials finished or pruned ({ran} here)")
    return st


def _admit(st, store, total):
    """A trial to run, "wait" while the running ones fill the budget, or
    "done". Under the study's lock, so that two workers never both take the
    last place; a trial queued for retry is taken first."""
    with store.lock(st.study_name):
        states = [t.state for t in st.get_trials(deepcopy=False)]
        done = sum(s in DONE for s in states)
        running = states.count(TrialState.RUNNING)
        if done >= total:
            return "done"
        if done + running >= total:
            return "wait"
        return st.ask()


def _run(st, store, trial, space, splits, threads, out, log):
    """Trains one trial and records its result, pruning or failure; returns
    the failure's message, or None."""
    host = socket.gethostname()
    store.call("recording the worker", lambda: (
        trial.set_user_attr("host", host), trial.set_user_attr("pid", os.getpid())))
    options = space.suggest(trial)
    frozen = store.call("reading the trial", lambda: store.rdb.get_trial(trial._trial_id))
    retry_of = frozen.system_attrs.get("failed_trial")
    note = f" (retry of trial {retry_of})" if retry_of is not None else ""
    log(f"trial {trial.number}{note}: lr {options['lr']:.2e}  l2 {search.fmt_list(options['l2'])}  "
        f"keep {search.fmt_list(options['keep'])}")
    xtr, ytr, xva, yva, xte, yte = splits
    callback = _RetryingPruning(trial, store)
    started = time.monotonic()

    def tell(state=None, value=None, **attrs):
        attrs.update(seconds=round(time.monotonic() - started, 3),
                     evaluations=callback.evaluations,
                     storage_seconds=round(callback.seconds, 6))

        def record():
            for k, v in attrs.items():
                trial.set_user_attr(k, v)
            st.tell(trial, value, state=state, skip_if_finished=True)

        store.call(f"recording trial {trial.number}", record)

    try:
        with store.heartbeat(trial._trial_id), warnings.catch_warnings():
            # A trial near chance is a result here, not a mistake to warn of.
            warnings.filterwarnings("ignore", message="the run ended near chance")
            model = train(xtr, ytr, xva, yva, X_test=xte, y_test=yte, preset=space.preset,
                          threads=threads, callback=callback, progress=False,
                          **space.budget, **options)
    except optuna.TrialPruned as e:
        tell(TrialState.PRUNED)
        log(f"trial {trial.number}: {e}")
        return None
    except KeyboardInterrupt as e:
        why = str(e) or "SIGINT"
        tell(TrialState.FAIL, stopped=f"{why} on {host}")
        frozen = store.call("reading the trial", lambda: store.rdb.get_trial(trial._trial_id))
        store.call("queueing the trial again", lambda: store.retry(st, frozen))
        log(f"trial {trial.number}: {why}; failed, queued again")
        raise
    except StorageError:
        raise
    except (RuntimeError, ValueError) as e:
        # A run that diverges would diverge again: failed, not retried.
        tell(TrialState.FAIL, error=str(e))
        log(f"trial {trial.number}: failed: {e}")
        return str(e)
    last = model.metrics[-1]
    val = last["val_acc"]
    saved = _save_if_best(st, store, trial, model, val, out)
    extra = {"model": f"{host}:{saved}"} if saved else {}
    tell(value=val, test_acc=last["test_acc"], **extra)
    log(f"trial {trial.number}: val {val:.4f}  test {last['test_acc']:.4f}  "
        f"({time.monotonic() - started:.1f} s){'  best so far' if saved else ''}")
    return None


def _save_if_best(st, store, trial, model, val, out):
    """Saves the model as OUT/best.safetensors if it beats the study's
    finished trials and the model already there; returns the path or None.
    A file lock orders the workers that share OUT."""
    path = (out / BEST).resolve()
    with locked(out / ".best.lock"):
        done = store.call("reading the best trial", lambda: st.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE,)))
        best = max((t.value for t in done), default=float("-inf"))
        if path.exists():
            best = max(best, float(load(path).metadata.get("scratchnet.tune_val_acc", "-inf")))
        if not val > best:
            return None
        model.save(path, metadata={"scratchnet.tune_study": st.study_name,
                                   "scratchnet.tune_trial": str(trial.number),
                                   "scratchnet.tune_val_acc": repr(val)})
        return path


def _check_out(out, study):
    """OUT may hold this study's best model, not another's."""
    path = out / BEST
    if not path.exists():
        return
    owner = load(path).metadata.get("scratchnet.tune_study")
    if owner != study:
        what = f"study {owner!r}'s" if owner else "another run's"
        raise ValueError(f"{path} holds {what} best model; give another out directory")


def _same_settings(st, store, space):
    """Records the search's settings in the study, or checks a worker's
    against those recorded: workers of one study search alike."""
    mine = space.settings()
    recorded = st.user_attrs.get(SETTINGS)
    if recorded is None:
        store.call("recording the settings", lambda: st.set_user_attr(SETTINGS, mine))
    elif recorded != json.loads(json.dumps(mine)):
        raise ValueError(
            f"study {st.study_name!r} searches with other settings: {recorded}; "
            f"this worker has {mine}. Give the same settings, or another study name"
        )
