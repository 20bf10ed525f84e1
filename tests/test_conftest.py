"""Under CI=true a test cannot pass by being skipped: a missing ../shared/data, Pyserini or MiniLM, a skipif or a
module skipped as a whole fails; elsewhere they skip."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

SAMPLE = '''
import pytest

def test_needs_shared_data(shared_data):
    pass

def test_needs_scifact(scifact_dir):
    pass

@pytest.mark.skipif(True, reason="some input is missing")
def test_skipped_by_a_mark():
    pass

def test_runs():
    pass
'''

MODULE_SKIP = '''
import pytest

pytest.skip("a whole module without its input", allow_module_level=True)

def test_never_collected():
    pass
'''


def _pytest(target: Path, ci: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["TELE_SHARED_DATA"] = str(target.parent / "no-shared-data")
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", str(target)],
                          env=env, capture_output=True, text=True, timeout=300, cwd=target.parent)


@pytest.fixture(scope="module")
def sample_tests(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sample")
    shutil.copy(HERE / "conftest.py", folder / "conftest.py")
    (folder / "test_sample.py").write_text(SAMPLE)
    (folder / "test_module_skip.py").write_text(MODULE_SKIP)
    return folder


def test_missing_inputs_skip_outside_ci(sample_tests):
    proc = _pytest(sample_tests, None)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert proc.stdout.splitlines()[-1].startswith("1 passed, 4 skipped"), proc.stdout[-3000:]


def test_missing_inputs_fail_in_ci(sample_tests):
    proc = _pytest(sample_tests / "test_sample.py", "true")
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert proc.stdout.splitlines()[-1].startswith("1 passed, 3 errors"), proc.stdout[-3000:]
    for name in ("test_needs_shared_data", "test_needs_scifact", "test_skipped_by_a_mark"):
        assert name in proc.stdout, (name, proc.stdout[-3000:])
    assert "shared data not found" in proc.stdout and "some input is missing" in proc.stdout
    proc = _pytest(sample_tests / "test_module_skip.py", "true")
    assert proc.returncode != 0 and "a whole module without its input" in proc.stdout, proc.stdout[-3000:]


def test_pyserini_fixture_fails_in_ci_when_missing(tmp_path):
    """The pyserini fixture: a skip outside CI, a failure under CI=true, when it cannot be imported."""
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['pyserini'] = None\n")
    (tmp_path / "test_p.py").write_text("def test_p(pyserini):\n    pass\n")
    for ci, code, word in ((None, 0, "1 skipped"), ("true", 1, "1 error")):
        env = {k: v for k, v in os.environ.items() if k != "CI"}
        env["PYTHONPATH"] = str(tmp_path)
        if ci:
            env["CI"] = ci
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)], env=env,
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert proc.returncode == code and word in proc.stdout, proc.stdout[-3000:]
