"""Fingerprints of files: a content hash taken once, and trusted again while the file's stat still matches.

A fingerprint is `{"size", "mtime_ns", "signature", "hashed_at_ns", "hash"}`. A stored hash is reused without
reading the file only while the signature is unchanged and the file's last change (ctime) is at least `SETTLE_NS`
older than the hashing: a change within the hashing's timestamp tick could not be told apart. The kernel sets ctime
on every change and it cannot be set back, so a same-size rewrite with its mtime restored is still seen. The token
cache (`token_cache.source_hash`) and the step contract (`data.outputs`) keep their hashes this way.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping

from ..utils import PathLike

SETTLE_NS = 2_000_000_000


def file_content_hash(path: PathLike) -> str:
    """blake2b (16 bytes, hex) of a file's bytes.

    Args:
        path: the file.

    Returns:
        The hex digest.
    """
    with open(path, "rb") as f:
        return hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=16)).hexdigest()


def file_signature(st: os.stat_result) -> list[int]:
    """What changes whenever a file does (its `signature`).

    Args:
        st: the file's stat result.

    Returns:
        [size, mtime_ns, ctime_ns, inode].
    """
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def hash_holds(entry: Mapping | None, signature: list[int], settle_ns: int = SETTLE_NS) -> bool:
    """Whether a stored fingerprint's hash still describes a file whose signature is now `signature`.

    Args:
        entry: a stored fingerprint (`signature`, `hashed_at_ns`, `hash`), or None.
        signature: the file's `file_signature` now.
        settle_ns: how much older than the hashing the file's last change must be.

    Returns:
        True when the stored hash can be used without reading the file.
    """
    if not isinstance(entry, Mapping) or "hash" not in entry:
        return False
    stored = [int(x) for x in entry.get("signature", ())]
    return stored == signature and signature[2] + settle_ns <= int(entry.get("hashed_at_ns", 0))


def fingerprint_file(path: PathLike, previous: Mapping | None = None, *, settle_ns: int = SETTLE_NS) -> dict | None:
    """A file's fingerprint, its hash taken from `previous` when that still holds (`hash_holds`), else read.

    Args:
        path: the file (a missing file raises FileNotFoundError naming it).
        previous: the fingerprint stored for this file earlier, if any.
        settle_ns: see `hash_holds`.

    Returns:
        The fingerprint, or None when the file changed while it was read.
    """
    signature = file_signature(os.stat(path))
    if hash_holds(previous, signature, settle_ns):
        return dict(previous)
    hashed_at = time.time_ns()
    digest = file_content_hash(path)
    if file_signature(os.stat(path)) != signature:
        return None
    return {"size": signature[0], "mtime_ns": signature[1], "signature": signature, "hashed_at_ns": hashed_at,
            "hash": digest}
