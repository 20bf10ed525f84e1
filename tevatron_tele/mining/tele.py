"""Teleportation negatives: the hooks that turn rankings into episode i's negative pool.

Each hook is a plain function from rankings to `{query id: [docid, ...]}`; `build_pool` unions
what they return into pool entries plus statistics, and `mine_episode` wires files to both.
Replace any hook by passing your own function in `Hooks`.

- ann: the query's own ranking by the model of episode i-1 (the present);
- lookahead: the ranking of the query's positive passage (where the ANN negatives move next);
- momentum: the whole negative pool of episode i-1 (the past, which accumulates);
- bm25: a BM25 ranking of the query (optional ablation).
A judged positive (or, for QA sets, any retrieved passage holding an answer) is never a negative.
Optionally (`MiningConfig`, see `filters`): a positive-aware filter drops the candidates of every source that
the mining model scores too close to the query's positive (likely false negatives) before the sample is drawn,
and momentum can replay the negatives model i-1 has forgotten.
"""
from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..data.pools import PoolEntry, ordered_sources, pool_stats_path, read_pool, write_pool
from ..data.trec import Run, read_run
from ..utils import PathLike
from .filters import MOMENTUM_MODES, FilterSettings, PositiveAwareFilter, as_scorer, replay_momentum_negatives

logger = logging.getLogger(__name__)

Negatives = dict[str, list[str]]
DEFAULT_DEPTH = 200
DEFAULT_SAMPLE = 30


def _query_rng(rng: int | random.Random, source: str, qid: str) -> random.Random:
    """A per-query generator, so a query's sample does not depend on which other queries are mined."""
    if isinstance(rng, random.Random):
        return rng
    return random.Random(f"{int(rng)}:{source}:{qid}")


def _sample(candidates: list[str], sample: int | None, rng: random.Random) -> list[str]:
    """`sample` of the candidates drawn uniformly, kept in rank order; all of them if fewer or sample is None."""
    if sample is None or sample <= 0 or len(candidates) <= sample:
        return list(candidates)
    chosen = sorted(rng.sample(range(len(candidates)), sample))
    return [candidates[i] for i in chosen]


def ranked_negatives(
    run: Mapping[str, Sequence[tuple[str, float]]],
    positives: Mapping[str, Sequence[str]],
    depth: int = DEFAULT_DEPTH,
    sample: int | None = DEFAULT_SAMPLE,
    rng: int | random.Random = 0,
    *,
    source: str = "ann",
    exclude: Mapping[str, Iterable[str]] | None = None,
    keep: Callable[[str, list[str]], list[str]] | None = None,
) -> Negatives:
    """From each query's top `depth` in `run`, drop its positives (and `exclude`), then sample `sample`.

    Queries are those of `positives` that `run` ranks, visited in sorted order (so a shared
    `random.Random` also gives a reproducible result). `keep(qid, candidates)`, when given, filters the
    rank-ordered candidates before the sample is drawn (the positive-aware filter, `filters`).
    """
    out: Negatives = {}
    for qid in sorted(positives):
        ranked = run.get(qid)
        if not ranked:
            continue
        banned = set(positives[qid]) | set((exclude or {}).get(qid, ()))
        candidates = [d for d, _ in ranked[:depth] if d not in banned]
        if keep is not None:
            candidates = keep(qid, candidates)
        out[qid] = _sample(candidates, sample, _query_rng(rng, source, qid))
    return out


def ann_negatives(
    query_run: Run,
    positives: Mapping[str, Sequence[str]],
    depth: int = DEFAULT_DEPTH,
    sample: int | None = DEFAULT_SAMPLE,
    rng: int | random.Random = 0,
    exclude: Mapping[str, Iterable[str]] | None = None,
    keep: Callable[[str, list[str]], list[str]] | None = None,
) -> Negatives:
    """ANN negatives: a sample of the query's top `depth` passages that are not its positives."""
    return ranked_negatives(query_run, positives, depth, sample, rng, source="ann", exclude=exclude,
                            keep=keep)


def bm25_negatives(
    bm25_run: Run,
    positives: Mapping[str, Sequence[str]],
    depth: int = DEFAULT_DEPTH,
    sample: int | None = DEFAULT_SAMPLE,
    rng: int | random.Random = 0,
    exclude: Mapping[str, Iterable[str]] | None = None,
    keep: Callable[[str, list[str]], list[str]] | None = None,
) -> Negatives:
    """BM25 negatives: as ANN negatives, from a BM25 ranking of the queries."""
    return ranked_negatives(bm25_run, positives, depth, sample, rng, source="bm25", exclude=exclude,
                            keep=keep)


