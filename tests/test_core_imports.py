"""The core (everything outside `backends/`) imports with no Tevatron at all, and only `backends/` imports it."""
from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import tevatron_tele

PACKAGE_DIR = Path(tevatron_tele.__file__).parent

BLOCK_TEVATRON = """
import importlib.abc, sys
class _NoTevatron(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tevatron" or name.startswith("tevatron."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, _NoTevatron())
"""


def core_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages([str(PACKAGE_DIR)], prefix="tevatron_tele."):
        if not info.name.startswith("tevatron_tele.backends.tevatron_"):
            names.append(info.name)
    return sorted(names)


def test_core_modules_cover_the_package():
    names = core_modules()
    for expected in ("tevatron_tele.data.pool_sampler", "tevatron_tele.retrieval.encode", "tevatron_tele.mining.tele",
                     "tevatron_tele.runner.episodes", "tevatron_tele.evaluation.analysis", "tevatron_tele.driver.train",
                     "tevatron_tele.training.train", "tevatron_tele.backends"):
        assert expected in names


def test_every_core_module_imports_without_tevatron():
    script = BLOCK_TEVATRON + f"""
import importlib
for name in {core_modules()!r}:
    importlib.import_module(name)
assert "tevatron" not in sys.modules
from tevatron_tele.backends import BackendUnavailableError, installed_backend
try:
    installed_backend()
except BackendUnavailableError as e:
    print("refused:", e)
else:
    raise SystemExit("installed_backend() should refuse when no Tevatron is importable")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "refused: no Tevatron is installed" in proc.stdout


def test_only_backends_import_tevatron():
    offenders = []
    for path in PACKAGE_DIR.rglob("*.py"):
        if "backends" in path.relative_to(PACKAGE_DIR).parts:
            continue
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith(("import tevatron", "from tevatron ", "from tevatron.")):
                offenders.append(f"{path.relative_to(PACKAGE_DIR)}:{line_no}: {stripped}")
    assert not offenders, offenders
