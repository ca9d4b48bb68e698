"""The README's Python blocks and its `scratchnet-tune` line, run as a user
runs them, so that they cannot go stale (tests/it/readme.rs runs its
`scratchnet` lines; the `pip install` lines are CI's own steps)."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

from skips import need

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
TUNE = Path(sys.executable).parent / "scratchnet-tune"


def blocks(language):
    return re.findall(rf"^```{language}\n(.*?)^```", README, re.S | re.M)


def test_every_python_block_of_the_readme_runs(tmp_path, monkeypatch, capsys):
    code = blocks("python")
    assert code, "the README has Python"
    monkeypatch.chdir(tmp_path)
    for block in code:
        exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    # The README's example trains 3 epochs of the default preset: 97.97%
    # test accuracy (2026-12-07).
    accuracy = float(re.search(r"test accuracy: ([0-9.]+)", out).group(1))
    assert accuracy >= 0.97, out


def test_the_readme_s_search_runs(tmp_path):
    need("optuna", "tune")
    lines = [line.split(" # ")[0].strip() for block in blocks("sh")
             for line in block.splitlines() if line.startswith("scratchnet-tune ")]
    assert lines, "the README has a scratchnet-tune line"
    for line in lines:
        args = shlex.split(line)[1:]
        # Shortened: 2 trials of 1 epoch.
        args[args.index("--trials") + 1] = "2"
        args[args.index("--epochs") + 1] = "1"
        done = subprocess.run([str(TUNE), *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
