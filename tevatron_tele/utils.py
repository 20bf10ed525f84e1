"""Small helpers shared by every step: atomic outputs, JSON files, logging set-up."""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

PathLike = str | os.PathLike


class OutputExistsError(FileExistsError):
    """An output path names something the step did not write (a folder, or a file where a folder goes); it is left as it
    is. Its message names the user's path: `PATH: what stands there and what to do`."""

    def __init__(self, path: PathLike, problem: str) -> None:
        super().__init__(errno.EEXIST, problem, str(path))


def _check_final(final: Path, replaces: Callable[[Path], bool] | None) -> None:
    """Refuse a folder at `final` unless `replaces` says it is the step's own earlier output (or, for a folder output,
    it is empty)."""
    if not final.is_dir() or final.is_symlink():
        return
    if replaces is None:
        raise OutputExistsError(final, "is an existing folder; an output file is written at this name, and the "
                                       "folder is left as it is: give the file's own path (e.g. inside the folder)")
    if not replaces(final) and any(final.iterdir()):
        raise OutputExistsError(final, "is an existing folder that this step did not write; it is left as it is: "
                                       "give another output folder, or remove this one yourself")


@contextlib.contextmanager
def atomic_path(final: PathLike, *, replaces: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield a temporary path (file or folder) beside `final`; rename it to `final` only if the block succeeds.

    A killed process leaves at most a `.tmp-*` sibling, never a half-written `final`, so a rerun can trust anything at
    `final`. Nothing the step did not write is removed: an existing folder at `final` is refused (OutputExistsError)
    before the block runs unless `replaces` allows it, and a folder is never renamed over an existing file.

    Args:
        final: the output's path.
        replaces: for a folder output, whether an existing folder at `final` is the step's own earlier output (e.g. it
            holds its marker file), to be replaced; an empty one is replaced too. None: a file output.

    Returns:
        A context manager yielding the temporary path to write.
    """
    final = Path(final)
    _check_final(final, replaces)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    target = tmp / final.name
    try:
        try:
            yield target
        except OSError as e:
            if e.filename is None and e.errno is not None:  # a write that names no file (a full disk): the output's
                e.filename = str(final)
            raise
        if not target.exists():
            raise FileNotFoundError(f"nothing was written to {target} for {final}")
        _check_final(final, replaces)  # again: something may have appeared there while the block ran
        if final.is_dir() and not final.is_symlink():
            shutil.rmtree(final)
        elif target.is_dir() and (final.exists() or final.is_symlink()):
            raise OutputExistsError(final, "is an existing file where a folder is written; it is left as it is: "
                                           "give another output folder, or remove this file yourself")
        os.replace(target, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically.

    Args:
        path: the file.
        obj: a JSON-ready value (anything else is written as its `str`).
    """
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")


class InputFileError(ValueError):
    """A bad input file; the message names file, line and field: `FILE:LINE: field 'F': problem`."""


def input_error(path: PathLike, line: int | str | None, field_name: str, problem: str) -> InputFileError:
    """An InputFileError whose message reads `FILE:LINE: field 'F': problem` (`FILE: field ...` without a line).

    Args:
        path: the file, as the user named it.
        line: 1-based line number (or another position such as "item 3"); None for the whole file.
        field_name: the file format's own name of the field, or `<json>`, `<utf-8>`, `<columns>`, `<file>`.
        problem: what is wrong (and what to do, where that helps).

    Returns:
        The exception, to be raised by the caller.
    """
    return InputFileError(location(path, line, field_name, problem))


def location(path: PathLike, line: int | str | None, field_name: str, problem: str) -> str:
    """`FILE:LINE: field 'F': problem`, the one shape of every input-error message.

    Args:
        path, line, field_name, problem: as for `input_error` (no `:LINE` when `line` is None).

    Returns:
        The message.
    """
    where = f"{path}" if line is None else f"{path}:{line}"
    return f"{where}: field '{field_name}': {problem}"


ErrorFactory = Callable[[PathLike, int | str | None, str, str], Exception]


def _utf8_problem(byte: int, file_offset: int, line_offset: int) -> str:
    return (f"invalid UTF-8: byte 0x{byte:02x} at byte offset {file_offset} of the file "
            f"(byte {line_offset + 1} of the line); save the file as UTF-8")


