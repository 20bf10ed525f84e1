"""A corpus on disk instead of in Python memory: an Arrow IPC file of its passages and an `IdIndex`, memory-mapped.

A store is a folder `<cache root>/corpus/<key>` holding
  - `corpus.arrow`: record batches of columns id, title, text (strings) and line (int64: where the passage is in
    its source file, for error messages), written a batch at a time as a loader parses;
  - `id_hashes.npy`, `id_rows.npy`: the `IdIndex` over the id column;
  - `meta.json`: written last; the key's parts, the row count, and when the build started.
The key hashes STORE_VERSION, the reader's name and each source file's `file_stamp` (path, size, mtime_ns, ctime_ns,
inode), so reopening costs a `stat` per file and a few memory maps, O(1) in corpus size; a changed file gets another
key and is parsed again. The former store is left (a reader may still map it); clearing the cache root reclaims it.
A build runs under a file lock into `<key>.partial` (removed if it fails, or by the next build if it was killed),
renamed to `<key>` when complete: readers only ever see complete stores.
"""
from __future__ import annotations

import hashlib
import json
import operator
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from filelock import FileLock

from ..utils import PathLike, read_json_or_none
from .id_index import HASHES_FILE, ROWS_FILE, IdIndex

# Bump when the files or their meaning change (this includes the id hash of id_index): old stores are then unused.
STORE_VERSION = 1
CACHE_ENV = "TEVATRON_TELE_CACHE"
CORPUS_FILE = "corpus.arrow"
META_FILE = "meta.json"
SCHEMA = pa.schema([("id", pa.large_string()), ("title", pa.large_string()), ("text", pa.large_string()),
                    ("line", pa.int64())])
_BATCH_ROWS = 50_000  # rows per record batch: what a writer holds in memory
_BATCH_CHARS = 64 << 20  # ... or fewer rows, when their texts are this long
_READ_ROWS = 10_000  # rows converted to Python objects at a time when a column is iterated
# A store is reused only if its sources last changed at least this long before it was built: a change within the
# same timestamp tick as the stamp would not change the stamp (the rule of token_cache.source_hash).
_SETTLE_NS = 2_000_000_000


def cache_root() -> Path:
    """The folder under which corpus stores live: `$TEVATRON_TELE_CACHE`, else `~/.cache/tevatron_tele`."""
    root = os.environ.get(CACHE_ENV, "").strip()
    return Path(root).expanduser() if root else Path.home() / ".cache" / "tevatron_tele"


def store_folder(sources: Sequence[Sequence], reader: str) -> Path:
    """Where the store of a corpus read from `sources` (their `file_stamp`s) by `reader` lives.

    Args:
        sources: the `collections.file_stamp` of each file the corpus is read from.
        reader: how it is read (e.g. "beir", "tsv").

    Returns:
        `<cache root>/corpus/<key>`.
    """
    key = json.dumps([STORE_VERSION, reader, [[str(s[0]), *map(int, s[1:])] for s in sources]])
    return cache_root() / "corpus" / hashlib.sha256(key.encode()).hexdigest()[:24]


