"""The run folder of the episode runner: its manifest, one process at a time, and step bookkeeping.

Paths are `data.run_folder.RunLayout`'s. The step contract (DESIGN.md), for the runner's own steps: a step's output
files are fingerprinted when written (the manifest's `steps[<step>].outputs`, `data.outputs.fingerprint_outputs`), and a
finished output that no longer holds its fingerprint is refused, never removed; the collections' files are fingerprinted
into the manifest's `collections`, so a resume is compared with its data by content (the same data at another path is
accepted).
"""
from __future__ import annotations

import datetime
import logging
import os
import platform
import shutil
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from filelock import FileLock, Timeout

from ..data.outputs import (
    OutputMismatchError,
    fingerprint_inputs,
    fingerprint_outputs,
    input_differences,
    input_files,
    output_changes,
)
from ..data.run_folder import RunLayout, episode_number
from ..utils import PathLike, read_json, read_json_or_none, write_json
from .config import EpisodeArguments, config_differences

logger = logging.getLogger(__name__)

# settings naming data: compared by name and content (the manifest's `collections` fingerprints), not by full path,
# once the manifest holds those fingerprints. The name stays compared: it names the rankings, qrels and eval.json keys.
DATA_PATH_FIELDS = ("collection", "eval_collections", "passages")
# the run folders this process holds (resolved path -> lock), so that it may open one of them again
_HELD: dict[str, FileLock] = {}


class ConfigMismatchError(ValueError):
    """A run folder holds a run made with other settings."""


class RunFolderBusyError(ValueError):
    """Another process is running in the run folder."""


