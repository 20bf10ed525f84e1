"""Embedding files: `<prefix>.npy` (float16/float32, rows = items) beside `<prefix>.ids` (one id per line).

A sharded output is a family of prefixes `<prefix>.shard-<i>-of-<n>`; `shard_prefixes` finds them in order. The `.ids`
file is written first and the `.npy` last, each atomically, so a prefix whose `.npy` exists is complete and a rerun can
skip it.
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path

import numpy as np

from ..utils import PathLike, atomic_path


def npy_path(prefix: PathLike) -> Path:
    """The vectors of a prefix.

    Args:
        prefix: an embeddings prefix.

    Returns:
        `<prefix>.npy`.
    """
    return Path(f"{prefix}.npy")


def ids_path(prefix: PathLike) -> Path:
    """The ids of a prefix.

    Args:
        prefix: an embeddings prefix.

    Returns:
        `<prefix>.ids`.
    """
    return Path(f"{prefix}.ids")


def shard_prefix(prefix: PathLike, shard_index: int, num_shards: int) -> Path:
    """The prefix of one shard.

    Args:
        prefix: the output's prefix.
        shard_index, num_shards: the shard, and shards in all.

    Returns:
        `<prefix>.shard-<i>-of-<n>`; a single shard keeps the plain prefix.
    """
    if num_shards == 1:
        return Path(prefix)
    return Path(f"{prefix}.shard-{shard_index:03d}-of-{num_shards:03d}")


def is_complete(prefix: PathLike) -> bool:
    """Whether a prefix's files are both written.

    Args:
        prefix: an embeddings prefix.

    Returns:
        True when its `.npy` and `.ids` exist.
    """
    return npy_path(prefix).exists() and ids_path(prefix).exists()


def save_embeddings(prefix: PathLike, array: np.ndarray, ids: Sequence[str]) -> None:
    """Write `<prefix>.ids` then `<prefix>.npy`, each atomically.

    Args:
        prefix: the prefix.
        array, ids: one row per id, and the items' ids (no whitespace).
    """
    if array.ndim != 2 or array.shape[0] != len(ids):
        raise ValueError(f"{prefix}: array of shape {array.shape} for {len(ids)} ids")
    for i in ids:
        if not i or any(c.isspace() for c in i):
            raise ValueError(f"{prefix}: id {i!r} is empty or holds whitespace")
    with atomic_path(ids_path(prefix)) as tmp:
        tmp.write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    with atomic_path(npy_path(prefix)) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array))


def read_ids(prefix: PathLike) -> list[str]:
    """The ids of a prefix.

    Args:
        prefix: an embeddings prefix.

    Returns:
        Its ids, row order.
    """
    with open(ids_path(prefix), encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def load_embeddings(prefix: PathLike, mmap: bool = True) -> tuple[np.ndarray, list[str]]:
    """The vectors and ids of a prefix.

    Args:
        prefix: an embeddings prefix (one shard).
        mmap: map the array read-only rather than reading it.

    Returns:
        (array, ids).
    """
    array = np.load(npy_path(prefix), mmap_mode="r" if mmap else None)
    ids = read_ids(prefix)
    if array.ndim != 2 or array.shape[0] != len(ids):
        raise ValueError(f"{npy_path(prefix)}: shape {array.shape} does not match {len(ids)} ids in {ids_path(prefix)}")
    return array, ids


def shard_prefixes(prefix: PathLike) -> list[Path]:
    """The prefixes holding a prefix's embeddings.

    Args:
        prefix: an embeddings prefix, sharded or not.

    Returns:
        The prefix itself if `<prefix>.npy` exists, else its complete shard set in order.
    """
    prefix = Path(prefix)
    if npy_path(prefix).exists():
        return [prefix]
    pattern = re.compile(re.escape(prefix.name) + r"\.shard-(\d+)-of-(\d+)\.npy$")
    found: dict[int, dict[int, Path]] = {}
    for p in prefix.parent.glob(prefix.name + ".shard-*.npy"):
        m = pattern.match(p.name)
        if m:
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = Path(str(p)[: -len(".npy")])
    if not found:
        raise FileNotFoundError(f"no embeddings at {npy_path(prefix)} nor shards {prefix}.shard-*-of-*.npy")
    if len(found) > 1:
        raise ValueError(f"{prefix}: shards from several shard counts {sorted(found)}; remove the stale ones")
    (total, shards), = found.items()
    missing = [i for i in range(total) if i not in shards]
    if missing:
        raise FileNotFoundError(f"{prefix}: shards {missing} of {total} are missing")
    return [shards[i] for i in range(total)]


def embedding_files(prefix: PathLike | None) -> list[Path] | None:
    """The files that hold a prefix's embeddings (what a step reading them records as its inputs).

    Args:
        prefix: an embeddings prefix, sharded or not (None: none given).

    Returns:
        The `.npy` and `.ids` file of each of its `shard_prefixes`, or None when `prefix` is None.
    """
    if prefix is None:
        return None
    return [f for p in shard_prefixes(prefix) for f in (npy_path(p), ids_path(p))]


def expand_prefixes(prefixes: Sequence[PathLike] | PathLike) -> list[Path]:
    """The shards of one prefix or of several.

    Args:
        prefixes: an embeddings prefix, or several.

    Returns:
        Every shard prefix, in order (`shard_prefixes` of each).
    """
    if isinstance(prefixes, (str, os.PathLike)):
        return shard_prefixes(prefixes)
    return [shard for p in prefixes for shard in shard_prefixes(p)]


def load_all(prefixes: Sequence[PathLike] | PathLike) -> tuple[np.ndarray, list[str]]:
    """The embeddings of several prefixes (or of one prefix's shards), concatenated in memory.

    Args:
        prefixes: as for `expand_prefixes`.

    Returns:
        (array, ids).
    """
    arrays, ids = [], []
    for p in expand_prefixes(prefixes):
        a, i = load_embeddings(p, mmap=True)
        arrays.append(np.asarray(a))
        ids.extend(i)
    return np.concatenate(arrays, axis=0), ids


def load_rows(prefix: PathLike, wanted: AbstractSet[str]) -> tuple[np.ndarray, list[str]]:
    """Some rows of a prefix, read shard by shard from memory-mapped files (the whole is never loaded).

    Args:
        prefix: an embeddings prefix, sharded or not.
        wanted: the ids wanted; those without a vector are skipped.

    Returns:
        (their vectors, their ids), in storage order.
    """
    rows, ids = [], []
    for shard in shard_prefixes(prefix):
        emb, shard_ids = load_embeddings(shard, mmap=True)
        hits = [(n, d) for n, d in enumerate(shard_ids) if d in wanted]
        rows.append(np.asarray(emb[[n for n, _ in hits]]))
        ids += [d for _, d in hits]
    return np.concatenate(rows), ids
