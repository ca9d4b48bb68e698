"""Fixtures shared by the Python tests: a real PostgreSQL server."""

import pytest

import pgcluster
from skips import missing


@pytest.fixture(scope="module")
def postgres():
    """A throwaway cluster on 127.0.0.1, started once for the tests of a module and
    removed after it: initdb and pg_ctl as an unprivileged user on a free port."""
    bin_dir = pgcluster.bindir()
    if bin_dir is None:
        missing("PostgreSQL's initdb and pg_ctl are not installed (Debian: postgresql)")
    cluster = pgcluster.Cluster(bin_dir)
    cluster.start()
    yield cluster
    cluster.remove()
