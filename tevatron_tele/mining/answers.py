"""QA collections (DPR-style NQ / TriviaQA): a retrieved passage that contains an answer is not a negative.

The answer test is DPR's (as Pyserini's `evaluate_dpr_retrieval`; tests check that they agree): both texts are
Unicode-NFD normalised, split into runs of letters, digits and marks or single other visible characters, lower-cased,
and an answer matches when its token sequence occurs contiguously in the passage's. One deliberate difference: an empty
answer matches nothing here, where DPR's rule would match, and so exclude, every passage.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from functools import lru_cache

import regex

_TOKEN = regex.compile(r"[\p{L}\p{N}\p{M}]+|[^\p{Z}\p{C}]", flags=regex.UNICODE | regex.MULTILINE)


def normalized_tokens(text: str) -> list[str]:
    """DPR's token sequence of a text.

    Args:
        text: a passage or an answer.

    Returns:
        Its NFD-normalised, lower-cased word and symbol tokens.
    """
    return [t.lower() for t in _TOKEN.findall(unicodedata.normalize("NFD", text))]


@lru_cache(maxsize=65536)
def _answer_tokens(answer: str) -> tuple[str, ...]:
    return tuple(normalized_tokens(answer))


def has_answer(answers: Sequence[str], text: str) -> bool:
    """Whether a passage holds an answer (DPR's rule).

    Args:
        answers, text: the query's answers and the passage's text.

    Returns:
        True when any answer's token sequence occurs contiguously in the text's.
    """
    tokens = normalized_tokens(text)
    for answer in answers:
        target = _answer_tokens(answer)
        n = len(target)
        if n == 0:
            continue
        first = target[0]
        for i in range(len(tokens) - n + 1):
            if tokens[i] == first and tuple(tokens[i:i + n]) == target:
                return True
    return False


def answer_passages(
    run: Mapping[str, Sequence[tuple[str, float]]],
    answers: Mapping[str, Sequence[str]],
    corpus,
    depth: int = 200,
) -> dict[str, list[str]]:
    """The passages of each query's ranking that hold one of its answers.

    Args:
        run: {query id: [(docid, score), ...]} in rank order.
        answers: each query's answers.
        corpus: the corpus (`texts` and `position(docid)`).
        depth: the passages looked at per query (its top `depth`).

    Returns:
        {query id: docids in rank order}, for the queries with at least one.
    """
    out: dict[str, list[str]] = {}
    for qid, ranked in run.items():
        ans = answers.get(qid)
        if not ans:
            continue
        hits = [d for d, _ in ranked[:depth] if has_answer(ans, corpus.texts[corpus.position(d)])]
        if hits:
            out[qid] = hits
    return out


def answer_positives_and_exclusions(
    collection,
    query_runs: Sequence[Mapping[str, Sequence[tuple[str, float]]]],
    positives: Mapping[str, Sequence[str]],
    depth: int = 200,
    positive_run: Mapping[str, Sequence[tuple[str, float]]] | None = None,
) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """(positives, exclusions) for a QA collection: passages holding an answer in a query's rankings are never its
    negatives, and a query without a judged positive takes its best-ranked one in the first query run (as the reference
    NQ recipe does).

    Args:
        collection: the QA collection (`answers`, `corpus`).
        query_runs: rankings keyed by query id; only the first one's answer passages become positives.
        positives: each query's judged positives.
        depth: the passages looked at per ranking.
        positive_run: the rankings of the positive passages, keyed by positive docid (lookahead), or None.

    Returns:
        (each query's positives, each query's passages that are never negatives).
    """
    answers = collection.answers or {}
    positives = {q: list(p) for q, p in positives.items()}
    exclude: dict[str, set[str]] = {}
    for n, run in enumerate(query_runs):
        for qid, docs in answer_passages(run, answers, collection.corpus, depth).items():
            exclude.setdefault(qid, set()).update(docs)
            if n == 0 and not positives.get(qid):
                positives[qid] = [docs[0]]
    if positive_run is not None:
        by_query: dict[str, list[tuple[str, float]]] = {}
        for qid, pos in positives.items():
            for p in pos:
                by_query.setdefault(qid, []).extend(positive_run.get(p, [])[:depth])
        longest = max((len(r) for r in by_query.values()), default=0)
        for qid, docs in answer_passages(by_query, answers, collection.corpus, longest).items():
            exclude.setdefault(qid, set()).update(docs)
    return positives, exclude
