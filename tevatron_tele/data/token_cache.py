"""Tokenize a corpus or query set once and reuse it: flat token ids + offsets, memory-mapped.

A cache folder holds `tokens.npy` (all token ids, no special tokens, each text truncated to max_len; uint16 when the
vocabulary fits, which halves the cache, else int32), `offsets.npy` (int64, n+1 entries: text i is
tokens[offsets[i]:offsets[i+1]]), `ids.txt` (one id per line) and `key.json`. The key covers the tokenizer (its
serialised pipeline, or its vocab), max_len, a template string saying how texts were formed, the number of texts,
and what the texts are:

- texts a loader read from files (`Collection.source_files`, `Corpus.source_files`): each file's content hash, the
  reader, and a probe (ids and texts at up to 64 evenly spaced positions). Reopening costs O(1) in corpus size: a
  `stat` per file and a look-up of its hash, computed once and stored in `<cache_dir>/.sources/` (`source_hash`);
- texts made in memory (`build_token_cache`, held-out query sets, a file changed since loaded): a hash of every id
  and text, computed on each open.

A different key means a rebuild. Builders take a file lock and write into `.build-<name>` beside the cache,
committing a progress marker every `_CHUNK` texts, so a killed build resumes from its last complete chunk with the
bytes an uninterrupted one gives. The finished folder is renamed into place, so readers only see complete caches.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock
from tqdm.auto import tqdm

from ..utils import PathLike, read_json_or_none
from .collections import Collection, Corpus
from .fingerprints import SETTLE_NS, file_content_hash, hash_holds
from .fingerprints import file_signature as _signature

logger = logging.getLogger(__name__)

CACHE_VERSION = 3
_BATCH = 4096  # texts per tokenizer call
_CHUNK = 65_536  # texts per committed chunk: what a killed build can lose
_NPY_HEADER = 128  # fixed header size so the token count can be filled in after streaming
_PROBE = 64  # positions whose ids and texts enter a file-backed key
# A stored hash is trusted only when the file's last change (ctime) is at least this much older than its hashing
# (see data.fingerprints); a module global so that tests can shorten it.
_SETTLE_NS = SETTLE_NS
_IDS_CHUNK = 100_000


class TokenCache:
    """Read-only, memory-mapped token ids of a list of texts. The ids are read from `ids.txt` when first used."""

    def __init__(self, path: Path, ids: list[str] | None, tokens: np.ndarray, offsets: np.ndarray, key: dict) -> None:
        self.path = path
        self._ids = ids
        self.tokens = tokens
        self.offsets = offsets
        self.key = key
        self.built = False  # True when this call built the cache (rather than reusing it)
        self._index: dict[str, int] | None = None

    @property
    def ids(self) -> list[str]:
        if self._ids is None:
            ids = (self.path / "ids.txt").read_text(encoding="utf-8").split("\n")[:-1]
            if len(ids) != len(self):
                raise ValueError(f"{self.path}: ids.txt has {len(ids)} ids, offsets.npy {len(self)} entries")
            self._ids = ids
        return self._ids

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"token cache index {i} out of range for {n} entries")
        return self.tokens[self.offsets[i]:self.offsets[i + 1]]

    def position(self, id_: str) -> int:
        if self._index is None:
            self._index = {x: i for i, x in enumerate(self.ids)}
        try:
            return self._index[id_]
        except KeyError:
            raise KeyError(f"id {id_!r} is not in the token cache {self.path}") from None

    def get(self, id_: str) -> np.ndarray:
        return self[self.position(id_)]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def max_len(self) -> int:
        return int(self.key["max_len"])

    @classmethod
    def open(cls, path: PathLike) -> TokenCache:
        """Open a complete cache; O(1) in its size (tokens and offsets are memory-mapped, ids read on use)."""
        path = Path(path)
        for name in ("key.json", "ids.txt", "tokens.npy", "offsets.npy"):
            if not (path / name).exists():
                raise FileNotFoundError(f"{path / name} not found: not a complete token cache")
        key = json.loads((path / "key.json").read_text(encoding="utf-8"))
        tokens = np.load(path / "tokens.npy", mmap_mode="r")
        # a plain ndarray over the mapping: indexing a np.memmap costs a Python call per item
        offsets = np.load(path / "offsets.npy", mmap_mode="r").view(np.ndarray)
        count = key.get("count")
        ids = None
        if count is None:  # a key without a count: check against the ids themselves
            ids = (path / "ids.txt").read_text(encoding="utf-8").split("\n")[:-1]
            count = len(ids)
        if len(offsets) != count + 1 or int(offsets[-1]) != len(tokens):
            raise ValueError(f"{path}: ids ({count}), offsets ({len(offsets)}) and tokens ({len(tokens)}) disagree")
        return cls(path, ids, tokens, offsets, key)


# ---------------------------------------------------------------- fingerprints

_TOKENIZER_FPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _tokenizer_fingerprint(tokenizer: Any) -> str:
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # Truncation/padding settings are per-call state of the backend, not part of its identity.
        state = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        h.update(json.dumps(state, sort_keys=True).encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
        h.update(repr(getattr(tokenizer, "do_lower_case", None)).encode())
    return h.hexdigest()[:16]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of what decides token ids: the serialised fast pipeline if there is one, else class + vocab.

    Serialising takes about 0.1 s, so the hash is memoised per tokenizer object with `len(tokenizer)`; adding tokens
    makes it be computed again.

    Args:
        tokenizer: a transformers tokenizer.

    Returns:
        16 hex digits.
    """
    try:
        size = len(tokenizer)
    except TypeError:
        size = None
    try:
        cached = _TOKENIZER_FPS.get(tokenizer)
    except TypeError:  # not weakly referenceable or not hashable: no memo
        return _tokenizer_fingerprint(tokenizer)
    if cached is not None and cached[0] == size:
        return cached[1]
    fp = _tokenizer_fingerprint(tokenizer)
    _TOKENIZER_FPS[tokenizer] = (size, fp)
    return fp