def iter_lines(path: PathLike, error: ErrorFactory = input_error) -> Iterator[tuple[int, str]]:
    """(line number, text without its line ending) for each line of a UTF-8 text file; a leading byte-order mark is
    dropped, CRLF endings are accepted.

    Args:
        path: the file.
        error: builds the calling reader's exception from (path, line, field, problem): undecodable bytes raise
            `error(path, line, "<utf-8>", problem)` naming the byte offset in the file.

    Returns:
        An iterator over (1-based line number, line text).
    """
    offset = 0
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise error(path, line_no, "<utf-8>", _utf8_problem(raw[e.start], offset + e.start, e.start)) from None
            if line_no == 1 and text.startswith("\ufeff"):
                text = text[1:]
            offset += len(raw)
            yield line_no, text.rstrip("\r\n")


def read_text(path: PathLike, error: ErrorFactory = input_error) -> str:
    """The whole of a UTF-8 text file, without a leading byte-order mark; undecodable bytes raise
    `error(path, line, "<utf-8>", problem)` naming the line and byte offset.

    Args:
        path: the file.
        error: builds the exception of the calling reader from (path, line, field, problem).

    Returns:
        The text.
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line_start = data.rfind(b"\n", 0, e.start) + 1
        line = data.count(b"\n", 0, e.start) + 1
        raise error(path, line, "<utf-8>", _utf8_problem(data[e.start], e.start, e.start - line_start)) from None
    return text[1:] if text.startswith("\ufeff") else text


def iter_jsonl(path: PathLike, error: ErrorFactory = input_error) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSON-lines file (a byte-order mark and CRLF endings accepted).

    A malformed line, or one that is not a JSON object, raises `error(path, line, "<json>", problem)`, so each reader
    reports file, line and field with its own exception type; so do undecodable bytes (field `<utf-8>`).

    Args:
        path: the file.
        error: builds the exception of the calling reader from (path, line, field, problem).

    Returns:
        An iterator over (1-based line number, object).
    """
    for line_no, line in iter_lines(path, error):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise error(path, line_no, "<json>", f"malformed JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(obj, dict):
            raise error(path, line_no, "<json>", f"expected an object, got {type(obj).__name__}")
        yield line_no, obj


def read_json(path: PathLike, error: ErrorFactory = input_error) -> Any:
    """A JSON file's value; malformed JSON or undecodable bytes raise `error(path, line, field, problem)`.

    Args:
        path: the file.
        error: builds the exception from (path, line, field, problem).

    Returns:
        The decoded value.
    """
    text = read_text(path, error)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        problem = "empty file" if not text.strip() else f"malformed JSON ({e.msg} at column {e.colno})"
        raise error(path, e.lineno, "<json>", problem) from None


def read_json_or_none(path: PathLike) -> Any:
    """A JSON file's value, or None when it is missing, unreadable or malformed (a cache's own files, where any of these
    means "not there yet").

    Args:
        path: the file.

    Returns:
        The decoded value, or None.
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None


VERBOSE_ENV = "TELE_VERBOSE"
# The switches of the libraries' own progress bars: Hugging Face Hub's (which transformers follows when it is
# imported: "Loading weights", "Writing model shards") and datasets' ("Generating train split", "Map").
_LIBRARY_BAR_SWITCHES = ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS")


def verbose_from_env() -> bool:
    """Whether TELE_VERBOSE asks for the libraries' own progress bars.

    Returns:
        True when it is set, and not "" or "0".
    """
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def quiet_library_progress(verbose: bool | None = None) -> bool:
    """Turn off the progress bars libraries draw for their own work (transformers' "Loading weights", "Writing model
    shards", datasets' table building) unless verbose; our steps' own bars are kept. Subprocesses inherit the setting.

    Args:
        verbose: keep the libraries' bars; None reads TELE_VERBOSE (set by a driver's `--verbose`, see `cli`).

    Returns:
        True when the bars were turned off.
    """
    if verbose if verbose is not None else verbose_from_env():
        return False
    for name in _LIBRARY_BAR_SWITCHES:  # read when each library is imported, here and in subprocesses
        os.environ[name] = "1"
    # a library already imported read its switch then: turn it off directly (this module never loads either)
    if "transformers.utils.logging" in sys.modules:
        sys.modules["transformers.utils.logging"].disable_progress_bar()
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()
    return True


def setup_logging(level: int = logging.INFO) -> None:
    """Tevatron-style log lines (a no-op when the root logger is already configured), and the libraries' own progress
    bars off unless TELE_VERBOSE / `--verbose` (`quiet_library_progress`).

    Args:
        level: the root logger's level.
    """
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        level=level,
    )
    quiet_library_progress()
