"""Negative pools on disk: `pool.jsonl` (one training query per line, ids only) and `pool.stats.json` beside it.

A line is a superset of upstream Tevatron's id format, so `tevatron.retriever` can train on it:
  {"query_id", "query_text", "positive_document_ids": [...], "negative_document_ids": [...],
   "sources": {"ann": [...], "lookahead": [...], "momentum": [...], "bm25": [...]}}
`negative_document_ids` is the mixed list used for training; `sources` keeps where each came from.
"""
from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..utils import InputFileError, PathLike, atomic_path, iter_jsonl, location, write_json
from .line_index import IndexedLines, LineIndex, decode_line

logger = logging.getLogger(__name__)

# The one list of negative sources, in the order a pool's negatives are concatenated.
SOURCES = ("ann", "lookahead", "momentum", "bm25")
# The sources of the teleportation recipe (present, future, past); bm25 is an optional extra.
TELE_SOURCES = ("ann", "lookahead", "momentum")


def ordered_sources(names: Iterable[str]) -> list[str]:
    """Source names in SOURCES order, unknown names after them, sorted.

    Args:
        names: source names, e.g. the keys of a pool line's `sources`.

    Returns:
        The distinct names in that order.
    """
    names = set(names)
    return [s for s in SOURCES if s in names] + sorted(names - set(SOURCES))


class PoolError(InputFileError):
    """Bad pool input; the message names file, line and field."""


@dataclass
class PoolEntry:
    query_id: str
    query_text: str
    positive_document_ids: list[str]
    negative_document_ids: list[str]
    sources: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> str:
        # compact separators: a pool is mostly id lists, and ", " would add a byte per id
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))


def pool_stats_path(path: PathLike) -> Path:
    """The stats file beside a pool.

    Args:
        path: the pool file.

    Returns:
        `pool.jsonl` -> `pool.stats.json` (any other name gets `.stats.json` appended).
    """
    path = Path(path)
    name = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.name
    return path.with_name(name + ".stats.json")


class PoolSummary:
    """The counts `summarize_pool` reports, gathered one entry at a time (a pool is written as it is mined)."""

    def __init__(self) -> None:
        self.queries = self.positives = self.negatives = self.without_negatives = 0
        self.per_source: Counter = Counter()
        self.overlap: Counter = Counter()

    def add(self, e: PoolEntry) -> None:
        self.queries += 1
        self.positives += len(e.positive_document_ids)
        self.negatives += len(e.negative_document_ids)
        self.without_negatives += not e.negative_document_ids
        for name, ids in e.sources.items():
            self.per_source[name] += len(ids)
        names = sorted(e.sources)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                self.overlap[f"{a}&{b}"] += len(set(e.sources[a]) & set(e.sources[b]))

    def result(self) -> dict[str, Any]:
        n = self.queries
        return {
            "queries": n,
            "positives": self.positives,
            "negatives": self.negatives,
            "negatives_per_query": self.negatives / n if n else 0.0,
            "queries_without_negatives": self.without_negatives,
            "source_negatives": dict(self.per_source),
            "source_overlap": dict(self.overlap),
        }


def summarize_pool(entries: Iterable[PoolEntry]) -> dict[str, Any]:
    """Counts that describe a pool: sizes, negatives per source, overlap between sources.

    Args:
        entries: the pool's entries.

    Returns:
        queries, positives, negatives (and per query), queries without negatives, negatives per source and the ids
        shared by each pair of sources.
    """
    summary = PoolSummary()
    for e in entries:
        summary.add(e)
    return summary.result()