def content_fingerprint(ids: Sequence[str], texts: Sequence[str]) -> str:
    """Hash of every id and text (the key of texts that do not come from files).

    Args:
        ids, texts: the ids and their texts.

    Returns:
        32 hex digits.
    """
    h = hashlib.blake2b(digest_size=16)
    for id_, text in zip(ids, texts):
        h.update(id_.encode())
        h.update(b"\0")
        h.update(text.encode())
        h.update(b"\1")
    return h.hexdigest()


def _write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def source_hash(stamp: Sequence, store: PathLike) -> str | None:
    """Content hash of a file a loader read, without reading it again where that can be avoided.

    - if the file's size, mtime, ctime or inode now differ from the stamp, it changed since it was loaded: None
      (the caller hashes the texts instead);
    - else, if `store` holds a hash taken when the file had these same four values, and the file's ctime is at
      least `_SETTLE_NS` (2 s) older than that hashing, that hash is used (nothing is read);
    - else the file is hashed (blake2b) and the hash stored with the four values and the time.

    The kernel sets ctime on every change and it cannot be set back (`os.utime` sets it to now), so a same-size
    rewrite with its mtime restored is still seen; the 2 s margin covers filesystems with coarse timestamps.

    Args:
        stamp: the loader's `collections.file_stamp` (path, size, mtime_ns, ctime_ns, inode), taken before reading.
        store: the folder of stored hashes.

    Returns:
        The hex hash, or None when the file is missing or changed since the stamp.
    """
    path = str(stamp[0])
    try:
        signature = _signature(os.stat(path))
    except OSError:
        return None
    if signature != [int(x) for x in stamp[1:5]]:
        return None
    entry_path = Path(store) / f"{hashlib.blake2b(path.encode(), digest_size=8).hexdigest()}.json"
    entry = read_json_or_none(entry_path)
    if isinstance(entry, dict) and entry.get("path") == path and hash_holds(entry, signature, _SETTLE_NS):
        return entry["hash"]
    hashed_at = time.time_ns()
    digest = file_content_hash(path)
    if _signature(os.stat(path)) != signature:  # changed while it was read
        return None
    _write_json_atomic(entry_path, {"path": path, "signature": signature, "hashed_at_ns": hashed_at,
                                    "hash": digest})
    return digest


def _probe(n: int, id_at: Callable[[int], str], text_at: Callable[[int], str]) -> str:
    """Hash of the ids and texts at up to `_PROBE` evenly spaced positions (cheap, and catches a mix-up)."""
    h = hashlib.blake2b(digest_size=16)
    for i in sorted({int(x) for x in np.linspace(0, n - 1, min(n, _PROBE))} if n else ()):
        h.update(f"{i}\0{id_at(i)}\0{text_at(i)}\1".encode())
    return h.hexdigest()


