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
    progress: bool = True,
) -> ScoreTable:
    """S(q, d) for every `pairs[qid]` docid, as `table[qid][docid]` (the model's dot product).

    Each distinct query and passage is encoded once, from the token caches (queries by qid, passages
    by docid). Pass a loaded `model` and `tokenizer` to skip loading from `model_dir`.
    """
    from ..mining.encode import encode_texts

    qids = sorted(pairs)
    docids = sorted({d for q in qids for d in pairs[q]})
    if model is None or tokenizer is None:
        from ..modeling import load_encoder

        model, tokenizer = load_encoder(model_dir, device)
    logger.info("scoring %d pairs: %d queries, %d passages with %s",
                sum(len(set(pairs[q])) for q in qids), len(qids), len(docids), model_dir or "the given model")
    q_emb = encode_texts(model, tokenizer, query_cache, qids, is_query=True, max_len=q_max_len,
                         batch_size=batch_size, dtype="float32", progress=progress)
    p_emb = encode_texts(model, tokenizer, corpus_cache, docids, is_query=False, max_len=p_max_len,
                         batch_size=batch_size, dtype="float32", progress=progress)
    row = {d: i for i, d in enumerate(docids)}
    table: ScoreTable = {}
    for qi, qid in enumerate(qids):
        wanted = list(dict.fromkeys(pairs[qid]))
        scores = p_emb[[row[d] for d in wanted]] @ q_emb[qi] if wanted else np.empty(0, dtype=np.float32)
        table[qid] = {d: float(s) for d, s in zip(wanted, scores)}
    return table
