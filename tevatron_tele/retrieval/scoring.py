"""Score chosen (query, passage) pairs with one episode's model.

Forgetting needs S_j(q, d) only for the queries, positives and pool/probe negatives involved, so only those are encoded:
a few thousand texts per episode instead of the whole corpus again.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from ..data.id_index import IdIndex
from ..data.token_cache import TokenCache
from ..utils import PathLike, atomic_path
from .embeddings import load_embeddings, shard_prefixes
from .encode import encode_texts

logger = logging.getLogger(__name__)

ScoreTable = dict[str, dict[str, float]]


class Scorer(Protocol):
    """Scores a query's passages, leaving out what it cannot score (e.g. `EmbeddingScorer`)."""

    def scores(self, qid: str, docids: Iterable[str]) -> dict[str, float]: ...


def with_positives(pairs: Mapping[str, Iterable[str]], positives: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Pairs with each query's positives added (S(q, d+) needs them).

    Args:
        pairs, positives: {query id: docids}, and each query's positives.

    Returns:
        {query id: its positives, then its docids}, without duplicates, order kept.
    """
    out = {}
    for qid, docids in pairs.items():
        out[qid] = list(dict.fromkeys([*positives.get(qid, ()), *docids]))
    return out


def score_pairs(
    model: Any,
    tokenizer: Any,
    query_cache: TokenCache,
    corpus_cache: TokenCache,
    pairs: Mapping[str, Iterable[str]],
    *,
    q_max_len: int = 32,
    p_max_len: int = 128,
    batch_size: int = 64,
    dtype: str = "float32",
    progress: bool = True,
) -> ScoreTable:
    """S(q, d) (the model's dot product) of every `pairs[qid]` docid, each distinct query and passage encoded once.

    Embeddings are rounded to `dtype` before the float32 dot product: with the run's `embedding_dtype` the scores equal
    those the runner stores from its embeddings, so that episodes scored either way can be compared.

    Args:
        model, tokenizer: a loaded encoder (`backends.load_encoder`) and its tokenizer.
        query_cache, corpus_cache: the token caches of the queries (by qid) and of the passages (by docid).
        pairs: {query id: passage ids} to score.
        q_max_len, p_max_len: query and passage lengths in tokens.
        batch_size: items per forward pass.
        dtype: the type embeddings are rounded to.
        progress: show progress bars.

    Returns:
        {query id: {passage id: score}}.
    """
    qids = sorted(pairs)
    docids = sorted({d for q in qids for d in pairs[q]})
    logger.info("scoring %d pairs: %d queries, %d passages", sum(len(set(pairs[q])) for q in qids), len(qids),
                len(docids))
    q_emb = encode_texts(model, tokenizer, query_cache, qids, is_query=True, max_len=q_max_len,
                         batch_size=batch_size, dtype=dtype, progress=progress).astype(np.float32)
    p_emb = encode_texts(model, tokenizer, corpus_cache, docids, is_query=False, max_len=p_max_len,
                         batch_size=batch_size, dtype=dtype, progress=progress).astype(np.float32)
    row = {d: i for i, d in enumerate(docids)}
    table: ScoreTable = {}
    for qi, qid in enumerate(qids):
        wanted = list(dict.fromkeys(pairs[qid]))
        scores = p_emb[[row[d] for d in wanted]] @ q_emb[qi] if wanted else np.empty(0, dtype=np.float32)
        table[qid] = {d: float(s) for d, s in zip(wanted, scores)}
    return table


class EmbeddingScorer:
    """S(q, d) = <q, d>, float32 dot products of the vectors as stored in an episode's embedding files (training queries
    and corpus, sharded or not), memory-mapped so that only the rows asked for are read. The runner's `scores.npz`, the
    positive-aware filter and `score_pairs_from_embeddings` all score through it. Passages are found through an
    `IdIndex` over the corpus ids (12 bytes per passage besides the ids) rather than a dict.

    Args:
        query_prefix, corpus_prefix: the training queries' and corpus' embedding prefixes (or shards' common prefix).
    """

    def __init__(self, query_prefix: PathLike, corpus_prefix: PathLike):
        self._query_shards, query_ids = _open_shards(query_prefix)
        self._query_row: dict[str, tuple[int, int]] = {}
        for s, ids in enumerate(query_ids):
            self._query_row.update((q, (s, n)) for n, q in enumerate(ids))
        self._shards, corpus_ids = _open_shards(corpus_prefix)
        self._starts = np.cumsum([0, *map(len, corpus_ids)])  # global row of each shard's first passage
        ids = [d for shard_ids in corpus_ids for d in shard_ids]
        self._index = IdIndex.build([ids], ids)
        self._dim = self._shards[0].shape[1] if self._shards else 0

    def scores(self, qid: str, docids: Iterable[str]) -> dict[str, float]:
        """S(qid, d) of the given passages.

        Args:
            qid, docids: the query and the passages.

        Returns:
            {docid: score}, in their order; passages (or a query) without a vector are left out.
        """
        if qid not in self._query_row:
            return {}
        docs = list(dict.fromkeys(docids))
        rows = self._index.positions(docs, missing=-1)
        found = np.flatnonzero(rows >= 0)
        if not len(found):
            return {}
        docs, rows = [docs[k] for k in found], rows[found]
        shard_of = np.searchsorted(self._starts, rows, side="right") - 1
        vecs = np.empty((len(docs), self._dim), dtype=np.float32)
        for s in np.unique(shard_of).tolist():
            ks = np.flatnonzero(shard_of == s)
            vecs[ks] = np.asarray(self._shards[s][rows[ks] - self._starts[s]], dtype=np.float32)
        s, n = self._query_row[qid]
        values = vecs @ np.asarray(self._query_shards[s][n], dtype=np.float32)
        return {d: float(v) for d, v in zip(docs, values)}


def _open_shards(prefix: PathLike) -> tuple[list[np.ndarray], list[list[str]]]:
    """The memory-mapped arrays and the ids of an embedding prefix's shards (one for an unsharded prefix)."""
    arrays, ids = [], []
    for shard in shard_prefixes(prefix):
        emb, shard_ids = load_embeddings(shard, mmap=True)
        arrays.append(emb)
        ids.append(shard_ids)
    return arrays, ids


def iter_scores(scorer: Scorer, pairs: Iterable[tuple[str, Iterable[str]]]) -> Iterator[tuple[str, dict[str, float]]]:
    """(query id, its scored passages) for each query of `pairs` with any passage scored, a query at a time.

    Args:
        scorer: the scores.
        pairs: (query id, passage ids) per query.

    Returns:
        An iterator over (query id, {passage id: score}).
    """
    for qid, docids in pairs:
        scores = scorer.scores(qid, docids)
        if scores:
            yield qid, scores


def score_pairs_from_embeddings(query_prefix: PathLike, corpus_prefix: PathLike,
                                pairs: Mapping[str, Iterable[str]]) -> ScoreTable:
    """S(q, d) from embeddings an episode already wrote (no encoding at all), by `EmbeddingScorer`.

    Args:
        query_prefix, corpus_prefix: the queries' and the corpus' embeddings prefixes.
        pairs: {query id: docids}.

    Returns:
        The table; pairs whose query or passage has no vector are left out (a query with none has no row).
    """
    return dict(iter_scores(EmbeddingScorer(query_prefix, corpus_prefix), pairs.items()))


def save_score_table(path: PathLike, table: ScoreTable) -> None:
    """Write a score table as a compact .npz, atomically (`save_score_rows` for a table made query by query).

    Args:
        path: the .npz to write.
        table: {query id: {passage id: score}}.
    """
    save_score_rows(path, ((q, list(row), list(row.values())) for q, row in table.items()))


def save_score_rows(path: PathLike, rows: Iterable[tuple[str, Sequence[str], Sequence[float]]]) -> None:
    """Write a score table given one query at a time, as a compressed .npz, atomically.

    The file holds the query ids once each (`query_ids`, `query_counts`: each query's number of pairs), the passage ids
    as UTF-8 bytes (`docids_utf8`) and float32 `scores`, the pairs grouped by query: a few bytes per pair in memory
    while it is written, where a table of Python dicts takes hundreds.

    Args:
        path: the .npz to write.
        rows: (query id, passage ids, their scores) per query; a query given twice is refused.
    """
    qids: list[str] = []
    counts: list[int] = []
    docs: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    seen: set[str] = set()
    for qid, docids, values in rows:
        if qid in seen:
            raise ValueError(f"{path}: query {qid!r} given twice")
        seen.add(qid)
        qids.append(qid)
        counts.append(len(docids))
        docs.append(np.asarray([d.encode("utf-8", "surrogatepass") for d in docids], dtype=np.bytes_))
        scores.append(np.asarray(values, dtype=np.float32))
    arrays = {"query_ids": np.asarray(qids, dtype=np.str_), "query_counts": np.asarray(counts, dtype=np.int64),
              "docids_utf8": np.concatenate(docs) if docs else np.empty(0, dtype="S1"),
              "scores": np.concatenate(scores) if scores else np.empty(0, dtype=np.float32)}
    del docs, scores
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def save_scored_pairs(path: PathLike, scorer: Scorer, pairs: Iterable[tuple[str, Sequence[str]]]) -> int:
    """Score pairs a query at a time (`iter_scores`) and write them (`save_score_rows`), never all in memory.

    Args:
        path: the .npz to write.
        scorer, pairs: as for `iter_scores`.

    Returns:
        The number of pairs written (a query with none scored has no row).
    """
    written = 0

    def rows() -> Iterator[tuple[str, list[str], list[float]]]:
        nonlocal written
        for qid, scores in iter_scores(scorer, pairs):
            written += len(scores)
            yield qid, list(scores), list(scores.values())

    save_score_rows(path, rows())
    return written


class StoredScores(Mapping[str, dict[str, float]]):
    """A stored score table read as {query id: {passage id: score}}; the file's arrays stay as they are (a few bytes per
    pair), a query's row is decoded when asked for, and the last one is kept, since readers look up one query's passages
    one after the other.

    Args:
        path: a .npz written by `save_score_rows` / `save_score_table` (or by earlier versions: one query id per pair,
            `qids` / `docids` / `scores`).
    """

    def __init__(self, path: PathLike) -> None:
        with np.load(path) as data:
            if "query_ids" in data:
                qids = data["query_ids"].tolist()
                counts = data["query_counts"]
                self._docids, self._scores = data["docids_utf8"], data["scores"]
            else:  # one query id per pair, in query groups
                pair_qids = data["qids"]
                starts = np.flatnonzero(np.r_[True, pair_qids[1:] != pair_qids[:-1]]) if len(pair_qids) else []
                qids = pair_qids[starts].tolist() if len(pair_qids) else []
                counts = np.diff(np.r_[starts, len(pair_qids)]) if len(pair_qids) else np.empty(0, dtype=np.int64)
                self._docids, self._scores = data["docids"], data["scores"]
        ends = np.cumsum(counts)
        self._rows: dict[str, tuple[int, int]] = {}
        for q, end, n in zip(qids, ends.tolist(), np.asarray(counts).tolist()):
            start = end - n
            if q in self._rows:  # an older file may list a query in two places: the rows are merged
                self._rows[q] = (*self._rows[q], start, end)
            else:
                self._rows[q] = (start, end)
        self._last: tuple[str, dict[str, float]] | None = None

    def __getitem__(self, qid: str) -> dict[str, float]:
        if self._last is not None and self._last[0] == qid:
            return self._last[1]
        spans = self._rows[qid]
        row: dict[str, float] = {}
        for k in range(0, len(spans), 2):
            a, b = spans[k], spans[k + 1]
            docs = self._docids[a:b].tolist()
            if docs and isinstance(docs[0], bytes):
                docs = [d.decode("utf-8", "surrogatepass") for d in docs]
            row.update(zip(docs, self._scores[a:b].tolist()))
        self._last = (qid, row)
        return row

    def __contains__(self, qid: object) -> bool:
        return qid in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def pairs(self) -> int:
        """The number of (query, passage) pairs stored.

        Returns:
            The count.
        """
        return int(self._scores.size)


def load_score_table(path: PathLike) -> ScoreTable:
    """A stored score table, whole, as dicts (`StoredScores` reads a large one query by query).

    Args:
        path: the .npz.

    Returns:
        {query id: {passage id: score}}.
    """
    stored = StoredScores(path)
    return {q: stored[q] for q in stored}  # each row is a dict made for that query


def covers(table: ScoreTable, pairs: Mapping[str, Iterable[str]]) -> bool:
    """Whether a table holds a score for every (query, passage) of `pairs`.

    Args:
        table: a score table (a `StoredScores` makes each row on access).
        pairs: {query id: docids}.

    Returns:
        True when it does.
    """
    for qid, docids in pairs.items():
        if qid not in table:
            return False
        row = table[qid]  # once per query: a stored table makes the row on access
        if not all(d in row for d in docids):
            return False
    return True
