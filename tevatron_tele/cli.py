"""The one error path of the `python -m tevatron_tele.driver.*` commands.

A known input error (a bad file, flag or setting: the package's CollectionError, PoolError, RunFileError, ConfigError,
ConfigMismatchError, any ValueError, a named input that is missing or a directory, the file system's refusal: read-only,
full, no permission) prints one line naming the user's path (never a step's temporary name) to stderr,
`error: FILE:LINE: field 'F': what is wrong`, and exits with status 2, the status of a usage error (HfArgumentParser's
own usage errors keep theirs). `--debug` or `TELE_DEBUG=1` shows the full traceback instead; anything else (a bug, an
out-of-memory) always keeps it. `--verbose` (or `TELE_VERBOSE=1`) keeps the libraries' own progress bars (transformers'
"Loading weights" at every model load, ...), off by default (`utils.quiet_library_progress`).

    if __name__ == "__main__":
        run_cli(main)
"""
from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from .backends import BackendUnavailableError
from .retrieval.java import PyseriniUnavailableError
from .utils import VERBOSE_ENV

EXIT_INPUT_ERROR = 2
DEBUG_FLAG = "--debug"
VERBOSE_FLAG = "--verbose"

# Missing or unusable input paths, and the package's refusals of a missing optional part.
_PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)
_KNOWN_TYPES = (ValueError, *_PATH_ERRORS, BackendUnavailableError, PyseriniUnavailableError)
# What the file system answers about a path the user named (or one beside it): a read-only file system, no space
# left, no permission, a name too long. Other OSErrors (a broken device, a bug) keep their traceback.
_PATH_ERRNOS = frozenset({errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG,
                          errno.EFBIG, errno.ELOOP})
# A step's temporary name (utils.atomic_path: DIR/.tmp-NAME-XXXXXXXX/NAME, or DIR/.tmp-NAME-XXXXXXXX): the user
# named DIR/NAME.
_TEMPORARY = re.compile(r"(?P<dir>^|.*/)\.tmp-(?P<name>[^/]+)-[A-Za-z0-9_]{8}(?:/(?P=name))?(?P<rest>/.*)?$")


def is_input_error(exc: BaseException) -> bool:
    """Whether `exc` is a known input error, reported in one line rather than a traceback.

    Args:
        exc: the exception a driver raised.

    Returns:
        True for the package's input errors, ValueErrors and missing / unusable named paths.
    """
    return isinstance(exc, _KNOWN_TYPES) or (isinstance(exc, OSError) and exc.errno in _PATH_ERRNOS)


def user_path(filename: str) -> str:
    """The path the user named for a step's temporary file or folder (see utils.atomic_path); others unchanged.

    Args:
        filename: the path an OSError names.

    Returns:
        `DIR/NAME` for `DIR/.tmp-NAME-XXXXXXXX/NAME[/...]` (with what follows), else `filename`.
    """
    m = _TEMPORARY.match(filename)
    return f"{m['dir']}{m['name']}{m['rest'] or ''}" if m else filename


def format_error(exc: BaseException) -> str:
    """The one line that reports `exc`: its message with line breaks folded, `error: ` in front.

    Args:
        exc: the exception.

    Returns:
        `error: ...`, a single line.
    """
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        message = f"{user_path(str(exc.filename))}: {exc.strerror}"
    else:
        message = str(exc) or type(exc).__name__
    parts = [p.strip() for p in message.splitlines() if p.strip()]
    folded = ""
    for p in parts:  # "Differences (stored -> given):\n  a\n  b" -> "Differences (stored -> given): a; b"
        folded += p if not folded else (" " if folded.endswith(":") else "; ") + p
    return f"error: {folded}"


def debug_from_env() -> bool:
    """Whether TELE_DEBUG asks for tracebacks.

    Returns:
        True when it is set, and not "" or "0".
    """
    return os.environ.get("TELE_DEBUG", "") not in ("", "0")


def strip_debug_flag(argv: list[str], *, keep_with_value: bool = False) -> list[str]:
    """`argv` without `--debug`, so that the driver's parser never sees it.

    Args:
        argv: the command-line arguments.
        keep_with_value: keep a `--debug VALUE` (a driver whose parser has its own `--debug`, such as the Trainer's
            `--debug underflow_overflow`); only a bare `--debug` is removed.

    Returns:
        The arguments left for the driver.
    """
    out = []
    for i, arg in enumerate(argv):
        bare = i + 1 == len(argv) or argv[i + 1].startswith("-")
        if arg == DEBUG_FLAG and (bare or not keep_with_value):
            continue
        out.append(arg)
    return out


def run_cli(main: Callable[[], Any], *, debug_flag_has_value: bool = False) -> None:
    """Run a driver's `main()` with the one error path: a known input error becomes one line and exit status 2.

    `--debug` and `--verbose` are taken out of sys.argv before `main` parses it; `--verbose` sets TELE_VERBOSE=1 for the
    driver and its subprocesses.

    Args:
        main: the driver's entry point, called without arguments (it reads sys.argv).
        debug_flag_has_value: the driver's parser has a `--debug VALUE` of its own (see `strip_debug_flag`).
    """
    if VERBOSE_FLAG in sys.argv[1:]:
        sys.argv[1:] = [a for a in sys.argv[1:] if a != VERBOSE_FLAG]
        os.environ[VERBOSE_ENV] = "1"
    args = sys.argv[1:]
    sys.argv[1:] = strip_debug_flag(args, keep_with_value=debug_flag_has_value)
    debug = len(sys.argv) - 1 < len(args) or debug_from_env()
    try:
        main()
    except SystemExit as e:
        if isinstance(e.code, str) and not debug:  # a driver's own `raise SystemExit("message")`
            print(format_error(SystemExit(e.code)), file=sys.stderr)
            raise SystemExit(EXIT_INPUT_ERROR) from None
        raise
    except Exception as e:
        if debug or not is_input_error(e):
            raise
        print(format_error(e), file=sys.stderr)
        raise SystemExit(EXIT_INPUT_ERROR) from None
