"""The run folder of the episode runner: its manifest, one process at a time, and step bookkeeping.

Every path of the folder is `data.run_folder.RunLayout`'s (its description lists them); `RunFolder` builds on it
with what needs the run's settings: the manifest (config comparison, versions, seeds, per-step timings), the lock
held by the one process running in the folder, and the timing of each step.
"""
from __future__ import annotations

import datetime
import logging
import os
import platform
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout

from ..data.run_folder import RunLayout, episode_number
from ..utils import read_json, write_json
from .config import EpisodeArguments, config_differences

logger = logging.getLogger(__name__)

# the run folders this process holds (resolved path -> lock), so that it may open one of them again
_HELD: dict[str, FileLock] = {}


class ConfigMismatchError(ValueError):
    """A run folder holds a run made with other settings."""


class RunFolderBusyError(ValueError):
    """Another process is running in the run folder."""


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

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
    def open(self, args: EpisodeArguments, data: dict | None = None) -> dict:
        """Hold the folder for this process (`lock`), then create the manifest, or check that an existing run
        folder was made with the same settings.

        Args:
            args: the run's settings.
            data: what was read of each collection (counts, and what was dropped: qrels naming unknown queries or
                documents), stored as the manifest's `data` (as read by this process, on a resume too).

        Returns:
            The manifest.
        """
        self.lock()
        new = args.result_config()
        if self.manifest_path.exists():
            manifest = read_json(self.manifest_path)
            diffs = config_differences(manifest.get("config", {}), new)
            if diffs:
                raise ConfigMismatchError(
                    f"{self.root} holds a run made with other settings; use another --output_dir, or the same "
                    "settings to resume it. Differences (stored -> given):\n  " + "\n  ".join(diffs))
            manifest.setdefault("resumed", []).append(_now())
        else:
            manifest = {"config": new, "created": _now(), "versions": library_versions(),
                        "seeds": {"training": args.seed, "negative_sampling": args.seed}, "timings": {}}
        manifest["runtime"] = {k: v for k, v in args.to_dict().items() if k not in new}
        if data is not None:
            manifest["data"] = data
        write_json(self.manifest_path, manifest)
        self.remove_temporaries()
        return manifest

    def remove_temporaries(self) -> list[Path]:
        """Remove what a process killed mid-write left under a temporary name (`.tmp-*`, see utils.atomic_path,
        e.g. a truncated file after a crash or a full disk), outside finished episodes and the token caches.

        Nothing reads such names, so this only frees the space; a DONE episode is never touched, and the token
        caches are left to their own locking (several runs may share them).
        """
        removed = []
        for path in sorted(self.root.rglob(".tmp-*")):
            top = path.relative_to(self.root).parts[0]
            episode = episode_number(top)
            if top == self.token_cache_dir.name or (episode is not None and self.is_done(episode)) or not path.exists():
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
        manifest = read_json(self.manifest_path)
        manifest.setdefault("timings", {})[step] = round(seconds, 3)
        if extra:
            manifest.setdefault("steps", {})[step] = extra
        write_json(self.manifest_path, manifest)

    def step(self, name: str, output: Path, work: Callable[[], object], *, done: Callable[[], bool] | None = None):
        """Run `work` unless `output` exists (or `done()` says so); time it into the manifest."""
        finished = done() if done is not None else output.exists()
        if finished:
            return output
        kill_point(name)
        started = time.perf_counter()
        result = work()
        self.record(name, time.perf_counter() - started)
        return result


def kill_point(step: str) -> None:
    """Testing aid: `TELE_KILL_AT=<step>` makes the process kill itself (SIGKILL) when that step starts."""
    if os.environ.get("TELE_KILL_AT") == step:
        os.kill(os.getpid(), signal.SIGKILL)


def training_kill_callbacks(step: str) -> list:
    """Testing aid: `TELE_KILL_AT=<step>@<n>` kills the process after optimizer step n of that training."""
    name, _, at = os.environ.get("TELE_KILL_AT", "").partition("@")
    if name != step or not at:
        return []
    from transformers import TrainerCallback

    class _Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= int(at):
                os.kill(os.getpid(), signal.SIGKILL)

    return [_Kill()]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