def lookahead_negatives(
    positive_run: Run,
    positives: Mapping[str, Sequence[str]],
    depth: int = DEFAULT_DEPTH,
    sample: int | None = DEFAULT_SAMPLE,
    rng: int | random.Random = 0,
    all_positives: bool = False,
    exclude: Mapping[str, Iterable[str]] | None = None,
    keep: Callable[[str, list[str]], list[str]] | None = None,
) -> Negatives:
    """Lookahead negatives: from the ranking of the query's first positive passage (`positive_run` is keyed by
    positive docid). With `all_positives`, the rankings of all its positives are merged by best score.
    `keep` (the positive-aware filter) judges the candidates by the query's S(q, d), not by the scores of this
    ranking (positive-to-passage)."""
    merged: dict[str, list[tuple[str, float]]] = {}
    for qid in sorted(positives):
        pos = list(positives[qid]) if all_positives else list(positives[qid])[:1]
        rankings = [positive_run[p] for p in pos if p in positive_run]
        if not rankings:
            continue
        if len(rankings) == 1:
            merged[qid] = list(rankings[0])
            continue
        best: dict[str, float] = {}
        for d, s in itertools.chain.from_iterable(r[:depth] for r in rankings):
            if d not in best or s > best[d]:
                best[d] = s
        merged[qid] = sorted(best.items(), key=lambda kv: -kv[1])
    return ranked_negatives(merged, positives, depth, sample, rng, source="lookahead", exclude=exclude, keep=keep)


def momentum_negatives(previous_pool_entries: Iterable) -> Negatives:
    """Momentum negatives: the whole negative list each query trained on in the previous episode."""
    return {e.query_id: list(e.negative_document_ids) for e in previous_pool_entries}


def _jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a or b else 1.0


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 6) if values else None


def build_pool(
    collection,
    sources: Mapping[str, Mapping[str, Sequence[str]]],
    previous_pool=None,
    *,
    positives: Mapping[str, Sequence[str]] | None = None,
    exclude: Mapping[str, Iterable[str]] | None = None,
    dedupe: bool = False,
) -> tuple[list, dict]:
    """Union the per-source negatives into pool entries (one per training query) and statistics.

    `negative_document_ids` concatenates the sources in the order ann, lookahead, momentum, bm25,
    with repeats kept unless `dedupe` (a negative found by several sources then weighs more, as in
    the reference recipe). Queries without a positive or without any negative are dropped and
    counted in the statistics.
    """
    positives = dict(positives) if positives is not None else {q: collection.positives(q) for q in collection.queries}
    order = ordered_sources(sources)
    entries: list = []
    dropped: dict[str, list[str]] = {"no_positive": [], "no_negatives": []}
    removed = dict.fromkeys(order, 0)
    missing = dict.fromkeys(order, 0)
    pair_jaccard: dict[str, list[float]] = {f"{a}|{b}": [] for a, b in itertools.combinations(order, 2)}
    prev_ann = {e.query_id: e.sources.get("ann", []) for e in previous_pool or [] if e.sources.get("ann")}
    prev_jaccard: list[float] = []
    duplicates = 0
    for qid, text in collection.queries.items():
        pos = list(positives.get(qid, []))
        if not pos:
            dropped["no_positive"].append(qid)
            continue
        banned = set(pos) | set((exclude or {}).get(qid, ()))
        per_source: dict[str, list[str]] = {}
        for name in order:
            if qid not in sources[name]:
                missing[name] += 1
                continue
            kept = [d for d in sources[name][qid] if d not in banned]
            removed[name] += len(sources[name][qid]) - len(kept)
            per_source[name] = kept
        negatives = [d for name in order for d in per_source.get(name, [])]
        if dedupe:
            negatives = list(dict.fromkeys(negatives))
        if not negatives:
            dropped["no_negatives"].append(qid)
            continue
        duplicates += len(negatives) - len(set(negatives))
        for a, b in itertools.combinations(order, 2):
            if a in per_source and b in per_source:
                pair_jaccard[f"{a}|{b}"].append(_jaccard(per_source[a], per_source[b]))
        if qid in prev_ann and "ann" in per_source:
            prev_jaccard.append(_jaccard(per_source["ann"], prev_ann[qid]))
        entries.append(PoolEntry(query_id=qid, query_text=text, positive_document_ids=pos,
                                 negative_document_ids=negatives, sources=per_source))
    kept_sizes = [len(e.negative_document_ids) for e in entries]
    stats = {
        "queries": len(collection.queries),
        "kept": len(entries),
        "dropped": {reason: len(ids) for reason, ids in dropped.items()},
        "dropped_examples": {reason: ids[:20] for reason, ids in dropped.items() if ids},
        "negatives_per_query": {
            "mean": _mean([float(n) for n in kept_sizes]),
            "min": min(kept_sizes, default=0),
            "max": max(kept_sizes, default=0),
        },
        "repeated_negatives": duplicates,
        "sources": {
            name: {
                "queries": sum(1 for e in entries if name in e.sources),
                "negatives": sum(len(e.sources.get(name, [])) for e in entries),
                "unique_docs": len({d for e in entries for d in e.sources.get(name, [])}),
                "mean_per_query": _mean([float(len(e.sources[name])) for e in entries if name in e.sources]),
                "queries_without_source": missing[name],
                "positives_removed": removed[name],
            }
            for name in order
        },
        "overlap_between_sources_jaccard": {pair: _mean(vals) for pair, vals in pair_jaccard.items()},
        "overlap_with_previous_ann_jaccard": {"mean": _mean(prev_jaccard), "queries": len(prev_jaccard)}
        if previous_pool is not None else None,
    }
    return entries, stats