def write_pool(path: PathLike, entries: Iterable[PoolEntry],
               stats: dict | Callable[[], dict] | None = None) -> None:
    """Write the pool atomically, and its stats file beside it (the given stats over a computed summary).

    Entries are streamed. The pool is renamed into place only after its stats are written, so a pool on disk always
    has its stats: a process killed before leaves no pool, and the step that writes it runs again.

    Args:
        path: the pool.jsonl to write.
        entries: the entries, in the order to write them.
        stats: fields of pool.stats.json beside the summary (they win over its keys), or a function giving them,
            called once all entries are written (for stats gathered while they were made).
    """
    summary = PoolSummary()
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for e in entries:
                summary.add(e)
                f.write(e.to_json() + "\n")
        extra = stats() if callable(stats) else stats
        write_json(pool_stats_path(path), {**summary.result(), **(extra or {})})
    logger.info("wrote pool of %d queries -> %s", summary.queries, path)


# ---------------------------------------------------------------- reading and validation

def _fail(path: PathLike, line: int | None, field_name: str, problem: str) -> PoolError:
    return PoolError(location(path, line, field_name, problem))


def _id_list(path: PathLike, line: int, name: str, value: Any, *, unique: bool = False) -> list[str]:
    if not isinstance(value, list):
        raise _fail(path, line, name, f"expected a list of id strings, got {type(value).__name__}")
    for x in value:
        if not isinstance(x, str):
            raise _fail(path, line, name, f"expected id strings, got {type(x).__name__} {x!r}")
    if unique:
        dup = next((x for x, c in Counter(value).items() if c > 1), None)
        if dup is not None:
            raise _fail(path, line, name, f"duplicate id {dup!r}")
    return value


def _parse_entry(path: PathLike, line: int, obj: Any) -> PoolEntry:
    if not isinstance(obj, dict):
        raise _fail(path, line, "<json>", f"expected an object, got {type(obj).__name__}")
    for name in ("query_id", "query_text", "positive_document_ids", "negative_document_ids"):
        if name not in obj:
            raise _fail(path, line, name, "missing")
    for name in ("query_id", "query_text"):
        if not isinstance(obj[name], str):
            raise _fail(path, line, name, f"expected a string, got {type(obj[name]).__name__}")
    if not obj["query_text"].strip():
        raise _fail(path, line, "query_text", "empty: a training query needs its text")
    positives = _id_list(path, line, "positive_document_ids", obj["positive_document_ids"], unique=True)
    if not positives:
        raise _fail(path, line, "positive_document_ids", "empty: a training query needs a positive")
    # Negatives may repeat: a negative found by several sources is kept once per source, weighing more.
    negatives = _id_list(path, line, "negative_document_ids", obj["negative_document_ids"])
    raw_sources = obj.get("sources", {})
    if not isinstance(raw_sources, dict):
        raise _fail(path, line, "sources", f"expected an object of source -> ids, got {type(raw_sources).__name__}")
    sources = {name: _id_list(path, line, f"sources.{name}", ids) for name, ids in raw_sources.items()}
    pos_set = set(positives)
    for name, ids in [("negative_document_ids", negatives)] + [(f"sources.{k}", v) for k, v in sources.items()]:
        clash = next((d for d in ids if d in pos_set), None)
        if clash is not None:
            raise _fail(path, line, name, f"negative {clash!r} is a positive of query {obj['query_id']!r}")
    return PoolEntry(obj["query_id"], obj["query_text"], positives, negatives, sources)


_CHECK_BATCH = 4096  # pool entries whose document ids are checked against a corpus in one look-up


def _checked_fields(entry: PoolEntry) -> list[tuple[str, list[str]]]:
    """An entry's id fields in the order they are checked against the known ids."""
    return ([("negative_document_ids", entry.negative_document_ids)]
            + [(f"sources.{k}", v) for k, v in entry.sources.items()]
            + [("positive_document_ids", entry.positive_document_ids)])


def _check_known(path: PathLike, entries: Sequence[tuple[PoolEntry, int]],
                 unknown_ids: Callable[[list[str]], list[str]]) -> None:
    """Refuse the first id of `entries` ((entry, line) pairs) that `unknown_ids` names, with its line and field."""
    ids = list(dict.fromkeys(d for e, _ in entries for _, field_ids in _checked_fields(e) for d in field_ids))
    unknown = set(unknown_ids(ids))
    if not unknown:
        return
    for entry, line in entries:
        for name, field_ids in _checked_fields(entry):
            bad = next((d for d in field_ids if d in unknown), None)
            if bad is not None:
                raise _fail(path, line, name, f"unknown document id {bad!r}")


