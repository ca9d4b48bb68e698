#!/usr/bin/env python3
"""The search across machines, measured: W workers of `scratchnet-tune` on
one machine sharing a study of 24 trials of the default preset, on a
throwaway PostgreSQL cluster (and SQLite), with the median pruner.

    python3 scripts/tune_bench.py [--trials 24] [--data data/mnist] [--json]

Needs the package with its tune extra installed (`pip install "./python[tune]"`)
and PostgreSQL's initdb and pg_ctl. Every layout searches the same trials
(random sampler, seed 0: each trial's parameters depend on its number only),
so their results differ only by the pruner's view of the trials finished so
far. Prints, per layout: trials per minute (the workers' wall time, from
start to the last exit, data loading included), the pruned fraction, the
best validation accuracy, and the storage's time per reported evaluation
(trial.report and should_prune, as the workers measure them).
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python" / "tests"))
import pgcluster  # noqa: E402

TUNE = Path(sys.executable).parent / "scratchnet-tune"


def run(storage, study, workers, threads, trials, data, work):
    cmd = [TUNE, "worker", "--storage", storage, "--study", study, "--trials", trials,
           "--threads", threads, "--data", data, "--sampler", "random", "--seed", "0",
           "--out", work / study, "-q"]
    started = time.monotonic()
    ps = [subprocess.Popen(list(map(str, cmd))) for _ in range(workers)]
    codes = [p.wait() for p in ps]
    wall = time.monotonic() - started
    if any(codes):
        raise SystemExit(f"{study}: worker exit codes {codes}")
    ts = optuna.load_study(study_name=study, storage=storage).get_trials()
    done = [t for t in ts if t.state in (optuna.trial.TrialState.COMPLETE,
                                         optuna.trial.TrialState.PRUNED)]
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in done)
    evaluations = sum(t.user_attrs["evaluations"] for t in done)
    storage_s = sum(t.user_attrs["storage_seconds"] for t in done)
    return {
        "layout": f"{workers} worker{'s' * (workers > 1)} x {threads} thread{'s' * (threads > 1)}",
        "storage": storage.split(":")[0],
        "seconds": round(wall, 1),
        "trials_per_min": round(len(done) / wall * 60, 2),
        "pruned": f"{pruned}/{len(done)}",
        "best_val": max(t.value for t in done if t.value is not None),
        "evaluations": evaluations,
        "ms_per_evaluation": round(storage_s / evaluations * 1000, 2),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--data", default=str(REPO / "data" / "mnist"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    bindir = pgcluster.bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL's initdb and pg_ctl are not installed")
    cluster = pgcluster.Cluster(bindir)
    cluster.start()
    work = Path(tempfile.mkdtemp(prefix="tune-bench-"))
    rows = []
    try:
        layouts = [(cluster.url, 1, 1), (cluster.url, 2, 1), (cluster.url, 1, 2),
                   (f"sqlite:///{work / 'study.db'}", 2, 1)]
        for i, (storage, workers, threads) in enumerate(layouts):
            rows.append(run(storage, f"bench{i}", workers, threads, args.trials, args.data, work))
            print(rows[-1], file=sys.stderr, flush=True)
    finally:
        cluster.remove()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print("| layout | storage | trials/min | pruned | best val | storage ms per evaluation |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layout']} | {r['storage']} | {r['trials_per_min']:.1f} | {r['pruned']} | "
              f"{r['best_val']:.4f} | {r['ms_per_evaluation']:.2f} |")


if __name__ == "__main__":
    main()