def _query_runs(runs: Mapping[str, Run]) -> list[Run]:
    """The rankings of the training queries whose answer passages a QA collection looks at, in order: the first
    one's best answer passage becomes the positive of a query that has none."""
    return [runs[name] for name in ("ann", "bm25") if name in runs]


def mining_positives(
    collection,
    *,
    query_run: PathLike | Run | None = None,
    bm25_run: PathLike | Run | None = None,
    depth: int = DEFAULT_DEPTH,
) -> dict[str, list[str]]:
    """The positives `mine_episode` gives each training query when mining from these rankings.

    The judged positives; for a QA collection (`collection.answers`), a query without one takes the
    best-ranked passage holding an answer (in `query_run`, else `bm25_run`), as `mine_episode` does. The
    runner gathers the lookahead vectors of exactly these, so a promoted positive has a lookahead ranking.
    """
    positives = {q: collection.positives(q) for q in collection.queries}
    if not getattr(collection, "answers", None):
        return positives
    from .answers import answer_positives_and_exclusions

    runs = {name: read_run(r) if isinstance(r, (str, Path)) else r
            for name, r in (("ann", query_run), ("bm25", bm25_run)) if r is not None}
    return answer_positives_and_exclusions(collection, _query_runs(runs), positives, depth=depth)[0]


@dataclass
class Hooks:
    """The functions `mine_episode` calls; swap any of them for your own with the same signature.

    With a positive-aware filter set, the ann, lookahead and bm25 hooks also receive `keep=` (a function
    `keep(qid, rank-ordered candidates) -> kept` to apply before sampling); momentum's lists are filtered
    after the hook."""

    ann: Callable[..., Negatives] = ann_negatives
    lookahead: Callable[..., Negatives] = lookahead_negatives
    momentum: Callable[..., Negatives] = momentum_negatives
    bm25: Callable[..., Negatives] = bm25_negatives
    combine: Callable[..., tuple[list, dict]] = build_pool


@dataclass
class MiningConfig:
    depth: int = DEFAULT_DEPTH
    sample: int | None = DEFAULT_SAMPLE
    seed: int = 0
    all_positives: bool = False
    dedupe: bool = False
    hooks: Hooks = field(default_factory=Hooks)
    # positive-aware filter (filters.FilterSettings) and momentum replay (filters.MOMENTUM_MODES); off by default
    max_negative_ratio: float | None = None
    negative_margin: float | None = None
    skip_top: int = 0
    momentum: str = "all"

    def __post_init__(self):
        if self.momentum not in MOMENTUM_MODES:
            raise ValueError(f"--momentum must be one of {', '.join(MOMENTUM_MODES)}; got '{self.momentum}'")
        self.filter_settings()  # checks the filter's values

    def filter_settings(self) -> FilterSettings:
        return FilterSettings(self.max_negative_ratio, self.negative_margin, self.skip_top)


