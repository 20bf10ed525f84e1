"""Episode 0 (the base model's rankings and evaluation) shared between runs through --base_cache_dir.

A run whose settings give the base model the same inputs copies its episode 0 from `BASE_CACHE/<key>/` (the finished
episode-0 folder of the first such run, without its embeddings) instead of encoding the corpus again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

from ..data.run_folder import DONE_FILE, RunLayout
from .config import EpisodeArguments
from .launch import input_options

logger = logging.getLogger(__name__)


def base_cache_dir(args: EpisodeArguments) -> Path | None:
    """The folder of the shared episode 0 these settings give, keyed on every input of the base model's embeddings,
    rankings and evaluation (not on training settings).

    Args:
        args: the run's settings.

    Returns:
        `--base_cache_dir/<16 hex digits>`, or None without --base_cache_dir.
    """
    if not args.base_cache_dir:
        return None
    a = args
    key = [str(Path(a.model_name_or_path).resolve()), str(Path(a.collection).resolve()),
           a.train_split, a.eval_split, sorted(a.eval_collections), a.q_max_len, a.p_max_len,
           a.pooling, a.normalize, a.depth, a.eval_depth, a.embedding_dtype]
    if any(input_options(a).values()):
        key.append(input_options(a))
    # more options that change the base model's embeddings or corpus, only when set (older caches keep their keys)
    extra = {"encode_amp": a.encode_amp, "passages": str(Path(a.passages).resolve()) if a.passages else None,
             "dev_split": a.dev_split, "dev_from_train": a.dev_from_train}
    if any(extra.values()):
        key.append({k: v for k, v in extra.items() if v})
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(a.base_cache_dir) / digest


def restore_episode_zero(shared: Path | None, folder: RunLayout) -> bool:
    """Copy a finished shared episode 0 into the run folder (embeddings aside).

    Args:
        shared: the shared episode 0 (`base_cache_dir`), or None.
        folder: the run folder.

    Returns:
        Whether it was copied (False when there is none, or it is unfinished).
    """
    if shared is None or not (shared / DONE_FILE).exists():
        return False
    logger.info("episode 0: copying the base model's rankings from %s", shared)
    shutil.copytree(shared, folder.episode(0), dirs_exist_ok=True, ignore=shutil.ignore_patterns("embeddings"))
    return True


def share_episode_zero(folder: RunLayout, shared: Path | None) -> None:
    """Store the run's finished episode 0 (embeddings aside) as the shared one, unless there is one already.

    Args:
        folder: the run folder.
        shared: the shared episode 0 (`base_cache_dir`), or None.
    """
    if shared is not None and not shared.exists():
        shutil.copytree(folder.episode(0), shared, ignore=shutil.ignore_patterns("embeddings"))
