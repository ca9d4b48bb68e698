"""`report`: a study's trials as a table and a CSV file."""

import csv
import sys
from pathlib import Path

import optuna

from .search import fmt_list
from .storage import Storage

COLUMNS = ("trial", "state", "val_acc", "test_acc", "lr", "l2", "keep", "evaluations",
           "host", "seconds", "note")


def trial_rows(study):
    """One dict per trial of an optuna.Study, best validation accuracy first,
    then pruned, failed and the rest by number: COLUMNS' keys."""
    order = {"COMPLETE": 0, "PRUNED": 1, "RUNNING": 2, "WAITING": 3, "FAIL": 4}
    rows, saved = [], {}
    for t in study.get_trials(deepcopy=False):
        p, a = t.params, t.user_attrs
        notes = []
        if t.system_attrs.get("failed_trial") is not None:
            notes.append(f"retry of {t.system_attrs['failed_trial']}")
        if t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values:
            notes.append(f"pruned at step {max(t.intermediate_values)}")
        if t.state == optuna.trial.TrialState.FAIL:
            # A retry inherits its original's attributes: read them here only.
            notes.append(str(a.get("stopped") or a.get("error") or "worker lost (no heartbeat)"))
        saved[t.number] = a.get("model")
        rows.append({
            "trial": t.number,
            "state": t.state.name,
            "val_acc": t.value,
            "test_acc": a.get("test_acc"),
            "lr": p.get("lr"),
            "l2": [p[k] for k in sorted(p) if k.startswith("l2_")],
            "keep": [p[k] for k in sorted(p) if k.startswith("keep_")],
            "evaluations": len(t.intermediate_values),
            "host": a.get("host", ""),
            "seconds": a.get("seconds"),
            "note": "; ".join(notes),
        })
    rows.sort(key=lambda r: (order.get(r["state"], 5),
                             -(r["val_acc"] if r["val_acc"] is not None else 0), r["trial"]))
    # Where the best model was saved (a later best replaces an earlier one).
    if rows and rows[0]["state"] == "COMPLETE" and saved[rows[0]["trial"]]:
        best = rows[0]
        best["note"] = "; ".join(filter(None, [best["note"], f"model {saved[best['trial']]}"]))
    return rows


def _cell(v, fmt):
    if v is None:
        return ""
    return fmt_list(v) if isinstance(v, list) else format(v, fmt)


def report(storage, study, out=None, file=None):
    """Prints the study's trials (parameters, validation and test accuracy,
    state, worker host, seconds) and writes them to OUT/trials.csv where
    `out` is given; returns the rows."""
    file = file or sys.stdout
    store = Storage(storage, db_wait=10.0, log=lambda m: print(m, file=sys.stderr))
    try:
        st = store.call("loading the study", lambda: optuna.load_study(
            study_name=study, storage=store.rdb))
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(store.rdb)]
        raise ValueError(f"{store.shown} holds no study {study!r} "
                         f"(it holds: {', '.join(names) or 'none'})") from None
    rows = store.call("reading the trials", lambda: trial_rows(st))
    fmt = {"val_acc": ".4f", "test_acc": ".4f", "lr": ".2e", "seconds": ".1f"}
    table = [list(COLUMNS)] + [[_cell(r[c], fmt.get(c, "")) for c in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    for row in table:
        print("  ".join(c.ljust(wd) for c, wd in zip(row, widths)).rstrip(), file=file)
    states = {}
    for r in rows:
        states[r["state"]] = states.get(r["state"], 0) + 1
    print(f"\n{study}: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items())),
          file=file)
    if rows and rows[0]["state"] == "COMPLETE":
        b = rows[0]
        print(f"best: trial {b['trial']} (val {b['val_acc']:.4f})"
              + (f"; {b['note']}" if b["note"] else ""), file=file)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        path = Path(out) / "trials.csv"
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            for r in rows:
                w.writerow(["[" + ", ".join(map(repr, r[c])) + "]" if isinstance(r[c], list)
                            else ("" if r[c] is None else r[c]) for c in COLUMNS])
        tmp.replace(path)
        print(f"table in {path}", file=file)
    return rows
