"""Forgetting across episodes, as pure functions of score tables (METHOD.md, "How forgetting is measured").

Inputs: a score table per episode j, `table[qid][docid] = S_j(q, d)`, holding every pair asked about and the query's
positives; `positives[qid]`, the query's judged positives; pairs per episode (`qid -> docids`): the episode's training
pool for own-pool rates, or the same fixed probe for every episode. S_j(q, d+) is the MAX over the positives' scores: a
negative hurts retrieval only when it outranks the best positive, so "below the positive" means below the best one and
"above the positive" means above all of them.

Definitions (comparisons are strict, and a tie is neither learned nor forgotten; two scores within TIE_TOL * max(1,
|S(q, d+)|) count as tied, so the float noise of batching or fp16 cannot decide a case)
- learned_i  = {(q, d) in pairs_i : S_i(q, d) < S_i(q, d+)};
- forgotten at j, of a set L of earlier learned pairs = {(q, d) in L : S_j(q, d) > S_j(q, d+)};
- forgetting rate at j = |forgotten_j(L_j)| / |L_j| with L_j = union of learned_i over episodes i < j: a pair learned in
  several earlier episodes counts once, and a pair never learned never counts, however it scores later. The per-(i, j)
  breakdown is in the `matrix` of `forgetting_by_episode`.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

Pair = tuple[str, str]
ScoreTable = Mapping[str, Mapping[str, float]]
Pairs = Mapping[str, Iterable[str]]
Positives = Mapping[str, Sequence[str]]

TIE_TOL = 1e-5


def positive_score(table: ScoreTable, positives: Positives, qid: str) -> float:
    """S(q, d+): the best score among q's positives.

    Args:
        table, positives: one episode's score table; each query's positives.
        qid: the query.

    Returns:
        The score; a KeyError when none of its positives has one.
    """
    scores = table.get(qid, {})
    found = [scores[p] for p in positives.get(qid, ()) if p in scores]
    if not found:
        raise KeyError(f"query {qid!r}: none of its positives {list(positives.get(qid, ()))[:5]} has a score")
    return max(found)


def _pair_score(table: ScoreTable, qid: str, docid: str) -> float:
    try:
        return table[qid][docid]
    except KeyError:
        raise KeyError(f"no score for query {qid!r}, passage {docid!r}") from None


def as_pair_set(pairs: Pairs, positives: Positives | None = None) -> set[Pair]:
    """Flatten `qid -> docids` into (qid, docid) pairs.

    Args:
        pairs: {query id: docids}.
        positives: each query's positives, which are dropped.

    Returns:
        The pairs.
    """
    out = set()
    for qid, docids in pairs.items():
        own = set(positives.get(qid, ())) if positives is not None else set()
        out.update((qid, d) for d in docids if d not in own)
    return out


def _compare(pairs: Iterable[Pair], table: ScoreTable, positives: Positives, sign: int) -> set[Pair]:
    cache: dict[str, float] = {}
    out = set()
    for qid, docid in pairs:
        if qid not in cache:
            cache[qid] = positive_score(table, positives, qid)
        diff = _pair_score(table, qid, docid) - cache[qid]
        if diff * sign > TIE_TOL * max(1.0, abs(cache[qid])):
            out.add((qid, docid))
    return out


def above_positive(pairs: Iterable[Pair], table: ScoreTable, positives: Positives) -> set[Pair]:
    """The pairs scored strictly above (beyond TIE_TOL) the query's best positive.

    Args:
        pairs: (query id, docid) pairs.
        table, positives: one episode's score table; each query's positives.

    Returns:
        Those pairs.
    """
    return _compare(pairs, table, positives, +1)


def learned_pairs(pairs: Pairs, table: ScoreTable, positives: Positives) -> set[Pair]:
    """learned_i: the negatives of `pairs` that the episode's model scores strictly below the positive.

    Args:
        pairs: {query id: docids}.
        table, positives: the episode's score table; each query's positives.

    Returns:
        Those (query id, docid) pairs.
    """
    return _compare(as_pair_set(pairs, positives), table, positives, -1)


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def forgetting_by_episode(
    pairs_by_episode: Mapping[int, Pairs], tables: Mapping[int, ScoreTable], positives: Positives
) -> dict:
    """Forgetting rates for every episode j that has a score table and at least one earlier learning episode.

    Args:
        pairs_by_episode: {i: the negatives examined for learning in episode i (its pool, or the probe)}.
        tables: {j: the scores after episode j}.
        positives: each query's positives.

    Returns:
        JSON-ready lists: "learned" [{"episode": i, "pairs": |pairs_i|, "learned": |learned_i|}], "rates" [{"episode":
        j, "learned_before": |L_j|, "forgotten": n, "rate": n / |L_j|}] and "matrix" [{"learned_in": i, "episode": j,
        "learned": |learned_i|, "forgotten": n, "rate"}].
    """
    learned: dict[int, set[Pair]] = {}
    learned_rows = []
    for i in sorted(pairs_by_episode):
        if i not in tables:
            raise KeyError(f"episode {i} has pairs to learn but no score table")
        pair_set = as_pair_set(pairs_by_episode[i], positives)
        learned[i] = _compare(pair_set, tables[i], positives, -1)
        learned_rows.append({"episode": i, "pairs": len(pair_set), "learned": len(learned[i])})

    rates, matrix = [], []
    for j in sorted(tables):
        earlier = [i for i in learned if i < j]
        if not earlier:
            continue
        union: set[Pair] = set().union(*(learned[i] for i in earlier))
        forgotten = above_positive(union, tables[j], positives)
        rates.append({"episode": j, "learned_before": len(union), "forgotten": len(forgotten),
                      "rate": _rate(len(forgotten), len(union))})
        for i in earlier:
            n = len(learned[i] & forgotten)
            matrix.append({"learned_in": i, "episode": j, "learned": len(learned[i]), "forgotten": n,
                           "rate": _rate(n, len(learned[i]))})
    return {"learned": learned_rows, "rates": rates, "matrix": matrix}


# ---- Overlap of consecutive negative sets --------------------------------------------------------------

def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    """|a & b| / |a | b| of two sets of ids.

    Args:
        a, b: the ids.

    Returns:
        The overlap; 1.0 when both are empty.
    """
    a, b = set(a), set(b)
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def top_k_negatives(ranking: Mapping[str, Sequence[tuple[str, float]]], positives: Positives, k: int) -> dict:
    """The ANN negatives before sampling: the top k of each query's ranking minus its judged positives.

    Args:
        ranking: {query id: [(docid, score), ...]}, best first.
        positives: each query's positives.
        k: depth.

    Returns:
        {query id: docids}.
    """
    return {
        q: [d for d, _ in ranked[:k] if d not in set(positives.get(q, ()))]
        for q, ranked in ranking.items()
    }


def consecutive_overlap(negatives_by_episode: Mapping[int, Pairs]) -> list[dict]:
    """Mean per-query Jaccard of consecutive episodes' negative sets, over the queries both hold.

    Args:
        negatives_by_episode: {episode: {query id: negatives}}.

    Returns:
        [{"from", "to", "queries", "jaccard", "change": 1 - jaccard (0 for negatives that never move)}].
    """
    episodes = sorted(negatives_by_episode)
    rows = []
    for a, b in zip(episodes, episodes[1:]):
        na, nb = negatives_by_episode[a], negatives_by_episode[b]
        common = sorted(set(na) & set(nb))
        values = [jaccard(na[q], nb[q]) for q in common]
        mean = sum(values) / len(values) if values else None
        rows.append({"from": a, "to": b, "queries": len(common), "jaccard": mean,
                     "change": None if mean is None else 1.0 - mean})
    return rows


# ---- Where the negatives come from ---------------------------------------------------------------------

def source_contribution(
    sources_by_query: Mapping[str, Mapping[str, Iterable[str]]], table: ScoreTable, positives: Positives
) -> dict:
    """Per source, how much of the pool it supplies and how many of its negatives still outrank the positive after the
    episode (S > S+). A negative found by two sources counts for both sources but once in the totals, so `pool_fraction`
    values can sum to more than 1.

    Args:
        sources_by_query: {query id: {source: negatives}} of one pool.
        table, positives: the episode's score table; each query's positives.

    Returns:
        {"total": {"pool", "above_positive"}, "per_query": mean unique negatives per query, "sources": {source: {"pool",
        "pool_fraction", "per_query", "above_positive", "above_fraction", "above_rate"}}}.
    """
    per_source: dict[str, set[Pair]] = {}
    all_pairs: set[Pair] = set()
    for qid, by_source in sources_by_query.items():
        own = set(positives.get(qid, ()))
        for source, docids in by_source.items():
            pairs = {(qid, d) for d in docids if d not in own}
            per_source.setdefault(source, set()).update(pairs)
            all_pairs |= pairs
    above = above_positive(all_pairs, table, positives)
    n_queries = len(sources_by_query) or 1
    sources = {}
    for source in sorted(per_source):
        pairs = per_source[source]
        hard = pairs & above
        sources[source] = {
            "pool": len(pairs),
            "pool_fraction": _rate(len(pairs), len(all_pairs)),
            "per_query": len(pairs) / n_queries,
            "above_positive": len(hard),
            "above_fraction": _rate(len(hard), len(above)),
            "above_rate": _rate(len(hard), len(pairs)),
        }
    return {"total": {"pool": len(all_pairs), "above_positive": len(above)},
            "per_query": len(all_pairs) / n_queries, "sources": sources}


# ---- Convergence ---------------------------------------------------------------------------------------

def _numeric_metrics(obj: Mapping) -> dict[str, float]:
    """The numeric leaves of an eval.json-like mapping in its order, nested keys joined by '/' ({"scifact": {"nDCG@10":
    ..}} gives "scifact/nDCG@10"); a "metrics" level and query counts ("num_*", not quality measures) are dropped."""
    out: dict[str, float] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, bool) or prefix.rsplit("/", 1)[-1].startswith("num_"):
            return
        if isinstance(value, (int, float)):
            out[prefix] = float(value)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                key = prefix if k == "metrics" else (f"{prefix}/{k}" if prefix else str(k))
                walk(key, v)

    walk("", {k: v for k, v in obj.items() if k not in ("steps", "history")})
    return out


def convergence(evals_by_episode: Mapping[int, Mapping], rel_tol: float = 0.01) -> dict:
    """Retrieval quality per episode, and per evaluation step where an eval.json lists them.

    Args:
        evals_by_episode: {i: episode i's eval.json}; steps are read from its "steps" (or "history") list of {"step": n,
            <metric>: value}.
        rel_tol: relative tolerance of `first_within_tol`.

    Returns:
        {"episodes", "steps", "best": {metric: {"best", "best_episode", "first_within_tol": the first episode within
        rel_tol of the best (higher is better for every measure here)}}, "rel_tol"}.
    """
    episodes = [{"episode": i, **_numeric_metrics(evals_by_episode[i])} for i in sorted(evals_by_episode)]
    steps = []
    for i in sorted(evals_by_episode):
        for row in evals_by_episode[i].get("steps") or evals_by_episode[i].get("history") or []:
            if isinstance(row, Mapping) and "step" in row:
                steps.append({"episode": i, "step": row["step"], **_numeric_metrics(
                    {k: v for k, v in row.items() if k != "step"})})
    names = sorted({k for row in episodes for k in row if k != "episode"})
    best = {}
    for name in names:
        values = [(row["episode"], row[name]) for row in episodes if name in row]
        top = max(v for _, v in values)
        first = next(ep for ep, v in values if v >= top - rel_tol * abs(top))
        best[name] = {"best": top, "best_episode": next(ep for ep, v in values if v == top),
                      "first_within_tol": first}
    return {"episodes": episodes, "steps": steps, "best": best, "rel_tol": rel_tol}