def mine_episode(
    collection,
    pool_path: PathLike,
    *,
    query_run: PathLike | Run | None = None,
    positive_run: PathLike | Run | None = None,
    previous_pool: PathLike | list | None = None,
    bm25_run: PathLike | Run | None = None,
    config: MiningConfig | None = None,
    overwrite: bool = False,
    scores=None,
) -> Path:
    """Build and write episode i's pool (`pool.jsonl` + `pool.stats.json`) from the given rankings.

    Runs are TREC files (or Runs in memory): `query_run` ranks the training queries (ANN),
    `positive_run` ranks their positive passages by docid (lookahead), `previous_pool` is episode
    i-1's pool file (momentum), `bm25_run` is optional. Missing inputs leave their source out.
    For QA collections (`collection.answers`), retrieved passages holding an answer are never
    negatives and the best of them becomes the positive of a query that has none.
    An existing pool is kept unless `overwrite`.
    `scores` (a `filters.Scorer`, a score table or a stored `.npz` table) gives the mining model's S(q, d) of
    every candidate and positive, which the positive-aware filter (`config.max_negative_ratio`,
    `negative_margin`) and momentum replay (`config.momentum`) need; `pool.stats.json` then counts what each
    rule removed per source (`positive_aware_filter`) and what replay kept (`momentum_replay`).
    """
    pool_path = Path(pool_path)
    if pool_path.exists() and pool_stats_path(pool_path).exists() and not overwrite:
        logger.info("pool %s exists; not mining again", pool_path)
        return pool_path
    cfg = config or MiningConfig()
    hooks = cfg.hooks
    settings = cfg.filter_settings()
    scorer = as_scorer(scores)
    if (settings.needs_scores or (cfg.momentum != "all" and previous_pool is not None)) and scorer is None:
        raise ValueError(f"{pool_path}: --max_negative_ratio, --negative_margin and --momentum "
                         f"{'/'.join(MOMENTUM_MODES[1:])} need the mining model's scores (pass scores=...)")
    runs = {name: read_run(r) if isinstance(r, (str, Path)) else r
            for name, r in (("ann", query_run), ("lookahead", positive_run), ("bm25", bm25_run)) if r is not None}
    positives = {q: collection.positives(q) for q in collection.queries}
    exclude: dict[str, set[str]] = {}
    if getattr(collection, "answers", None):
        from .answers import answer_positives_and_exclusions

        positives, exclude = answer_positives_and_exclusions(collection, _query_runs(runs), positives, depth=cfg.depth,
                                                             positive_run=runs.get("lookahead"))
    common = dict(depth=cfg.depth, sample=cfg.sample, rng=cfg.seed, exclude=exclude)
    filt = PositiveAwareFilter(settings, positives, scorer) if settings.active else None

    def opts(name: str) -> dict:  # `keep` reaches the hooks only with a filter set (custom hooks need not know it)
        return {**common, "keep": filt.keeper(name)} if filt is not None else common

    sources: dict[str, Negatives] = {}
    if "ann" in runs:
        sources["ann"] = hooks.ann(runs["ann"], positives, **opts("ann"))
    if "lookahead" in runs:
        sources["lookahead"] = hooks.lookahead(runs["lookahead"], positives, all_positives=cfg.all_positives,
                                               **opts("lookahead"))
    previous = None
    replay_stats = None
    if previous_pool is not None:
        previous = read_pool(previous_pool) if isinstance(previous_pool, (str, Path)) else list(previous_pool)
        sources["momentum"] = hooks.momentum(previous)
        if cfg.momentum != "all":
            sources["momentum"], replay_stats = replay_momentum_negatives(sources["momentum"], positives, scorer,
                                                                          cfg.momentum)
        if filt is not None:
            keep = filt.keeper("momentum", ranked=False)
            sources["momentum"] = {q: keep(q, list(ds)) for q, ds in sources["momentum"].items()}
    if "bm25" in runs:
        sources["bm25"] = hooks.bm25(runs["bm25"], positives, **opts("bm25"))
    if not sources:
        raise ValueError(f"{pool_path}: no ranking or previous pool given; nothing to mine from")
    entries, stats = hooks.combine(collection, sources, previous, positives=positives, exclude=exclude,
                                   dedupe=cfg.dedupe)
    stats["config"] = {"depth": cfg.depth, "sample": cfg.sample, "seed": cfg.seed,
                       "all_positives": cfg.all_positives, "dedupe": cfg.dedupe, "sources": list(sources)}
    if filt is not None:  # (keys only when set: the stats of an unfiltered pool stay what they were)
        stats["config"].update(settings.to_dict())
        stats["positive_aware_filter"] = filt.stats()
    if cfg.momentum != "all":
        stats["config"]["momentum"] = cfg.momentum
        stats["momentum_replay"] = replay_stats
    logger.info("pool %s: %d queries kept, dropped %s; sources %s", pool_path, stats["kept"], stats["dropped"],
                {k: v["negatives"] for k, v in stats["sources"].items()})
    write_pool(pool_path, entries, stats)
    return pool_path