def _source(files: Sequence, reader: str, n: int, id_at: Callable[[int], str], text_at: Callable[[int], str],
            store: Path) -> dict | None:
    """The file-backed part of a key, or None when there are no source files or one changed since loaded."""
    if not files:
        return None
    hashes = []
    for stamp in files:
        digest = source_hash(stamp, store)
        if digest is None:
            logger.info("%s changed since it was loaded (or is gone): hashing the texts instead", stamp[0])
            return None
        hashes.append(digest)
    return {"reader": reader, "files": hashes, "probe": _probe(n, id_at, text_at)}


def _base_key(tokenizer: Any, max_len: int, key_extra: str, count: int) -> dict:
    return {"version": CACHE_VERSION, "tokenizer": tokenizer_fingerprint(tokenizer), "max_len": int(max_len),
            "template": key_extra, "count": int(count)}


def _cache_key(ids: Sequence[str], texts: Sequence[str], tokenizer: Any, max_len: int, key_extra: str) -> dict:
    return {**_base_key(tokenizer, max_len, key_extra, len(ids)), "content": content_fingerprint(ids, texts)}


def _key_hash(key: dict) -> str:
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def _read_key(path: Path) -> dict | None:
    return read_json_or_none(path / "key.json")


# ---------------------------------------------------------------- building

def _npy_header(dtype: np.dtype, n: int) -> bytes:
    """A version-1.0 .npy header for a 1-D array of n items, padded to exactly _NPY_HEADER bytes."""
    desc = f"{{'descr': '{np.dtype(dtype).str}', 'fortran_order': False, 'shape': ({n},), }}"
    prefix = b"\x93NUMPY\x01\x00"
    body_len = _NPY_HEADER - len(prefix) - 2
    body = desc.ljust(body_len - 1) + "\n"
    if len(body) != body_len:
        raise ValueError("token count too large for the fixed .npy header")
    return prefix + body_len.to_bytes(2, "little") + body.encode("latin1")


def token_dtype(tokenizer: Any) -> np.dtype:
    """The narrowest type that holds every id of the tokenizer's vocabulary.

    Args:
        tokenizer: a transformers tokenizer.

    Returns:
        uint16 or int32.
    """
    return np.dtype(np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else np.int32)


def _check_ids(ids: Sequence[str]) -> None:
    """No line breaks (ids.txt is one per line) and no duplicates, without a set of all ids in memory."""
    for start in range(0, len(ids), _IDS_CHUNK):
        chunk = [str(i) for i in ids[start:start + _IDS_CHUNK]]
        joined = "".join(chunk)
        if "\n" in joined or "\r" in joined:
            bad = next(i for i in chunk if "\n" in i or "\r" in i)
            raise ValueError(f"id {bad!r} contains a line break")
    # 8 bytes per id rather than a set of all ids: only ids whose hashes collide are compared as strings
    hashes = np.fromiter((hash(str(i)) for i in ids), dtype=np.int64, count=len(ids))
    ordered = np.sort(hashes)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if repeated.size:
        seen: set[str] = set()
        for pos in np.flatnonzero(np.isin(hashes, repeated)):
            id_ = str(ids[int(pos)])
            if id_ in seen:
                raise ValueError(f"ids are not unique: {id_!r} appears more than once")
            seen.add(id_)


def _encode(tokenizer: Any, texts: list[str], max_len: int) -> list[list[int]]:
    """Token ids of a batch: the tokenizer's own batched call (a fast tokenizer runs it on all cores)."""
    return tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_len,
                     return_attention_mask=False, return_token_type_ids=False)["input_ids"]


def _fsync(f) -> None:
    f.flush()
    os.fsync(f.fileno())


def _resume_point(build: Path, key: dict, dtype: np.dtype) -> tuple[int, int] | None:
    """(texts, tokens) committed by an earlier, interrupted build of this key, or None to start afresh."""
    progress = read_json_or_none(build / "progress.json")
    if not (isinstance(progress, dict) and progress.get("key") == key and progress.get("dtype") == dtype.str):
        return None
    texts, tokens = int(progress["texts"]), int(progress["tokens"])
    try:
        if ((build / "tokens.npy").stat().st_size < _NPY_HEADER + tokens * dtype.itemsize
                or (build / "offsets.npy").stat().st_size < _NPY_HEADER + (texts + 1) * 8):
            return None
    except FileNotFoundError:
        return None
    return texts, tokens


