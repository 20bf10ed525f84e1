"""Every exported function and every driver's run() says what it takes and returns (Args / Returns)."""
from __future__ import annotations

import importlib
import inspect
import pkgutil

import tevatron_tele
import tevatron_tele.driver


def _undocumented(obj) -> bool:
    """No Args section, or no Returns section for a function that returns something."""
    doc = inspect.getdoc(obj) or ""
    returns = inspect.signature(obj).return_annotation not in (None, "None")
    return "Args:" not in doc or (returns and "Returns:" not in doc)


def test_exported_functions_are_documented():
    missing = []
    for name, module in tevatron_tele._EXPORTS.items():
        obj = getattr(importlib.import_module(module), name)
        if inspect.isfunction(obj) and _undocumented(obj):
            missing.append(name)
        elif inspect.isclass(obj) and not inspect.getdoc(obj):
            missing.append(name)
    assert not missing, f"exported without Args/Returns: {missing}"


def test_every_driver_has_a_documented_run():
    missing = []
    for info in pkgutil.iter_modules(tevatron_tele.driver.__path__):
        module = importlib.import_module(f"tevatron_tele.driver.{info.name}")
        run = getattr(module, "run", None)
        if run is None or _undocumented(run):
            missing.append(info.name)
    assert not missing, f"drivers without a documented run(args): {missing}"
