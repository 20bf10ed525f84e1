"""Corpus embeddings as a Pyserini dense index folder, for `python -m pyserini.search.faiss --index DIR`.

    DIR/index            faiss.write_index of an IndexFlatIP (exact inner product) over the corpus vectors
    DIR/docid            one passage id per line, line i = vector i (Pyserini's FaissSearcher reads both)
    DIR/tele_index.json  what it was made from (each embedding file's size and mtime) and what it holds

An existing folder of these files only is this step's own: it is reused when its record names the same embedding files,
and replaced only with `overwrite` when they changed (or it has no record). Any other existing path (a file, a folder
holding anything else) is refused and left as it is; an empty folder is written into.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..utils import OutputExistsError, PathLike, atomic_path, read_json_or_none, write_json
from .embeddings import expand_prefixes, ids_path, load_embeddings, npy_path

logger = logging.getLogger(__name__)

INDEX_FILE = "index"
DOCID_FILE = "docid"
RECORD_FILE = "tele_index.json"
RECORD_FORMAT = "tevatron-tele pyserini flat-ip index"
_OWN_FILES = {INDEX_FILE, DOCID_FILE, RECORD_FILE}
_CHUNK_BYTES = 64 * 2**20  # float32 rows added to the index at a time


def _sources(prefixes: list[Path]) -> list[dict]:
    """Each embedding file's path, size and mtime: the index is stale when any of them changes."""
    out = []
    for prefix in prefixes:
        npy, ids = npy_path(prefix).stat(), ids_path(prefix).stat()
        out.append({"prefix": str(prefix.resolve()), "npy": [npy.st_size, npy.st_mtime_ns],
                    "ids": [ids.st_size, ids.st_mtime_ns]})
    return out


def is_own_index(out_dir: PathLike) -> bool:
    """Whether `out_dir` is an index folder this package wrote (only its files, `index` and `docid` among them).

    Args:
        out_dir: any path.

    Returns:
        True for this step's earlier output (with or without its record, which earlier versions did not write).
    """
    out_dir = Path(out_dir)
    if out_dir.is_symlink() or not out_dir.is_dir():
        return False
    names = {p.name for p in out_dir.iterdir()}
    return {INDEX_FILE, DOCID_FILE} <= names <= _OWN_FILES


def _check_output(out_dir: Path, sources: list[dict], overwrite: bool) -> bool:
    """True when `out_dir` already holds this index; raises when it holds something else (see module doc)."""
    if not (out_dir.exists() or out_dir.is_symlink()) or (out_dir.is_dir() and not any(out_dir.iterdir())):
        return False
    if not is_own_index(out_dir):
        raise OutputExistsError(out_dir, "exists and is not a Pyserini index this package wrote; it is left as it "
                                         "is: give a new output path")
    record = read_json_or_none(out_dir / RECORD_FILE)
    if isinstance(record, dict) and record.get("format") == RECORD_FORMAT and record.get("sources") == sources:
        return True
    if not overwrite:
        raise OutputExistsError(out_dir, "holds a Pyserini index of other embeddings (or of files changed since); "
                                         "use --overwrite to replace it, or give a new output path")
    return False


def export_pyserini_index(corpus_prefixes: Sequence[PathLike] | PathLike, out_dir: PathLike, *,
                          overwrite: bool = False) -> Path:
    """Write a folder Pyserini's dense search reads (`index`, `docid`) from corpus embeddings.

    Args:
        corpus_prefixes: an embeddings prefix (its `.npy` + `.ids`, or its shards), or several.
        out_dir: the index folder to write; it must not exist, or be this function's earlier output.
        overwrite: replace an earlier output made from other embedding files.

    Returns:
        `out_dir`. An earlier output made from the same files is kept as it is.
    """
    out_dir = Path(out_dir)
    prefixes = expand_prefixes(corpus_prefixes)
    sources = _sources(prefixes)
    if _check_output(out_dir, sources, overwrite):
        logger.info("%s already holds the Pyserini index of these embeddings; kept", out_dir)
        return out_dir
    import faiss  # lazy: start-up stays fast, and a refusal above comes before faiss' own log lines

    index, digest = None, hashlib.sha256()
    with atomic_path(out_dir, replaces=is_own_index) as tmp:
        tmp.mkdir()
        with open(tmp / DOCID_FILE, "w", encoding="utf-8") as docids:
            for prefix in prefixes:
                array, ids = load_embeddings(prefix, mmap=True)
                if index is None:
                    index = faiss.IndexFlatIP(array.shape[1])
                if array.shape[1] != index.d:
                    raise ValueError(f"{npy_path(prefix)}: vectors of dimension {array.shape[1]}, others {index.d}")
                text = "".join(f"{i}\n" for i in ids)
                docids.write(text)
                digest.update(text.encode("utf-8"))
                rows = max(1, _CHUNK_BYTES // (4 * index.d))
                for start in range(0, len(ids), rows):
                    index.add(np.ascontiguousarray(array[start:start + rows], dtype=np.float32))
        faiss.write_index(index, str(tmp / INDEX_FILE))
        write_json(tmp / RECORD_FILE, {"format": RECORD_FORMAT, "sources": sources, "vectors": int(index.ntotal),
                                       "dim": int(index.d), "docid_sha256": digest.hexdigest()})
    logger.info("wrote the Pyserini index of %d vectors (dim %d) to %s", index.ntotal, index.d, out_dir)
    return out_dir
