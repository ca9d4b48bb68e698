"""scratchnet.tune and scratchnet-tune against real MNIST, real worker
processes and a real PostgreSQL server (the `postgres` fixture), and SQLite.

Trials are short (one to six passes at one thread) but real: every test
trains. The timeouts below only bound a hang; nothing is timed.
"""

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skips import need

optuna = need("optuna", "tune")
import scratchnet as sn  # noqa: E402
import sqlalchemy  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data" / "mnist"
TUNE = Path(sys.executable).parent / "scratchnet-tune"
DONE = (TrialState.COMPLETE, TrialState.PRUNED)
HANG = 300


def worker(storage, study, trials, *options, cwd, epochs=2):
    """A `scratchnet-tune worker` process at one thread, its output piped,
    its best model in CWD/STUDY."""
    cmd = [TUNE, "worker", "--storage", storage, "--study", study, "--trials", str(trials),
           "--data", DATA, "--threads", "1", "--epochs", str(epochs), "--eval-every", "100",
           "--out", Path(cwd) / study, *options]
    return subprocess.Popen(list(map(str, cmd)), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(p, code=0):
    out, _ = p.communicate(timeout=HANG)
    assert p.returncode == code, out
    return out


@functools.cache
def rdb(url):
    # The workers make the tables: reading them must not race to.
    return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True},
                                      skip_table_creation=True, skip_compatibility_check=True)


def trials(storage, study):
    return optuna.load_study(study_name=study, storage=rdb(storage)).get_trials()


def states(ts):
    return {s: sum(t.state == s for t in ts) for s in TrialState}


def first_report(storage, study, p):
    """The trial that the worker `p` is training, once it has reported an
    evaluation."""
    end = time.monotonic() + HANG
    while time.monotonic() < end:
        if p.poll() is not None:
            pytest.fail(f"the worker exited ({p.returncode}): {p.communicate()[0]}")
        try:
            ts = trials(storage, study)
        except (KeyError, optuna.exceptions.StorageInternalError,
                sqlalchemy.exc.ProgrammingError):  # no such study or tables yet
            ts = []
        for t in ts:
            if t.state == TrialState.RUNNING and t.user_attrs.get("pid") == p.pid \
                    and t.intermediate_values:
                return t
        time.sleep(0.1)
    pytest.fail(f"waited {HANG} s for the worker's first evaluation")


@pytest.fixture(scope="module")
def mnist():
    return sn.load_mnist(DATA)


def test_pruning_callback_reports_each_evaluation_and_prunes(mnist):
    (xtr, ytr), (xva, yva), _ = mnist

    def objective(trial):
        cb = sn.tune.PruningCallback(trial)
        model = sn.train(xtr, ytr, xva, yva, iters=300, eval_every=100, threads=2,
                         lr=trial.suggest_float("lr", 3e-3, 3e-3), callback=cb)
        trial.set_user_attr("metrics", [(m["iter"], m["val_acc"]) for m in model.metrics])
        return model.metrics[-1]["val_acc"]

    kept = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    kept.optimize(objective, n_trials=1)
    t = kept.trials[0]
    assert t.state == TrialState.COMPLETE
    assert sorted(t.intermediate_values.items()) == [tuple(m) for m in t.user_attrs["metrics"]]
    assert sorted(t.intermediate_values) == [100, 200, 300]

    # No run reaches 99.9% after 100 steps: pruned at the first evaluation,
    # and train raises optuna.TrialPruned before the second.
    pruned = optuna.create_study(direction="maximize",
                                 pruner=optuna.pruners.ThresholdPruner(lower=0.999))
    pruned.optimize(objective, n_trials=1)
    t = pruned.trials[0]
    assert t.state == TrialState.PRUNED
    assert list(t.intermediate_values) == [100]
    assert "metrics" not in t.user_attrs


def test_pruning_callback_names_a_missing_monitor(mnist):
    (xtr, ytr), _, _ = mnist
    study = optuna.create_study()
    trial = study.ask()
    with pytest.raises(ValueError, match="no 'val_acc'.*validation split"):
        sn.train(xtr[:1000], ytr[:1000], iters=10, eval_every=5,
                 callback=sn.tune.PruningCallback(trial))


