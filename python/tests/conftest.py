"""Fixtures shared by the Python tests: a real PostgreSQL server."""

import os

import pytest

import pgcluster


def _missing(why):
    # CI has PostgreSQL (.ci/run installs it): missing there is a failure.
    if os.environ.get("CI"):
        pytest.fail(f"{why}, but CI should have it")
    log = os.environ.get("SCRATCHNET_SKIP_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"python/tests/test_tune.py: {why}\n")
    pytest.skip(why)


@pytest.fixture(scope="module")
def postgres():
    """A throwaway cluster on 127.0.0.1, started once for the tests of a module and
    removed after it: initdb and pg_ctl as an unprivileged user on a free port."""
    bin_dir = pgcluster.bindir()
    if bin_dir is None:
        _missing("PostgreSQL's initdb and pg_ctl are not installed (Debian: postgresql)")
    cluster = pgcluster.Cluster(bin_dir)
    cluster.start()
    yield cluster
    cluster.remove()