def iter_pool(path: PathLike, *, known_doc_ids: Container[str] | Iterable[str] | None = None
              ) -> Iterator[PoolEntry]:
    """Read and validate a pool one entry at a time (what `read_pool` returns, without a list of them all).

    Args:
        path, known_doc_ids: as in `read_pool`; a corpus checks the ids of 4,096 entries in one look-up, and entries
            are yielded only once checked, so a consumer never sees one the check would refuse.

    Returns:
        An iterator over the entries, in file order.
    """
    unknown_ids, batch = None, 1
    if hasattr(known_doc_ids, "unknown_ids"):  # a corpus: the ids of many entries in one look-up
        unknown_ids, batch = known_doc_ids.unknown_ids, _CHECK_BATCH
    elif known_doc_ids is not None:
        # a sequence's (or a column view's) `in` is a scan, and a generator has none: those are made into a set
        if not isinstance(known_doc_ids, Container) or isinstance(known_doc_ids, Sequence):
            known_doc_ids = set(known_doc_ids)
        known = known_doc_ids

        def unknown_ids(ids: list[str]) -> list[str]:
            return [d for d in ids if d not in known]

    unchecked: list[tuple[PoolEntry, int]] = []
    seen: dict[str, int] = {}
    other_sources: set[str] = set()
    for line_no, obj in iter_jsonl(path, _fail):
        entry = _parse_entry(path, line_no, obj)
        if entry.query_id in seen:
            raise _fail(path, line_no, "query_id",
                        f"duplicate query id {entry.query_id!r} (first at line {seen[entry.query_id]})")
        seen[entry.query_id] = line_no
        other_sources.update(set(entry.sources) - set(SOURCES))
        if unknown_ids is None:
            yield entry
            continue
        unchecked.append((entry, line_no))
        if len(unchecked) == batch:
            _check_known(path, unchecked, unknown_ids)
            yield from (e for e, _ in unchecked)
            unchecked.clear()
    if unchecked:
        _check_known(path, unchecked, unknown_ids)
        yield from (e for e, _ in unchecked)
    if other_sources:
        logger.warning("%s: sources other than %s: %s", path, SOURCES, sorted(other_sources))


def read_pool(path: PathLike, *, known_doc_ids: Container[str] | Iterable[str] | None = None) -> list[PoolEntry]:
    """Read and validate a pool; `known_doc_ids` also checks that every id it names exists.

    Args:
        path: the pool.jsonl.
        known_doc_ids: the ids that exist: a container with a fast `in` (a set, a dict, a `Corpus`, which uses its
            index, not a set of every id), or any iterable of ids (made into a set).

    Returns:
        The entries, in file order.
    """
    return list(iter_pool(path, known_doc_ids=known_doc_ids))


# the query id of a line as write_pool writes it (first key, compact); other lines are parsed whole
_LEADING_QUERY_ID = re.compile(rb'\A\s*\{\s*"query_id"\s*:\s*("(?:[^"\\]|\\.)*")\s*,')


def _pool_line_key(path: PathLike, raw: bytes, line_no: int) -> str | None:
    """The query id of a pool line (None for a blank one), refusing a line that has none."""
    if not raw.strip():
        return None
    match = _LEADING_QUERY_ID.match(raw)
    try:
        obj = json.loads(match.group(1) if match else raw)
    except UnicodeDecodeError:
        raise _fail(path, line_no, "<utf-8>", "invalid UTF-8; save the file as UTF-8") from None
    except json.JSONDecodeError as e:
        raise _fail(path, line_no, "<json>", f"malformed JSON ({e.msg} at column {e.colno})") from None
    if match:
        return obj
    if not isinstance(obj, dict):
        raise _fail(path, line_no, "<json>", f"expected an object, got {type(obj).__name__}")
    if not isinstance(obj.get("query_id"), str):
        raise _fail(path, line_no, "query_id", "missing" if "query_id" not in obj else
                    f"expected a string, got {type(obj['query_id']).__name__}")
    return obj["query_id"]


