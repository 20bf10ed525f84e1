"""Quiet by default: the libraries' own progress bars (transformers' "Loading weights" at every model load) are off
in every driver unless `--verbose` (or TELE_VERBOSE=1); the package's own bars are not affected."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from transformers.utils import logging as transformers_logging

from tevatron_tele import utils

BAR = "Loading weights"


@pytest.fixture
def restore_library_bars(monkeypatch):
    """Leave the libraries' switches as they were for the other tests of this process."""
    for name in (*utils._LIBRARY_BAR_SWITCHES, utils.VERBOSE_ENV):
        monkeypatch.delenv(name, raising=False)
    was_on = transformers_logging.is_progress_bar_enabled()
    yield
    if was_on:
        transformers_logging.enable_progress_bar()


def _encode_queries(tiny_model_dir, synthetic_dir, out, *extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (*utils._LIBRARY_BAR_SWITCHES, utils.VERBOSE_ENV)}
    proc = subprocess.run([sys.executable, "-m", "tevatron_tele.driver.encode", "--model_dir", str(tiny_model_dir),
                           "--collection", str(synthetic_dir), "--output", str(out), "--encode", "queries",
                           "--split", "test", "--q_max_len", "12", "--device", "cpu", *extra],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_setup_logging_turns_the_library_bars_off_unless_verbose(restore_library_bars, monkeypatch):
    transformers_logging.enable_progress_bar()
    monkeypatch.setenv(utils.VERBOSE_ENV, "1")
    utils.setup_logging()
    assert transformers_logging.is_progress_bar_enabled()  # verbose: left as they were
    monkeypatch.setenv(utils.VERBOSE_ENV, "0")
    utils.setup_logging()
    assert not transformers_logging.is_progress_bar_enabled()
    assert all(os.environ[name] == "1" for name in utils._LIBRARY_BAR_SWITCHES)  # for subprocesses too


def test_a_driver_loads_its_model_quietly_and_verbose_brings_the_bar_back(tiny_model_dir, synthetic_dir, tmp_path):
    quiet = _encode_queries(tiny_model_dir, synthetic_dir, tmp_path / "quiet" / "q")
    assert BAR not in quiet.stderr + quiet.stdout
    assert (tmp_path / "quiet" / "q.npy").exists()
    verbose = _encode_queries(tiny_model_dir, synthetic_dir, tmp_path / "verbose" / "q", "--verbose")
    assert BAR in verbose.stderr