def test_the_core_module_needs_no_optuna():
    code = (
        "import sys; sys.modules['optuna'] = None\n"
        "import scratchnet as sn\n"
        "assert 'optuna' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "(x, y), _, _ = sn.load_mnist(sys.argv[1])\n"
        "sn.train(x[:2000], y[:2000], iters=20, threads=1)\n"
        "try:\n    sn.tune\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, DATA], capture_output=True, text=True,
                         check=True, timeout=HANG).stdout
    assert 'pip install "scratchnet[tune]"' in out, out


def test_two_workers_share_a_postgres_study(postgres, tmp_path):
    # Trials of four passes at one thread last several times the grace
    # period (2 s): healthy workers' trials are never taken for dead.
    opts = ("--heartbeat", "1", "--grace", "2", "--seed", "7")
    ws = [worker(postgres.url, "shared", 12, *opts, cwd=tmp_path, epochs=4) for _ in range(2)]
    outs = [finish(w) for w in ws]
    ts = trials(postgres.url, "shared")
    n = states(ts)
    assert n[TrialState.COMPLETE] + n[TrialState.PRUNED] == 12, outs
    assert len(ts) == 12 and n[TrialState.FAIL] == 0 and n[TrialState.RUNNING] == 0, n
    params = {tuple(sorted(t.params.items())) for t in ts}
    assert len(params) == 12
    assert {t.user_attrs["pid"] for t in ts} == {w.pid for w in ws}
    finished = [t for t in ts if t.state == TrialState.COMPLETE]
    assert min(t.user_attrs["seconds"] for t in finished) > 2, [t.user_attrs for t in finished]
    assert all("12 trials finished or pruned" in o for o in outs)


