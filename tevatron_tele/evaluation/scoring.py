"""Score chosen (query, passage) pairs with one episode's model.

Forgetting needs S_j(q, d) only for the queries, positives and pool/probe negatives involved, so
only those are encoded: a few thousand texts per episode instead of the whole corpus again.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..utils import PathLike

logger = logging.getLogger(__name__)

ScoreTable = dict[str, dict[str, float]]


def with_positives(pairs: Mapping[str, Iterable[str]], positives: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """`pairs` with each query's positives added (S(q, d+) needs them), without duplicates, order kept."""
    out = {}
    for qid, docids in pairs.items():
        out[qid] = list(dict.fromkeys([*positives.get(qid, ()), *docids]))
    return out


def score_pairs(
    model_dir: PathLike | None,
    query_cache,
    corpus_cache,
    pairs: Mapping[str, Iterable[str]],
    *,
    q_max_len: int = 32,
    p_max_len: int = 128,
    batch_size: int = 64,
    device: str = "cpu",
    model=None,
    tokenizer=None,
    dtype: str = "float32",
    progress: bool = True,
) -> ScoreTable:
    """S(q, d) for every `pairs[qid]` docid, as `table[qid][docid]` (the model's dot product).

    Each distinct query and passage is encoded once, from the token caches (queries by qid, passages
    by docid). Pass a loaded `model` and `tokenizer` to skip loading from `model_dir`. Embeddings are
    rounded to `dtype` before the float32 dot product: with the run's `embedding_dtype` the scores equal
    those the runner stores from its embeddings, so that episodes scored either way can be compared.
    """
    from ..retrieval.encode import encode_texts

    qids = sorted(pairs)
    docids = sorted({d for q in qids for d in pairs[q]})
    if model is None or tokenizer is None:
        from ..backends import load_encoder

        model, tokenizer = load_encoder(model_dir, device)
    logger.info("scoring %d pairs: %d queries, %d passages with %s",
                sum(len(set(pairs[q])) for q in qids), len(qids), len(docids), model_dir or "the given model")
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


def score_pairs_from_embeddings(query_prefix: PathLike, corpus_prefix: PathLike,
                                pairs: Mapping[str, Iterable[str]]) -> ScoreTable:
    """S(q, d) for `pairs` from embeddings an episode already wrote (no encoding at all).

    Corpus shards are memory-mapped and only the rows of the wanted passages are read. Pairs whose query
    or passage has no vector are left out of the table.
    """
    from ..retrieval.embeddings import load_all, load_rows

    q_emb, q_ids = load_all(query_prefix)
    q_row = {q: i for i, q in enumerate(q_ids)}
    rows, ids = load_rows(corpus_prefix, {d for q, ds in pairs.items() if q in q_row for d in ds})
    rows = rows.astype(np.float32)
    p_vecs = {d: rows[k] for k, d in enumerate(ids)}
    table: ScoreTable = {}
    for qid, docids in pairs.items():
        if qid not in q_row:
            continue
        docs = [d for d in dict.fromkeys(docids) if d in p_vecs]
        if docs:
            scores = np.stack([p_vecs[d] for d in docs]) @ np.asarray(q_emb[q_row[qid]], dtype=np.float32)
            table[qid] = {d: float(s) for d, s in zip(docs, scores)}
    return table


def save_score_table(path: PathLike, table: ScoreTable) -> None:
    """Write a score table as a compact .npz (query ids, passage ids, float32 scores), atomically."""
    from ..utils import atomic_path

    qids = [q for q, row in table.items() for _ in row]
    docids = [d for row in table.values() for d in row]
    scores = np.asarray([s for row in table.values() for s in row.values()], dtype=np.float32)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, qids=np.asarray(qids), docids=np.asarray(docids), scores=scores)


def load_score_table(path: PathLike) -> ScoreTable:
    with np.load(path) as data:
        table: ScoreTable = {}
        for q, d, s in zip(data["qids"].tolist(), data["docids"].tolist(), data["scores"].tolist()):
            table.setdefault(q, {})[d] = s
    return table


def covers(table: ScoreTable, pairs: Mapping[str, Iterable[str]]) -> bool:
    """Whether `table` holds a score for every (query, passage) of `pairs`."""
    return all(qid in table and all(d in table[qid] for d in docids) for qid, docids in pairs.items())