class ArrowStrings(Sequence[str]):
    """A read-only, list-like view of a string column of an Arrow table; nothing is copied until read.

    An int index gives a str, a slice a list; iteration converts `_READ_ROWS` rows at a time (one at a time costs
    about a microsecond each). Equal to a list with the same strings.

    Args:
        column: the column.
    """

    def __init__(self, column: pa.ChunkedArray) -> None:
        self._column = column

    def __len__(self) -> int:
        return len(self._column)

    def __getitem__(self, i):  # type: ignore[override]
        n = len(self._column)
        if isinstance(i, slice):
            start, stop, step = i.indices(n)
            if step != 1:
                return [self[k] for k in range(start, stop, step)]
            return self._column.slice(start, max(stop - start, 0)).to_pylist()
        i = operator.index(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for {n} strings")
        return self._column[i].as_py()

    def __iter__(self) -> Iterator[str]:
        for batch in self.batches():
            yield from batch

    def batches(self, size: int | None = None) -> Iterator[list[str]]:
        """The strings in order, as lists.

        Args:
            size: strings per list (default `_READ_ROWS`).

        Returns:
            An iterator over lists of strings.
        """
        size = size or _READ_ROWS
        for start in range(0, len(self._column), size):
            yield self._column.slice(start, size).to_pylist()

    def take(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        """The strings at `rows`, in one vectorised gather.

        Args:
            rows: row numbers.

        Returns:
            The strings, in the order of `rows`.
        """
        return self._column.take(pa.array(np.asarray(rows, dtype=np.int64))).to_pylist()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, (ArrowStrings, list)):
            return NotImplemented
        n = len(self)
        return len(other) == n and all(self[s:s + _READ_ROWS] == list(other[s:s + _READ_ROWS])
                                       for s in range(0, n, _READ_ROWS))

    __hash__ = None  # type: ignore[assignment]  # mutable-looking and equal to lists: unhashable like them

    def __repr__(self) -> str:
        return f"<ArrowStrings: {len(self)} strings>"


class CorpusWriter:
    """Writes passages to an Arrow IPC file a record batch at a time. Use as a context manager.

    Args:
        path: the file to write.
    """

    def __init__(self, path: Path) -> None:
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_file(self._sink, SCHEMA)
        self._columns: tuple[list[str], list[str], list[str], list[int]] = ([], [], [], [])
        self._chars = 0
        self._count = 0

    def add(self, docid: str, title: str, text: str, line: int) -> None:
        """Append one passage.

        Args:
            docid, title, text: the passage (title "" when untitled).
            line: where it is in the source file (1-based line, or item number), for error messages.
        """
        ids, titles, texts, lines = self._columns
        ids.append(docid)
        titles.append(title)
        texts.append(text)
        lines.append(line)
        self._count += 1
        self._chars += len(text)
        if len(ids) >= _BATCH_ROWS or self._chars >= _BATCH_CHARS:
            self._flush()

    def __len__(self) -> int:
        return self._count

    def _flush(self) -> None:
        if self._columns[0]:
            arrays = [pa.array(values, type=f.type) for values, f in zip(self._columns, SCHEMA)]
            self._writer.write_batch(pa.record_batch(arrays, schema=SCHEMA))
            for values in self._columns:
                values.clear()
            self._chars = 0

    def close(self) -> None:
        """Write what is buffered and close the file."""
        try:
            self._flush()
            self._writer.close()
        finally:
            self._sink.close()

    def __enter__(self) -> CorpusWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # the file is discarded: just release it
            self._sink.close()


def _read_table(folder: Path) -> pa.Table:
    # zero-copy: the table's buffers point into the mapping, pages are read when touched
    with pa.memory_map(str(folder / CORPUS_FILE)) as source:
        return pa.ipc.open_file(source).read_all()


class CorpusStore:
    """An opened store: its columns as read-only views and its id index, all memory-mapped.

    Args:
        folder, table: the store's folder (the id index is opened from there) and its Arrow table.
    """

    def __init__(self, folder: Path, table: pa.Table) -> None:
        self.folder = folder
        self.ids = ArrowStrings(table.column("id"))
        self.titles = ArrowStrings(table.column("title"))
        self.texts = ArrowStrings(table.column("text"))
        self.index = IdIndex.open(folder, self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def open(cls, folder: PathLike) -> CorpusStore:
        """Open a complete store; O(1) in its size.

        Args:
            folder: the store's folder.

        Returns:
            The store.
        """
        folder = Path(folder)
        meta = read_json_or_none(folder / META_FILE)
        if not isinstance(meta, dict):
            raise FileNotFoundError(f"{folder / META_FILE} is missing or unreadable: not a complete corpus store")
        table = _read_table(folder)
        if table.num_rows != meta.get("count"):
            raise ValueError(f"{folder}: {table.num_rows} rows, but meta.json says {meta.get('count')}")
        return cls(folder, table)


def _reusable(folder: Path, sources: Sequence[Sequence], built_after: int | None = None) -> CorpusStore | None:
    """The store at `folder` if complete, of this version, and built well after its sources last changed, or begun
    after `built_after` (built by another process while this one waited for the lock, so no staler than ours)."""
    meta = read_json_or_none(folder / META_FILE)
    if not (isinstance(meta, dict) and meta.get("version") == STORE_VERSION):
        return None
    started = int(meta.get("started_ns", 0))
    settled = all(int(stamp[3]) + _SETTLE_NS <= started for stamp in sources)
    if not (settled or (built_after is not None and started >= built_after)):
        return None
    try:
        return CorpusStore.open(folder)
    except (OSError, ValueError, pa.ArrowException):  # damaged: built again
        return None


def _build(folder: Path, sources: Sequence[Sequence], reader: str, fill: Callable[[CorpusWriter], None],
           duplicate: Callable[[str, int, int], Exception]) -> None:
    """Write the store of `folder` (the caller holds its lock) through `<folder>.partial`, then rename it."""
    partial = folder.with_name(f"{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)  # a killed build's: under the lock nobody else is writing it
    partial.mkdir(parents=True)
    try:
        started = time.time_ns()
        with CorpusWriter(partial / CORPUS_FILE) as writer:
            fill(writer)
        table = _read_table(partial)
        ids = ArrowStrings(table.column("id"))
        index = IdIndex.build(ids.batches(), ids, partial)
        repeats = index.duplicates()
        if repeats:
            row, first = repeats[0]
            lines = table.column("line")
            raise duplicate(ids[row], lines[row].as_py(), lines[first].as_py())
        meta: dict[str, Any] = {"version": STORE_VERSION, "reader": reader, "sources": [list(s) for s in sources],
                                "count": table.num_rows, "started_ns": started}
        (partial / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        del table, ids, index
        pa.default_memory_pool().release_unused()  # else the allocator keeps the freed batches' pages
        for name in (CORPUS_FILE, HASHES_FILE, ROWS_FILE, META_FILE):  # on disk before the rename makes them visible
            with open(partial / name, "rb") as f:
                os.fsync(f.fileno())
        if folder.exists():  # a store of this key that is not trusted (too fresh) or damaged: set aside, swap
            old = folder.with_name(f"{folder.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(folder, old)
            os.replace(partial, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(partial, folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def open_or_build(sources: Sequence[Sequence], reader: str, fill: Callable[[CorpusWriter], None],
                  duplicate: Callable[[str, int, int], Exception]) -> CorpusStore:
    """The store of the corpus that `reader` reads from `sources`: reused if one of this key is there, else built.

    Safe under concurrent callers: one builds while the others wait for its lock, then open what it built.

    Args:
        sources, reader: as in `store_folder`; stamps taken before the files are read.
        fill: calls `writer.add` for each passage in order; raises on bad input, and then no store is left.
        duplicate: the exception for a repeated id, from (the id, its line, the line of its first occurrence).

    Returns:
        The opened store.
    """
    folder = store_folder(sources, reader)
    asked = time.time_ns()  # after the caller took the stamps
    store = _reusable(folder, sources)
    if store is not None:
        return store
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder.with_name(f"{folder.name}.lock"))):
        store = _reusable(folder, sources, built_after=asked)  # another process built it while we waited
        if store is None:
            try:
                _build(folder, sources, reader, fill, duplicate)
            except OSError as e:
                if e.filename is None and e.errno is not None:  # a write naming no file (a full disk): the store's
                    e.filename = str(folder)
                raise
            store = CorpusStore.open(folder)
    return store
