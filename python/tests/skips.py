"""The one way a Python test skips: for want of something a development
machine may lack. The skip is written to `$SCRATCHNET_SKIP_LOG` (which
`.ci/run` prints at its end); under CI (`CI` set), which installs everything
the tests use, it is a failure instead, so nothing passes unchecked."""

import importlib
import os

import pytest


def missing(why):
    """Skips the calling test (or module) for want of `why`."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "python/tests").split(" ")[0]
    if os.environ.get("CI"):
        pytest.fail(f"{test}: {why}, but CI should have it", pytrace=False)
    log = os.environ.get("SCRATCHNET_SKIP_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{test}: {why}\n")
    pytest.skip(why, allow_module_level=True)


def need(module, extra):
    """Imports `module`, which the `extra` of python/pyproject.toml installs."""
    try:
        return importlib.import_module(module)
    except ImportError:
        missing(f"{module} is not installed (pip install \"./python[{extra}]\")")