class IndexedPool(IndexedLines[PoolEntry]):
    """A pool file as a read-only mapping of query id -> `PoolEntry`, read and validated when looked up.

    Opening scans the file once for each query's line (`LineIndex`; a repeated query id is refused); `pool[qid]`
    parses and checks that line as `read_pool` does. At a few integers per query, a step that needs an earlier pool
    query by query (momentum, the stored scores) does not hold it.

    Args:
        path: the pool.jsonl.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self._index = LineIndex(self.path, lambda raw, n: _pool_line_key(path, raw, n), unique="query_id",
                                error=_fail)

    def __getitem__(self, qid: str) -> PoolEntry:
        if qid not in self._index:
            raise KeyError(qid)
        line_no, raw = next(self._index.read(qid))
        line = decode_line(self.path, line_no, raw, _fail)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise _fail(self.path, line_no, "<json>", f"malformed JSON ({e.msg} at column {e.colno})") from None
        return _parse_entry(self.path, line_no, obj)

    def values(self) -> Iterator[PoolEntry]:  # type: ignore[override]
        """The entries in file order, read in one pass (faster than a look-up per query)."""
        return iter_pool(self.path)

    def items(self) -> Iterator[tuple[str, PoolEntry]]:  # type: ignore[override]
        return ((e.query_id, e) for e in iter_pool(self.path))


def read_pool_stats(path: PathLike) -> dict:
    """The stats written beside a pool.

    Args:
        path: the pool file.

    Returns:
        Its pool.stats.json.
    """
    with open(pool_stats_path(path), encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------- reference (tokenized) training files

def _token_ids(path: Path, line: int, name: str, value: Any) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in value):
        raise _fail(path, line, name, "expected a list of token ids (integers)")
    return value


def read_reference_pool(path: PathLike) -> list[dict]:
    """Read reference ANCE-Tele training files: {"query": [ids], "positives": [[ids]], "negatives": [[ids]]} lines.

    Args:
        path: one file or a folder of them (`*.json`/`*.jsonl`, read in name order, e.g. split00.hn.json).

    Returns:
        The training examples, one dict per line, token ids as in the files.
    """
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no .json/.jsonl files in {path}")
    out: list[dict] = []
    for file in files:
        for line_no, obj in iter_jsonl(file, _fail):
            if "query" not in obj:
                raise _fail(file, line_no, "query", "missing")
            query = _token_ids(file, line_no, "query", obj["query"])
            groups = {}
            for name in ("positives", "negatives"):
                value = obj.get(name, [] if name == "negatives" else None)
                if value is None:
                    raise _fail(file, line_no, name, "missing")
                if not isinstance(value, list):
                    raise _fail(file, line_no, name, "expected a list of token-id lists")
                groups[name] = [_token_ids(file, line_no, name, p) for p in value]
            out.append({"query": query, **groups})
    return out


def detect_pool_format(path: str | Path) -> str:
    """The format of a training file.

    Args:
        path: a file, or a folder of such files (as the reference code writes them).

    Returns:
        'ids' for pool.jsonl (query_id, ...), 'reference' for tokenized {query, positives, negatives}.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl"))
        if not files:
            raise FileNotFoundError(f"no .json/.jsonl files in {path}")
        path = files[0]
    for line_no, obj in iter_jsonl(path, _fail):
        if "query_id" in obj:
            return "ids"
        if "query" in obj and "positives" in obj:
            return "reference"
        raise _fail(path, line_no, "query_id", "missing: neither a pool.jsonl line (query_id, ...) nor a tokenized "
                                               "line (query, positives)")
    raise _fail(path, None, "<file>", "empty: no training queries in the pool")
