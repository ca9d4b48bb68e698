"""`scratchnet-tune`: the worker and the report on the command line."""

import argparse
import os
import signal
import sys

from .search import PRESETS, PRUNERS, SAMPLERS, parse_range

EXAMPLES = """examples:
  scratchnet-tune worker --storage sqlite:///study.db --study mnist --trials 24
  scratchnet-tune worker --storage postgresql://tune:PW@db-host/tune --study mnist \\
      --trials 200 --epochs 6 --threads 2 --out /shared/tune
  scratchnet-tune report --storage postgresql://tune:PW@db-host/tune --study mnist

Every machine runs the same worker command; the study holds --trials trials
in all, and a rerun continues it."""


def _range(text):
    try:
        return parse_range(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive(text):
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v}: must be at least 1")
    return v


def parser():
    p = argparse.ArgumentParser(
        prog="scratchnet-tune", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Hyper-parameter search by Optuna workers sharing a database.")
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    storage = os.environ.get("SCRATCHNET_TUNE_STORAGE")
    common.add_argument("--storage", required=storage is None, default=storage, metavar="URL",
                        help="the study's database: postgresql://USER:PASSWORD@HOST:PORT/DB "
                             "for many machines, sqlite:///PATH for one (default: "
                             "$SCRATCHNET_TUNE_STORAGE, which keeps a password off the "
                             "command line)")
    common.add_argument("--study", required=True, metavar="NAME", help="the study's name")
    w = sub.add_parser("worker", parents=[common], epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="run trials until the study holds --trials finished or pruned ones")
    w.add_argument("--trials", type=_positive, required=True, metavar="N",
                   help="the study's total of finished and pruned trials, all workers together")
    w.add_argument("--preset", choices=PRESETS, default="fast",
                   help="starting configuration of every trial (default: fast)")
    budget = w.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=_positive, metavar="N", help="passes per trial")
    budget.add_argument("--iters", type=_positive, metavar="N", help="steps per trial")
    w.add_argument("--eval-every", type=_positive, metavar="STEPS",
                   help="steps between evaluations, which the pruner judges (default: the preset's)")
    w.add_argument("--lr", type=_range, default=(1e-4, 1e-2), metavar="LO:HI",
                   help="learning-rate range, drawn log-uniformly (default: 1e-4:1e-2)")
    w.add_argument("--l2", type=_range, default=(0.0, 3.0), metavar="LO:HI",
                   help="range of every L2 factor (default: 0:3)")
    w.add_argument("--keep", type=_range, default=(0.8, 1.0), metavar="LO:HI",
                   help="range of every keep probability (default: 0.8:1)")
    w.add_argument("--pruner", choices=PRUNERS, default="median",
                   help="stops unpromising trials early (default: median)")
    w.add_argument("--sampler", choices=SAMPLERS, default="tpe",
                   help="tpe (Optuna's default) or random, drawn from --seed and the trial's "
                        "number as `scratchnet sweep` draws (default: tpe)")
    w.add_argument("--seed", type=int, help="the sampler's seed")
    w.add_argument("--threads", type=_positive, metavar="N",
                   help="computing threads per worker (default: every core); W workers on "
                        "one machine of C cores: C/W each")
    w.add_argument("--data", metavar="PATH", help="MNIST, as `scratchnet train --data` takes it")
    w.add_argument("--out", default="tune", metavar="DIR",
                   help="where the best trial's model is saved, as best.safetensors "
                        "(default: tune)")
    w.add_argument("--heartbeat", type=_positive, default=10, metavar="SECONDS",
                   help="how often a running trial says it is alive (default: 10)")
    w.add_argument("--grace", type=_positive, metavar="SECONDS",
                   help="silence after which a trial is failed and retried "
                        "(default: 2 heartbeats)")
    w.add_argument("--retries", type=int, default=3, metavar="N",
                   help="times a trial whose worker died is run again (default: 3)")
    w.add_argument("--db-wait", type=float, default=60.0, metavar="SECONDS",
                   help="how long to retry a database that went away (default: 60)")
    w.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    r = sub.add_parser("report", parents=[common],
                       help="print the study's trials and write OUT/trials.csv")
    r.add_argument("--out", default="tune", metavar="DIR",
                   help="where trials.csv is written (default: tune)")
    return p


def _stop_on_sigterm():
    """SIGTERM (a scheduler's stop) as Ctrl-C: the running trial stops
    within a step, is failed and queued again."""
    def stop(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        from . import optimize, report
        from .storage import StorageError
    except ImportError as e:
        print(f"scratchnet-tune: {e}", file=sys.stderr)
        return 2

    def log(message):
        if not getattr(args, "quiet", False):
            print(message, flush=True)

    try:
        if args.command == "report":
            report(args.storage, args.study, out=args.out)
            return 0
        _stop_on_sigterm()
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        optimize(args.storage, args.study, args.trials, preset=args.preset, epochs=args.epochs,
                 iters=args.iters, eval_every=args.eval_every, lr=args.lr, l2=args.l2,
                 keep=args.keep, pruner=args.pruner, sampler=args.sampler, seed=args.seed,
                 threads=args.threads, data=args.data, out=args.out,
                 heartbeat=args.heartbeat, grace=args.grace, retries=args.retries,
                 db_wait=args.db_wait, log=log)
        return 0
    except KeyboardInterrupt as e:
        name = str(e) or "SIGINT"
        print(f"scratchnet-tune: stopped by {name}", file=sys.stderr)
        return 128 + getattr(signal, name, signal.SIGINT)
    except (StorageError, ValueError, RuntimeError, OSError) as e:
        print(f"scratchnet-tune: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