def _start_build(build: Path, key: dict, dtype: np.dtype) -> tuple[int, int]:
    """(texts, tokens) already in the build folder: an interrupted build's of this key, else (0, 0) in a new one."""
    resume = _resume_point(build, key, dtype)
    if resume is not None:
        return resume
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    (build / "tokens.npy").write_bytes(_npy_header(dtype, 0))
    (build / "offsets.npy").write_bytes(_npy_header(np.int64, 1) + np.zeros(1, np.int64).tobytes())
    return 0, 0


def _finish_build(build: Path, path: Path, key: dict, ids: Sequence[str]) -> None:
    """Write ids.txt and key.json into the build folder and rename it to `path` (over a cache of another key)."""
    with open(build / "ids.txt", "w", encoding="utf-8", newline="\n") as f:
        for start in range(0, len(ids), _IDS_CHUNK):
            f.write("".join(f"{i}\n" for i in ids[start:start + _IDS_CHUNK]))
        _fsync(f)
    # key.json last: a folder with a key is complete.
    with open(build / "key.json", "w", encoding="utf-8") as f:
        f.write(json.dumps(key, indent=1) + "\n")
        _fsync(f)
    (build / "progress.json").unlink(missing_ok=True)
    old = None
    if path.exists() or path.is_symlink():  # a cache of another key at this path: set it aside, then swap
        old = path.parent / f".old-{path.name}-{uuid.uuid4().hex[:8]}"
        os.replace(path, old)
    os.replace(build, path)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()


def _build(path: Path, key: dict, ids: Sequence[str], texts_at: Callable[[int, int], list[str]], tokenizer: Any,
           max_len: int, desc: str) -> None:
    """Write the cache of `key` to `path` (the caller holds the lock), continuing an interrupted build."""
    n = len(ids)
    dtype = token_dtype(tokenizer)
    build = path.parent / f".build-{path.name}"
    done, total = _start_build(build, key, dtype)
    if done:
        logger.info("continuing the interrupted build of %s at text %d of %d", path, done, n)
    parallel = os.environ.get("TOKENIZERS_PARALLELISM", "").strip().lower() not in ("false", "0", "off", "no", "n", "f")
    if not parallel and getattr(tokenizer, "is_fast", False):
        logger.info("TOKENIZERS_PARALLELISM=%s: tokenizing %s on one core", os.environ["TOKENIZERS_PARALLELISM"],
                    path.name)
    with open(build / "tokens.npy", "r+b") as tok_f, open(build / "offsets.npy", "r+b") as off_f:
        # cut off what was written after the last commit
        tok_f.truncate(_NPY_HEADER + total * dtype.itemsize)
        off_f.truncate(_NPY_HEADER + (done + 1) * 8)
        tok_f.seek(0, os.SEEK_END)
        off_f.seek(0, os.SEEK_END)
        bar = tqdm(total=n, initial=done, desc=desc, unit="text", disable=n <= _CHUNK)
        for chunk_start in range(done, n, _CHUNK):
            chunk_end = min(chunk_start + _CHUNK, n)
            for start in range(chunk_start, chunk_end, _BATCH):
                stop = min(start + _BATCH, chunk_end)
                encoded = _encode(tokenizer, texts_at(start, stop), max_len)
                lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
                flat = np.fromiter(itertools.chain.from_iterable(encoded), dtype=dtype, count=int(lengths.sum()))
                tok_f.write(flat.tobytes())
                off_f.write((total + np.cumsum(lengths)).tobytes())
                total += int(lengths.sum())
                bar.update(stop - start)
            _fsync(tok_f)
            _fsync(off_f)
            _write_json_atomic(build / "progress.json", {"key": key, "dtype": dtype.str, "texts": chunk_end,
                                                          "tokens": total})
        bar.close()
        tok_f.seek(0)
        tok_f.write(_npy_header(dtype, total))
        off_f.seek(0)
        off_f.write(_npy_header(np.int64, n + 1))
        _fsync(tok_f)
        _fsync(off_f)
    _finish_build(build, path, key, ids)


def _open_or_build(path: Path, key: dict, ids: Sequence[str], texts_at: Callable[[int, int], list[str]],
                   tokenizer: Any, max_len: int, *, check_ids: bool) -> TokenCache:
    if _read_key(path) == key:
        return TokenCache.open(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.parent / f".{path.name}.lock")):
        if _read_key(path) == key:  # another process built it while we waited
            return TokenCache.open(path)
        if check_ids:
            _check_ids(ids)
        logger.info("tokenizing %d texts (max_len %d) -> %s", len(ids), max_len, path)
        _build(path, key, ids, texts_at, tokenizer, max_len, desc=f"tokenize {path.name}")
    cache = TokenCache.open(path)
    cache.built = True
    return cache


