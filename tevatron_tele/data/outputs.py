"""The contract of every step's output (DESIGN.md): what it was made from, what it holds, and when it may be
reused, replaced or neither. An output (one file, or files sharing a prefix such as `<prefix>.npy` + `<prefix>.ids`)
has a record beside it, `<output>.step.json`:

    {"step": "search", "contract": 1, "state": "writing" | "complete", "settings": {...},
     "inputs": {role: {file name: fingerprint}}, "outputs": {file name: fingerprint}, "counts": {...}}

Fingerprints (`data.fingerprints`) hold size, mtime and a content hash taken once. Inputs are compared by content,
so the same data at another path is the same input. A step asks `StepOutput.reusable` before its first write:

    output = StepOutput("search", [run_path], settings={"depth": 200}, inputs={"queries": [q_npy, q_ids]})
    if not output.reusable(overwrite=args.overwrite):  # True: reuse; raises when it may neither reuse nor replace
        output.begin()
        ...write the files (each through utils.atomic_path)...
        output.commit(counts={"queries": n})

- nothing at the output's names: it is written;
- files there but no record of this step: not its own, refused even with `overwrite` (OutputExistsError), kept;
- its own record, unfinished ("writing": a process stopped between its renames): written again;
- its own record, complete: reused when its settings and inputs match and each output file still has its recorded
  fingerprint; otherwise refused in one line listing what differs (OutputMismatchError), or replaced with overwrite.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..utils import OutputExistsError, PathLike, read_json_or_none, write_json
from .fingerprints import fingerprint_file

logger = logging.getLogger(__name__)

RECORD_SUFFIX = ".step.json"
CONTRACT_VERSION = 1
InputPaths = PathLike | Sequence[PathLike] | None


class OutputMismatchError(ValueError):
    """An existing output of the step was made from other settings or inputs, or changed since it was written."""


def record_path(output: PathLike) -> Path:
    """Where the record of an output is kept.

    Args:
        output: the output (a file or a prefix).

    Returns:
        `<output>.step.json`.
    """
    output = Path(output)
    return output.with_name(output.name + RECORD_SUFFIX)


def input_files(paths: InputPaths) -> dict[str, Path]:
    """The files an input names, keyed by a name that does not depend on where the input lies.

    Args:
        paths: a file, a folder (every file under it but hidden ones and step records), several files (named
            relative to their common folder), or None.

    Returns:
        {name: file}, sorted by name.
    """
    if paths is None:
        return {}
    if isinstance(paths, (str, os.PathLike)):
        path = Path(paths)
        if path.is_dir():
            files = (p for p in path.rglob("*") if p.is_file() and not _hidden(p.relative_to(path)))
            return {str(p.relative_to(path)): p for p in sorted(files)}
        return {path.name: path}
    listed = [Path(p) for p in paths]
    if not listed:
        return {}
    root = Path(os.path.commonpath([str(p.resolve().parent) for p in listed]))
    return dict(sorted((str(p.resolve().relative_to(root)), p) for p in listed))


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts) or relative.name.endswith(RECORD_SUFFIX)


def fingerprint_inputs(inputs: Mapping[str, InputPaths], previous: Mapping | None = None) -> dict[str, dict]:
    """Fingerprints of every input file, by role and name.

    Args:
        inputs: {role: paths (see `input_files`)}; a role given None is left out.
        previous: the `inputs` of an earlier record, or None; its hashes are reused while they hold.

    Returns:
        {role: {name: fingerprint}}.
    """
    out: dict[str, dict] = {}
    for role, paths in inputs.items():
        if paths is None:
            continue
        before = (previous or {}).get(role, {})
        role_out = {}
        for name, path in input_files(paths).items():
            fp = fingerprint_file(path, _same_path(before.get(name), path))
            if fp is None:
                raise OutputMismatchError(f"{path}: changed while it was read; run the step again when it is "
                                          "no longer being written")
            role_out[name] = {"path": str(path.resolve()), **fp}
        out[role] = role_out
    return out


def _same_path(entry: Mapping | None, path: Path) -> Mapping | None:
    """A stored fingerprint counts for `path` only when it was taken of that very file."""
    return entry if isinstance(entry, Mapping) and entry.get("path") == str(path.resolve()) else None


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


class StepOutput:
    """One output of a step and its record (see the module's description).

    Args:
        step: the step's name (`encode`, `search`, ...), stored in the record.
        files: the output's files (final names), all beside the record.
        settings: everything that changes what the step writes (not paths, devices or batch sizes).
        inputs: {role: paths} of what the step reads (see `input_files`).
        shown: the path the user gave, named in messages (default: the first file).
    """

    def __init__(self, step: str, files: Sequence[PathLike], *, settings: Mapping[str, Any],
                 inputs: Mapping[str, InputPaths], shown: PathLike | None = None) -> None:
        self.step = step
        self.files = [Path(f) for f in files]
        self.shown = str(shown if shown is not None else self.files[0])
        self.record = record_path(shown if shown is not None else self.files[0])
        self.settings = _jsonable(dict(settings))
        self.inputs = dict(inputs)
        self._stored: dict | None = None
        self._input_fps: dict | None = None

    def stored(self) -> dict | None:
        """The record on disk, when it is one of this step's (else None)."""
        record = read_json_or_none(self.record)
        if isinstance(record, dict) and record.get("step") == self.step and "settings" in record:
            return record
        return None

    def reusable(self, *, overwrite: bool = False) -> bool:
        """Whether the existing output can be used as it is; False when it is to be written.

        Args:
            overwrite: replace the step's own output when it no longer matches (never anything else).

        Returns:
            True to reuse the output; False to write it (call `begin`, write, then `commit`).

        Raises:
            OutputExistsError: files stand at the output's names that this step did not record as its own.
            OutputMismatchError: the step's own output differs from what it would write now, without `overwrite`.
        """
        present = [f for f in self.files if f.exists() or f.is_symlink()]
        stored = self.stored()
        self._stored = stored
        if not present:
            return False
        for f in present:
            if f.is_dir() and not f.is_symlink():
                raise OutputExistsError(f, f"is an existing folder where {self.step} writes a file; it is left as it "
                                           "is: give the file's own path (e.g. inside the folder)")
        if stored is None:
            raise OutputExistsError(present[0], f"exists, and {self.step} has no record of writing it "
                                                f"({self.record.name}); it is left as it is: give another output "
                                                "path, or remove it yourself")
        if stored.get("state") != "complete":
            logger.info("%s: an unfinished output of an earlier %s; writing it again", self.shown, self.step)
            return False
        diffs = self.differences(stored)
        if not diffs:
            logger.info("%s exists, made by %s from the same settings and inputs; reusing it", self.shown, self.step)
            return True
        if overwrite:
            logger.info("%s differs (%s); replacing it (--overwrite)", self.shown, "; ".join(diffs))
            return False
        raise OutputMismatchError(f"{self.shown} exists but was made otherwise: {'; '.join(diffs)}; pass "
                                  "--overwrite to replace it, or give another output path")

    def differences(self, stored: Mapping) -> list[str]:
        """What differs between a stored record and this step's settings, inputs and output files now.

        Args:
            stored: the record.

        Returns:
            One short phrase per difference; empty when the output may be reused.
        """
        diffs = [f"setting {k}: {stored['settings'].get(k)!r} -> {self.settings.get(k)!r}"
                 for k in sorted(set(stored["settings"]) | set(self.settings))
                 if stored["settings"].get(k) != self.settings.get(k)]
        self._input_fps = fingerprint_inputs(self.inputs, stored.get("inputs"))
        diffs += input_differences(stored.get("inputs", {}), self._input_fps)
        for name, change in output_changes(stored.get("outputs", {}), self.record.parent).items():
            said = "missing" if change == "missing" else f"changed since {self.step} wrote it"
            diffs.append(f"output {name}: {said}")
        return diffs

    def begin(self) -> None:
        """Record, before the first write, that this output is being written (so a stopped run's files are its own)."""
        fps = self._input_fps if self._input_fps is not None else fingerprint_inputs(
            self.inputs, (self._stored or {}).get("inputs"))
        self._input_fps = fps
        write_json(self.record, {"step": self.step, "contract": CONTRACT_VERSION, "state": "writing",
                                 "settings": self.settings, "inputs": fps})

    def commit(self, counts: Mapping[str, Any] | None = None) -> dict:
        """Record the written output: its files' fingerprints and counts; the output is complete.

        Args:
            counts: what it holds (entries, queries, ...), stored as they are.

        Returns:
            The record written.
        """
        if self._input_fps is None:
            raise RuntimeError("StepOutput.commit without begin")
        outputs = fingerprint_outputs(self.files, self.record.parent)
        record = {"step": self.step, "contract": CONTRACT_VERSION, "state": "complete", "settings": self.settings,
                  "inputs": self._input_fps, "outputs": outputs, "counts": _jsonable(dict(counts or {})),
                  "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        write_json(self.record, record)
        return record


def fingerprint_outputs(files: Sequence[PathLike], root: PathLike) -> dict[str, dict]:
    """Fingerprints of the files a step wrote (those that exist), named relative to `root`.

    Args:
        files: the output's files.
        root: what the names are relative to (the record's folder, or the run folder).

    Returns:
        {relative name: fingerprint}.
    """
    root = Path(root)
    return {str(Path(f).relative_to(root)): fingerprint_file(f) for f in files if Path(f).is_file()}


def output_changes(stored: Mapping[str, Mapping], root: PathLike) -> dict[str, str]:
    """Which recorded output files no longer hold their fingerprint, and how (rehashed only if the stat changed).

    Args:
        stored: {relative name: fingerprint} as `fingerprint_outputs` recorded them.
        root: the folder the names are relative to.

    Returns:
        {name: 'missing' | 'N -> M bytes' | 'other content, same size'} of the changed files; empty if none.
    """
    changes = {}
    for name, fp in stored.items():
        path = Path(root) / name
        if not path.is_file():
            changes[name] = "missing"
        elif (now := fingerprint_file(path, fp)) is None or now["hash"] != fp.get("hash"):
            size = path.stat().st_size
            changes[name] = (f"{fp.get('size')} -> {size} bytes" if size != fp.get("size")
                             else "other content, same size")
    return changes


def input_differences(stored: Mapping, now: Mapping) -> list[str]:
    """`input ROLE: ...` for each role whose files differ in content (paths do not count).

    Args:
        stored, now: {role: {name: fingerprint}} (`fingerprint_inputs`) recorded earlier, and taken now.

    Returns:
        One phrase per role that differs, naming its changed files.
    """
    diffs = []
    for role in sorted(set(stored) | set(now)):
        before, after = stored.get(role), now.get(role)
        if before is None or after is None:
            diffs.append(f"input {role}: {'not given before' if before is None else 'not given now'}")
            continue
        changed = sorted(n for n in set(before) | set(after)
                         if (before.get(n) or {}).get("hash") != (after.get(n) or {}).get("hash"))
        if changed:
            names = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
            diffs.append(f"input {role}: other content ({names})")
    return diffs
