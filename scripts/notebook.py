#!/usr/bin/env python3
"""Executes examples/notebook.ipynb top to bottom in a real Jupyter kernel.

    python3 scripts/notebook.py run     # the full run (about 12 minutes); writes its outputs
                                        # into examples/notebook.ipynb
    python3 scripts/notebook.py check   # CI: a short run (fewer iterations), checked

Both execute in a scratch directory (the notebook's files, such as the ONNX
export, land there) with $SCRATCHNET_DATA pointing at the bundled MNIST.
`check` sets the cell tagged `parameters` for a short run and fails unless:
no cell raised; the cell tagged `final` printed a test accuracy of at least
98%; every cell tagged `figure` produced an image; the cells tagged
`deterministic` printed exactly what the committed notebook holds (so the
committed outputs come from the current code); and the committed notebook
itself holds a full run (every code cell executed, its final accuracy at
least 98%).

Needs: pip install "./python[notebook]" nbclient nbformat
"""

import argparse
import copy
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "notebook.ipynb"
FILES = ["photo-of-a-3.jpg"]
SHORT = {"FINAL_ITERS": 4000, "SEARCH_TRIALS": 3, "SEARCH_ITERS": 100}
LEAST_ACCURACY = 98.0


def tagged(nb, tag):
    return [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]


def stdout(cell):
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def execute(nb, timeout):
    os.environ.setdefault("SCRATCHNET_DATA", str(ROOT / "data" / "mnist"))
    with tempfile.TemporaryDirectory(prefix="scratchnet-notebook-") as work:
        for name in FILES:
            shutil.copy(NOTEBOOK.parent / name, work)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": work}}, store_widget_state=True)
        client.execute()
    return nb


def set_parameters(nb, values):
    """The `parameters` cell with `values` assigned after its own lines."""
    nb = copy.deepcopy(nb)
    (cell,) = tagged(nb, "parameters")
    lines = "".join(f"\n{k} = {v!r}" for k, v in values.items())
    cell.source += "\n# Set by scripts/notebook.py check:" + lines
    return nb


def final_accuracy(nb):
    (cell,) = tagged(nb, "final")
    found = re.search(r"test accuracy: ([0-9.]+)%", stdout(cell))
    return float(found.group(1)) if found else None


def problems(ran, committed):
    found = []
    for i, cell in enumerate(ran.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"cell {i} raised {out['ename']}: {out['evalue']}")
    acc = final_accuracy(ran)
    if acc is None or acc < LEAST_ACCURACY:
        found.append(f"the final model's test accuracy is {acc}, expected at least "
                     f"{LEAST_ACCURACY}%")
    for cell in tagged(ran, "figure"):
        if not any("image/png" in o.get("data", {}) for o in cell.get("outputs", [])):
            found.append(f"the figure cell `{cell.source.splitlines()[0]}` made no image")
    for ours, theirs in zip(tagged(ran, "deterministic"), tagged(committed, "deterministic")):
        if stdout(ours) != stdout(theirs):
            found.append(f"the cell `{ours.source.splitlines()[0]}` printed\n{stdout(ours)}"
                         f"where the committed notebook holds\n{stdout(theirs)}"
                         "(re-run: python3 scripts/notebook.py run)")
    unrun = [i for i, c in enumerate(committed.cells)
             if c.cell_type == "code" and c.get("execution_count") is None]
    if unrun:
        found.append(f"the committed notebook's code cells {unrun} were not executed "
                     "(python3 scripts/notebook.py run)")
    committed_acc = final_accuracy(committed)
    if committed_acc is None or committed_acc < LEAST_ACCURACY:
        found.append(f"the committed notebook's final test accuracy is {committed_acc}")
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["run", "check"])
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = ap.parse_args()
    committed = nbformat.read(NOTEBOOK, as_version=4)
    if args.what == "run":
        nb = execute(copy.deepcopy(committed), args.timeout)
        found = problems(nb, nb)
        if not found:
            nbformat.write(nb, NOTEBOOK)
            print(f"{NOTEBOOK.relative_to(ROOT)}: executed; final test accuracy "
                  f"{final_accuracy(nb)}%")
    else:
        nb = execute(set_parameters(committed, SHORT), args.timeout)
        found = problems(nb, committed)
        if not found:
            print(f"{NOTEBOOK.relative_to(ROOT)}: short run ({SHORT}) clean; final test "
                  f"accuracy {final_accuracy(nb)}%")
    for problem in found:
        print(f"notebook: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
