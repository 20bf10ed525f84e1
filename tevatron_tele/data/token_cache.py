"""Tokenize a corpus or query set once and reuse it: flat token ids + offsets, memory-mapped.

A cache folder holds `tokens.npy` (all token ids, no special tokens, each text truncated to
max_len; uint16 when the vocabulary fits, which halves the cache, else int32), `offsets.npy`
(int64, n+1 entries: text i is tokens[offsets[i]:offsets[i+1]]),
`ids.txt` (one id per line) and `key.json`. The key covers the tokenizer (its full serialised
pipeline, or its vocab), max_len, a template string saying how texts were formed, and a hash of
ids and texts; a different key means a rebuild. Builders take a file lock and write into a
temporary folder renamed into place, so concurrent builders yield one complete cache.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock
from tqdm.auto import tqdm

from ..utils import PathLike, atomic_path
from .collections import Collection, Corpus

logger = logging.getLogger(__name__)

CACHE_VERSION = 2
_BATCH = 2048
_NPY_HEADER = 128  # fixed header size so the token count can be filled in after streaming


class TokenCache:
    """Read-only, memory-mapped token ids of a list of texts."""

    def __init__(self, path: Path, ids: list[str], tokens: np.ndarray, offsets: np.ndarray, key: dict) -> None:
        self.path = path
        self.ids = ids
        self.tokens = tokens
        self.offsets = offsets
        self.key = key
        self.built = False  # True when this call built the cache (rather than reusing it)
        self._index: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self.ids)
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
        path = Path(path)
        for name in ("key.json", "ids.txt", "tokens.npy", "offsets.npy"):
            if not (path / name).exists():
                raise FileNotFoundError(f"{path / name} not found: not a complete token cache")
        key = json.loads((path / "key.json").read_text(encoding="utf-8"))
        ids = (path / "ids.txt").read_text(encoding="utf-8").split("\n")[:-1]
        tokens = np.load(path / "tokens.npy", mmap_mode="r")
        offsets = np.load(path / "offsets.npy")
        if len(offsets) != len(ids) + 1 or int(offsets[-1]) != len(tokens):
            raise ValueError(f"{path}: ids ({len(ids)}), offsets ({len(offsets)}) and tokens ({len(tokens)}) disagree")
        return cls(path, ids, tokens, offsets, key)


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of what decides token ids: the serialised fast pipeline if there is one, else class + vocab."""
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


def content_fingerprint(ids: Sequence[str], texts: Sequence[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for id_, text in zip(ids, texts):
        h.update(id_.encode())
        h.update(b"\0")
        h.update(text.encode())
        h.update(b"\1")
    return h.hexdigest()


def _cache_key(ids: Sequence[str], texts: Sequence[str], tokenizer: Any, max_len: int, key_extra: str) -> dict:
    return {
        "version": CACHE_VERSION,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "max_len": int(max_len),
        "template": key_extra,
        "content": content_fingerprint(ids, texts),
        "count": len(ids),
    }


def _key_hash(key: dict) -> str:
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def _read_key(path: Path) -> dict | None:
    try:
        return json.loads((path / "key.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


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
    """The narrowest type that holds every id of the tokenizer's vocabulary."""
    return np.dtype(np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else np.int32)


def _write(tmp: Path, ids: Sequence[str], texts: Sequence[str], tokenizer: Any, max_len: int, key: dict,
           desc: str) -> None:
    tmp.mkdir(parents=True)
    dtype = token_dtype(tokenizer)
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    total = 0
    with open(tmp / "tokens.npy", "wb") as f:
        f.write(_npy_header(dtype, 0))
        for start in tqdm(range(0, len(texts), _BATCH), desc=desc, unit="batch", disable=len(texts) <= _BATCH):
            batch = list(texts[start:start + _BATCH])
            encoded = tokenizer(batch, add_special_tokens=False, truncation=True, max_length=max_len)["input_ids"]
            for j, toks in enumerate(encoded):
                arr = np.asarray(toks, dtype=dtype)
                f.write(arr.tobytes())
                total += len(arr)
                offsets[start + j + 1] = total
        f.seek(0)
        f.write(_npy_header(dtype, total))
    np.save(tmp / "offsets.npy", offsets)
    (tmp / "ids.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    # key.json last: a folder with a key is complete.
    (tmp / "key.json").write_text(json.dumps(key, indent=1) + "\n", encoding="utf-8")


def build_token_cache(path: PathLike, ids: Sequence[str], texts: Sequence[str], tokenizer: Any, max_len: int, *,
                      key_extra: str = "") -> TokenCache:
    """Open the cache at `path` if its key matches, else (re)build it there. Safe under concurrent callers."""
    path = Path(path)
    ids = [str(i) for i in ids]
    if len(ids) != len(texts):
        raise ValueError(f"{len(ids)} ids but {len(texts)} texts")
    bad = next((i for i in ids if "\n" in i or "\r" in i), None)
    if bad is not None:
        raise ValueError(f"id {bad!r} contains a line break")
    if len(set(ids)) != len(ids):
        raise ValueError("ids are not unique")
    key = _cache_key(ids, texts, tokenizer, max_len, key_extra)
    if _read_key(path) == key:
        return TokenCache.open(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.parent / f".{path.name}.lock")):
        if _read_key(path) == key:  # another process built it while we waited
            return TokenCache.open(path)
        logger.info("tokenizing %d texts (max_len %d) -> %s", len(ids), max_len, path)
        with atomic_path(path) as tmp:
            _write(tmp, ids, texts, tokenizer, max_len, key, desc=f"tokenize {path.name}")
    cache = TokenCache.open(path)
    cache.built = True
    return cache


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "collection"


def _cached(cache_dir: PathLike, name: str, ids: list[str], texts: list[str], tokenizer: Any, max_len: int,
            key_extra: str) -> TokenCache:
    key = _cache_key(ids, texts, tokenizer, max_len, key_extra)
    path = Path(cache_dir) / f"{_safe_name(name)}-{_key_hash(key)}"
    cache = build_token_cache(path, ids, texts, tokenizer, max_len, key_extra=key_extra)
    if not cache.built:
        logger.info("using token cache %s", path)
    return cache


def corpus_token_cache(collection_or_corpus: Collection | Corpus, tokenizer: Any, max_len: int,
                       cache_dir: PathLike) -> TokenCache:
    """Token cache of the passages, each `title <sep> text` (just text when untitled)."""
    if isinstance(collection_or_corpus, Collection):
        corpus, name = collection_or_corpus.corpus, collection_or_corpus.name.split("/")[0]
    else:
        corpus, name = collection_or_corpus, "corpus"
    sep = tokenizer.sep_token or ""
    texts = [corpus.passage_text(i, sep) for i in range(len(corpus))]
    return _cached(cache_dir, f"{name}-corpus", list(corpus.ids), texts, tokenizer, max_len,
                   key_extra=f"passage: title {sep} text")


def query_token_cache(collection: Collection, tokenizer: Any, max_len: int, cache_dir: PathLike) -> TokenCache:
    """Token cache of the collection's (split's) queries."""
    return _cached(cache_dir, f"{collection.name}-queries", list(collection.queries), list(collection.queries.values()),
                   tokenizer, max_len, key_extra="query: text")