def build_token_cache(path: PathLike, ids: Sequence[str], texts: Sequence[str], tokenizer: Any, max_len: int, *,
                      key_extra: str = "") -> TokenCache:
    """Open the cache at `path` if its key matches, else (re)build it there. Safe under concurrent callers.

    The key hashes every id and text; `corpus_token_cache` and `query_token_cache` key files' texts on the files.

    Args:
        path: the cache folder.
        ids, texts: the texts' ids (unique, no line breaks) and the texts.
        tokenizer: the tokenizer.
        max_len: token length (each text truncated to it).
        key_extra: a string saying how the texts were formed (part of the key).

    Returns:
        The memory-mapped token cache.
    """
    path = Path(path)
    ids = [str(i) for i in ids]
    if len(ids) != len(texts):
        raise ValueError(f"{len(ids)} ids but {len(texts)} texts")
    _check_ids(ids)
    key = _cache_key(ids, texts, tokenizer, max_len, key_extra)
    return _open_or_build(path, key, ids, lambda a, b: list(texts[a:b]), tokenizer, max_len, check_ids=False)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "collection"


def _cached(cache_dir: PathLike, name: str, ids: Sequence[str], text_at: Callable[[int], str], tokenizer: Any,
            max_len: int, key_extra: str, files: Sequence, reader: str,
            texts_at: Callable[[int, int], list[str]] | None = None) -> TokenCache:
    """The cache of `ids` and their texts under `cache_dir`, keyed on the source files where they are known.

    `text_at(i)` is row i's text (the probe reads a few); `texts_at(a, b)`, if given, rows a..b-1 in one call, which
    the build and a content hash read instead, batch by batch.
    """
    cache_dir = Path(cache_dir)
    n = len(ids)
    if texts_at is None:
        def texts_at(a: int, b: int) -> list[str]:
            return [text_at(i) for i in range(a, b)]
    key = _base_key(tokenizer, max_len, key_extra, n)
    source = _source(files, reader, n, ids.__getitem__, text_at, cache_dir / ".sources")
    if source is not None:
        key["source"] = source
    else:
        batches = (texts_at(a, min(a + _BATCH, n)) for a in range(0, n, _BATCH))
        key["content"] = content_fingerprint(ids, itertools.chain.from_iterable(batches))
    path = cache_dir / f"{_safe_name(name)}-{_key_hash(key)}"
    cache = _open_or_build(path, key, ids, texts_at, tokenizer, max_len, check_ids=True)
    if not cache.built:
        logger.info("using token cache %s", path)
    return cache


def corpus_token_cache(collection_or_corpus: Collection | Corpus, tokenizer: Any, max_len: int,
                       cache_dir: PathLike) -> TokenCache:
    """Token cache of the passages, each `title <sep> text` (just text when untitled), read a slice at a time so a
    store-backed corpus is never converted to Python objects as a whole.

    Args:
        collection_or_corpus: a collection (its corpus is tokenized) or a corpus.
        tokenizer: the model's tokenizer (its separator token joins title and text).
        max_len: token length.
        cache_dir: where caches live (reused when tokenizer, length and texts match).

    Returns:
        The memory-mapped token cache, one row per passage in corpus order.
    """
    if isinstance(collection_or_corpus, Collection):
        corpus, name = collection_or_corpus.corpus, collection_or_corpus.name.split("/")[0]
    else:
        corpus, name = collection_or_corpus, "corpus"
    sep = tokenizer.sep_token or ""
    return _cached(cache_dir, f"{name}-corpus", corpus.ids, lambda i: corpus.passage_text(i, sep), tokenizer,
                   max_len, f"passage: title {sep} text", getattr(corpus, "source_files", ()),
                   getattr(corpus, "source_reader", ""), lambda a, b: corpus.passage_texts(a, b, sep))


def query_token_cache(collection: Collection, tokenizer: Any, max_len: int, cache_dir: PathLike) -> TokenCache:
    """Token cache of the collection's (split's) queries.

    Args:
        collection: the collection split whose queries are tokenized.
        tokenizer, max_len, cache_dir: as in `corpus_token_cache`.

    Returns:
        The memory-mapped token cache, one row per query.
    """
    ids = list(collection.queries)
    texts = list(collection.queries.values())
    return _cached(cache_dir, f"{collection.name}-queries", ids, texts.__getitem__, tokenizer, max_len,
                   "query: text", getattr(collection, "source_files", ()), "queries")