def library_versions() -> dict[str, str]:
    """The versions of Python and of the libraries a run's results depend on, for the manifest.

    Returns:
        {"python": version, package: version, ...} of the packages installed.
    """
    out = {"python": platform.python_version()}
    for name in ("tevatron-tele", "tevatron", "torch", "transformers", "datasets", "faiss-cpu", "numpy",
                 "ir-measures", "pyserini"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


class RunFolder(RunLayout):
    """A run folder as the runner holds it: `RunLayout`'s paths, the manifest, the lock and the steps' timings."""

    # ---- one process per folder ----
    def lock(self) -> None:
        """Hold the run folder for this process until it exits (or `unlock`); the same process may lock it again.

        Raises:
            RunFolderBusyError: another process holds it; the message names that process's id.
        """
        key = str(self.root.resolve())
        if key in _HELD:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.lock_path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            try:
                holder = self.lock_pid_path.read_text(encoding="utf-8").strip()
            except OSError:
                holder = "unknown"
            raise RunFolderBusyError(f"{self.root} is in use by another run (pid {holder or 'unknown'}); wait for it "
                                     "to finish, or give another --output_dir") from None
        self.lock_pid_path.write_text(f"{os.getpid()}\n", encoding="utf-8")
        _HELD[key] = lock

    def unlock(self) -> None:
        """Let another process run in the folder (a no-op when this process does not hold it)."""
        lock = _HELD.pop(str(self.root.resolve()), None)
        if lock is not None:
            self.lock_pid_path.unlink(missing_ok=True)
            lock.release()

    # ---- manifest ----
    def open(self, args: EpisodeArguments, data: dict | None = None,
             collections: Mapping[str, Sequence[PathLike]] | None = None) -> dict:
        """Hold the folder for this process (`lock`), then create the manifest, or check that an existing run folder was
        made with the same settings and the same data.

        Args:
            args: the run's settings.
            data: what was read of each collection (counts, and what was dropped: qrels naming unknown queries or
                documents), stored as the manifest's `data` (as read by this process, on a resume too).
            collections: {role: the files the collections were read from}; their fingerprints are stored as the
                manifest's `collections`, and a resume is compared with them by content (see `DATA_PATH_FIELDS`).

        Returns:
            The manifest.

        Raises:
            ConfigMismatchError: the folder holds a run made with other settings or over other data.
        """
        self.lock()
        new = args.result_config()
        if self.manifest_path.exists():
            manifest = read_json(self.manifest_path)
            fingerprints = self._check_resume(manifest, new, collections)
            manifest.setdefault("resumed", []).append(_now())
        else:
            fingerprints = fingerprint_inputs(collections) if collections is not None else None
            manifest = {"config": new, "created": _now(), "versions": library_versions(),
                        "seeds": {"training": args.seed, "negative_sampling": args.seed}, "timings": {}}
        if fingerprints is not None:
            manifest["collections"] = fingerprints
        manifest["runtime"] = {k: v for k, v in args.to_dict().items() if k not in new}
        if data is not None:
            manifest["data"] = data
        write_json(self.manifest_path, manifest)
        self.remove_temporaries()
        return manifest

    def _check_resume(self, manifest: dict, new: dict, collections: Mapping[str, Sequence[PathLike]] | None
                      ) -> dict | None:
        """Compare a stored manifest with the settings and data given now; return the collections' fingerprints now
        (None when not given), or raise ConfigMismatchError listing every difference. With the same data, the stored
        config takes the data paths given now."""
        stored_config, stored_data = manifest.get("config", {}), manifest.get("collections")
        by_content = collections is not None and isinstance(stored_data, dict)
        if by_content:
            diffs = config_differences(_data_by_name(stored_config), _data_by_name(new))
        else:  # a run made before the manifest held its data's fingerprints: its paths are compared
            diffs = config_differences(stored_config, new)
        now = fingerprint_inputs(collections, stored_data if by_content else None) if collections is not None \
            else None
        if by_content:
            diffs += [d.replace("input ", "data ", 1) for d in input_differences(stored_data, now)]
        if diffs:
            raise ConfigMismatchError(
                f"{self.root} holds a run made with other settings or data; use another --output_dir, or the same "
                "settings and data to resume it. Differences (stored -> given):\n  " + "\n  ".join(diffs))
        if by_content:  # the same data, perhaps at another path: later readers (the analysis) use the given one
            stored_config.update({k: new[k] for k in DATA_PATH_FIELDS if k in new})
        return now

    def remove_temporaries(self) -> list[Path]:
        """Remove what a process killed mid-write left under a temporary name (`.tmp-*`, see utils.atomic_path), outside
        finished episodes and the token caches: nothing reads such names, so this only frees the space; the token caches
        are left to their own locking (several runs may share them)."""
        removed = []
        for path in sorted(self.root.rglob(".tmp-*")):
            top = path.relative_to(self.root).parts[0]
            episode = episode_number(top)
            finished = episode is not None and self.done(episode).exists()
            if top == self.token_cache_dir.name or finished or not path.exists():
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
        if removed:
            logger.info("%s: removed %d unfinished temporary outputs of an earlier process, e.g. %s", self.root,
                        len(removed), removed[0])
        return removed

    def record(self, step: str, seconds: float, **extra) -> None:
        """Time a step into the manifest, with what else it reports (`steps[step]`, e.g. its outputs' fingerprints).

        Args:
            step: the step's name.
            seconds: how long it took.
            **extra: stored as the manifest's `steps[step]`.
        """
        manifest = read_json(self.manifest_path)
        manifest.setdefault("timings", {})[step] = round(seconds, 3)
        if extra:
            manifest.setdefault("steps", {})[step] = extra
        write_json(self.manifest_path, manifest)

    def step(self, name: str, output: Path, work: Callable[[], object], *, done: Callable[[], bool] | None = None,
             files: Callable[[], Sequence[Path]] | None = None):
        """Run `work` unless `output` exists (or `done()` says so); time it into the manifest with the fingerprints of
        what it wrote, and check those fingerprints when the output is found finished (`check_output`).

        Args:
            name: the step's name (its key in the manifest's `timings` and `steps`).
            output: what the step writes (a file, a folder, or a prefix with `files`).
            work: writes the output.
            done: whether the output is finished (default: it exists).
            files: the files of the output (default: `output`, or every file under it when a folder).

        Returns:
            `work`'s result, or `output` when it was finished already.

        Raises:
            OutputMismatchError: the finished output no longer holds its recorded fingerprint.
        """
        finished = done() if done is not None else output.exists()
        if finished:
            self.check_output(name)
            return output
        kill_point(name)
        started = time.perf_counter()
        result = work()
        written = files() if files is not None else list(input_files(output).values()) if output.exists() else []
        self.record(name, time.perf_counter() - started, outputs=fingerprint_outputs(written, self.root))
        return result

    def check_output(self, step: str) -> None:
        """Refuse a finished step's output whose files no longer hold the fingerprints recorded when they were written
        (cut short, edited or removed since); it is never removed. An output recorded before fingerprints were kept has
        none and is trusted as before.

        Args:
            step: the step's name.

        Raises:
            OutputMismatchError: one line naming the first changed file and how it changed.
        """
        manifest = read_json_or_none(self.manifest_path) or {}
        stored = ((manifest.get("steps") or {}).get(step) or {}).get("outputs")
        changes = output_changes(stored, self.root) if stored else {}
        if changes:
            name, change = next(iter(changes.items()))
            more = f" (and {len(changes) - 1} more of its files)" if len(changes) > 1 else ""
            raise OutputMismatchError(
                f"{self.root / name}: {change} since step {step} wrote it{more}; the run does not use an output it "
                "cannot trust, and leaves it as it is: put it back, or remove it to have the run make it again")


def _data_by_name(config: Mapping) -> dict:
    """A result config whose data paths (`DATA_PATH_FIELDS`) are reduced to their names."""
    out = dict(config)
    for key in DATA_PATH_FIELDS:
        value = out.get(key)
        if isinstance(value, list):
            out[key] = [Path(v).name for v in value]
        elif value:
            out[key] = Path(value).name
    return out


def kill_point(step: str) -> None:
    """Testing aid: `TELE_KILL_AT=<step>` makes the process kill itself (SIGKILL) when that step starts."""
    if os.environ.get("TELE_KILL_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