def test_a_killed_worker_s_trial_is_retried_by_a_live_one(postgres, tmp_path):
    opts = ("--heartbeat", "1", "--grace", "3", "--pruner", "none")
    doomed = worker(postgres.url, "kill", 4, *opts, cwd=tmp_path, epochs=4)
    victim = first_report(postgres.url, "kill", doomed)
    live = worker(postgres.url, "kill", 4, *opts, cwd=tmp_path, epochs=4)
    doomed.kill()
    doomed.communicate()
    out = finish(live)
    ts = trials(postgres.url, "kill")
    n = states(ts)
    assert n[TrialState.COMPLETE] + n[TrialState.PRUNED] == 4, out
    assert n[TrialState.RUNNING] == 0 and n[TrialState.WAITING] == 0, n
    failed = [t for t in ts if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [victim.number]
    retry = [t for t in ts if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].state in DONE
    assert retry[0].params == victim.params
    assert retry[0].user_attrs["pid"] == live.pid
    assert f"retry of trial {victim.number}" in out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_fails_the_trial_which_a_rerun_retries(postgres, tmp_path, sig):
    opts = ("--heartbeat", "1", "--grace", "3", "--pruner", "none")
    study = f"signal-{sig.name}"
    w = worker(postgres.url, study, 2, *opts, cwd=tmp_path, epochs=6)
    victim = first_report(postgres.url, study, w)
    w.send_signal(sig)
    out = finish(w, 128 + sig)
    assert f"stopped by {sig.name}" in out
    ts = trials(postgres.url, study)
    stopped = ts[victim.number]
    assert stopped.state == TrialState.FAIL
    assert stopped.user_attrs["stopped"].startswith(f"{sig.name} on ")
    # It stopped within a step of the signal, far from its 6 passes' end.
    assert len(stopped.intermediate_values) < 6 * 391 // 100
    queued = [t for t in ts if t.state == TrialState.WAITING]
    assert len(queued) == 1 and queued[0].params == victim.params
    assert not [t for t in ts if t.state == TrialState.RUNNING]

    rerun = finish(worker(postgres.url, study, 2, *opts, cwd=tmp_path, epochs=6))
    ts = trials(postgres.url, study)
    n = states(ts)
    assert n[TrialState.COMPLETE] == 2 and n[TrialState.RUNNING] == n[TrialState.WAITING] == 0
    retried = ts[queued[0].number]
    assert retried.state == TrialState.COMPLETE and retried.params == victim.params, rerun


def test_an_unreachable_database_is_named_without_its_password(tmp_path):
    from pgcluster import free_port

    url = f"postgresql://tune:s3cret@127.0.0.1:{free_port()}/studies"
    out = finish(worker(url, "x", 1, cwd=tmp_path), 1)
    assert f"postgresql://tune:***@127.0.0.1:{url.rsplit(':', 1)[1]}" in out, out
    assert "cannot open the study's storage" in out and "s3cret" not in out, out
    # The same URL from the environment, where `ps` does not show it.
    env = dict(os.environ, SCRATCHNET_TUNE_STORAGE=url)
    done = subprocess.run([TUNE, "report", "--study", "x"], env=env, capture_output=True,
                          text=True, timeout=HANG)
    assert done.returncode == 1 and "tune:***@127.0.0.1" in done.stderr, done


def test_a_database_lost_mid_run(postgres, tmp_path):
    opts = ("--heartbeat", "1", "--grace", "3", "--pruner", "none")
    # Away for a moment: the worker retries and carries on.
    w = worker(postgres.url, "away", 2, *opts, "--db-wait", "60", cwd=tmp_path, epochs=3)
    first_report(postgres.url, "away", w)
    postgres.stop()
    time.sleep(3)
    postgres.start()
    out = finish(w)
    assert "retrying for 60 s" in out, out
    assert states(trials(postgres.url, "away"))[TrialState.COMPLETE] == 2

    # Away for longer than --db-wait: a clear error, the trial left running
    # for a live worker to fail by heartbeat and retry.
    w = worker(postgres.url, "lost", 2, *opts, "--db-wait", "3", cwd=tmp_path, epochs=4)
    victim = first_report(postgres.url, "lost", w)
    postgres.stop()
    try:
        out = finish(w, 1)
    finally:
        postgres.start()
    assert "was unreachable for 3 s" in out and "postgresql://postgres@127.0.0.1" in out, out
    out = finish(worker(postgres.url, "lost", 2, *opts, cwd=tmp_path, epochs=4))
    ts = trials(postgres.url, "lost")
    n = states(ts)
    assert n[TrialState.COMPLETE] == 2 and n[TrialState.RUNNING] == 0, (n, out)
    assert ts[victim.number].state == TrialState.FAIL
    retry = [t for t in ts if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].params == victim.params


def test_the_pruner_saves_evaluations_on_sqlite(tmp_path, mnist):
    # The same ten trials (random search, seed 0), with and without pruning.
    db = f"sqlite:///{tmp_path / 'study.db'}"
    spent = {}
    for pruner in ("none", "median"):
        finish(worker(db, pruner, 10, "--pruner", pruner, "--sampler", "random", "--seed", "0",
                      cwd=tmp_path))
        ts = trials(db, pruner)
        assert sum(t.state in DONE for t in ts) == 10 and len(ts) == 10
        spent[pruner] = ts
    none, median = spent["none"], spent["median"]
    assert [t.params for t in none] == [t.params for t in median]
    pruned = [t for t in median if t.state == TrialState.PRUNED]
    assert pruned, [t.intermediate_values for t in median]
    evaluations = {k: sum(len(t.intermediate_values) for t in v) for k, v in spent.items()}
    assert evaluations["median"] < evaluations["none"], evaluations
    # Pruning judged the same curves: a pruned trial's reports are the
    # unpruned run's first ones.
    for t in pruned:
        full = none[t.number].intermediate_values
        assert all(full[s] == v for s, v in t.intermediate_values.items())

    # The report: every trial, sorted, in the table and the CSV; the best
    # trial's model saved, and it scores the trial's validation accuracy.
    out = subprocess.run([TUNE, "report", "--storage", db, "--study", "median", "--out",
                          tmp_path / "report"], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["trial", "state", "val_acc", "test_acc", "lr", "l2", "keep",
                                "evaluations", "host", "seconds", "note"]
    best = max((t for t in median if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert lines[1].split()[:3] == [str(best.number), "COMPLETE", f"{best.value:.4f}"]
    assert sum("PRUNED" in line and "pruned at step" in line for line in lines) == len(pruned)
    assert f"best: trial {best.number} (val {best.value:.4f})" in out
    csv = (tmp_path / "report" / "trials.csv").read_text().splitlines()
    assert len(csv) == 11 and csv[0].startswith("trial,state,val_acc")
    model = sn.load(tmp_path / "median" / "best.safetensors")
    assert model.metadata["scratchnet.tune_trial"] == str(best.number)
    (_, _), (xva, yva), _ = mnist
    assert model.evaluate(xva, yva) == pytest.approx(best.value, abs=1e-9)


def test_a_worker_with_other_settings_is_refused(tmp_path):
    db = f"sqlite:///{tmp_path / 'study.db'}"
    finish(worker(db, "s", 1, "--lr", "1e-3:1e-2", cwd=tmp_path, epochs=1))
    out = finish(worker(db, "s", 2, "--lr", "1e-4:1e-2", cwd=tmp_path, epochs=1), 1)
    assert "searches with other settings" in out, out
    assert sum(t.state in DONE for t in trials(db, "s")) == 1


@pytest.mark.parametrize("url, message", [
    ("not a url", "not a database URL"),
    ("mysql://u:pw@host/db", "mysql is not supported"),
])
def test_storage_urls_are_checked(url, message):
    with pytest.raises(ValueError, match=message):
        sn.tune.optimize(url, "s", 1)


def test_options_are_checked_before_any_work():
    for kwargs, message in [({"lr": (0, 1e-2)}, "learning rates must be > 0"),
                            ({"keep": (0.5, 1.5)}, r"must be in \(0, 1\]"),
                            ({"preset": "best"}, "one of fast, seed"),
                            ({"pruner": "asha"}, "one of median, hyperband, none")]:
        with pytest.raises(ValueError, match=message):
            sn.tune.optimize("sqlite:///:memory:", "s", 1, **kwargs)



def test_failing_trials_are_recorded_and_stop_the_worker(tmp_path, monkeypatch):
    # A trial whose training raises (a run that diverged) fails with the
    # error and is not retried; five in a row stop the worker.
    import scratchnet.tune.worker as tune_worker

    def diverge(*args, **kwargs):
        raise RuntimeError("training diverged at iteration 3: J is NaN")

    monkeypatch.setattr(tune_worker, "train", diverge)
    db = f"sqlite:///{tmp_path / 'study.db'}"
    with pytest.raises(RuntimeError, match="5 trials in a row failed here; the last: training "
                                           "diverged"):
        sn.tune.optimize(db, "d", 8, data=DATA, out=tmp_path / "out", log=lambda m: None)
    ts = trials(db, "d")
    assert [t.state for t in ts] == [TrialState.FAIL] * 5
    assert all(t.user_attrs["error"].startswith("training diverged") for t in ts)


def test_the_hyperband_pruner_prunes_poor_trials(tmp_path):
    # Learning rates from 1e-6 (nothing learnt in a pass) to 1e-2: the poor
    # trials are stopped early.
    db = f"sqlite:///{tmp_path / 'study.db'}"
    study = sn.tune.optimize(db, "h", 12, pruner="hyperband", sampler="random", seed=1,
                             epochs=1, eval_every=100, lr=(1e-6, 1e-2), threads=2, data=DATA,
                             out=tmp_path / "out", log=lambda m: None)
    assert isinstance(study.pruner, optuna.pruners.HyperbandPruner)
    ts = study.get_trials()
    assert len(ts) == 12 and all(t.state in DONE for t in ts)
    # Reported every 100 steps and at the pass's end (391 steps), up to the
    # trial's end or its pruning.
    for t in ts:
        steps = sorted(t.intermediate_values)
        assert steps and steps == [100, 200, 300, 391][:len(steps)], steps
    pruned = [t for t in ts if t.state == TrialState.PRUNED]
    finished = [t for t in ts if t.state == TrialState.COMPLETE]
    assert pruned and finished, [(t.state, t.intermediate_values) for t in ts]
    # Each was pruned before the pass's end, at a worse accuracy than the
    # best finished trial reached by then.
    for t in pruned:
        last = max(t.intermediate_values)
        assert last < 391, t.intermediate_values
        best_then = max(f.intermediate_values[last] for f in finished)
        assert t.intermediate_values[last] < best_then, (t.intermediate_values, best_then)
