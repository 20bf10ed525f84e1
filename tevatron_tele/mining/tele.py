"""Teleportation negatives: the hooks that turn rankings into episode i's negative pool.

Each hook is a plain function from rankings to `{query id: [docid, ...]}`; `build_pool` unions
what they return into pool entries plus statistics, and `mine_episode` wires files to both.
Replace any hook by passing your own function in `Hooks`. `mine_episode` calls the hooks on a batch of
`MINE_BATCH` queries at a time, over run files and the previous pool looked up by query (`IndexedRun`,
`IndexedPool`), and writes each batch's entries before the next (`PoolBuilder`): a hook samples each query
on its own, so the pool does not depend on the batches.

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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..data.id_index import hash_ids
from ..data.pools import IndexedPool, PoolEntry, ordered_sources, pool_stats_path, write_pool
from ..data.trec import Run, open_run
from ..utils import PathLike
from .filters import (
    MOMENTUM_MODES,
    TRAIN_POSITIVES,
    FilterSettings,
    PositiveAwareFilter,
    as_scorer,
    best_positive,
    replay_momentum_negatives,
)

logger = logging.getLogger(__name__)

Negatives = dict[str, list[str]]
DEFAULT_DEPTH = 200
DEFAULT_SAMPLE = 30
MINE_BATCH = 4096  # queries mined and written at a time: memory follows the batch, not the rankings


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


class PoolBuilder:
    """Pool entries and their statistics, built a batch of queries at a time (what `build_pool` returns).

    `mine_episode` streams: it mines and writes a few thousand queries at a time, so only the statistics
    (a few numbers per query, 8 bytes per negative for the distinct-document counts) outlive a batch.

    Args:
        order: the source names, in the order a query's negatives are concatenated (`ordered_sources`).
        with_previous: a previous pool is given (its ANN lists are compared with the new ones).
        dedupe: keep each negative once per query.
    """

    def __init__(self, order: Sequence[str], *, with_previous: bool, dedupe: bool = False) -> None:
        self.order, self.with_previous, self.dedupe = list(order), with_previous, dedupe
        self.queries = 0
        self.dropped: dict[str, list[str]] = {"no_positive": [], "no_negatives": []}
        self.dropped_count = dict.fromkeys(self.dropped, 0)
        self.removed = dict.fromkeys(self.order, 0)
        self.missing = dict.fromkeys(self.order, 0)
        self.pair_jaccard: dict[str, list[float]] = {f"{a}|{b}": [] for a, b in itertools.combinations(self.order, 2)}
        self.prev_jaccard: list[float] = []
        self.duplicates = 0
        self.kept_sizes: list[int] = []
        self.source_queries = dict.fromkeys(self.order, 0)
        self.source_negatives = dict.fromkeys(self.order, 0)
        self.source_sizes: dict[str, list[float]] = {name: [] for name in self.order}
        self.source_hashes: dict[str, list[np.ndarray]] = {name: [] for name in self.order}

    def _drop(self, reason: str, qid: str) -> None:
        self.dropped_count[reason] += 1
        if len(self.dropped[reason]) < 20:
            self.dropped[reason].append(qid)

    def add(self, queries: Iterable[tuple[str, str]], sources: Mapping[str, Mapping[str, Sequence[str]]],
            previous: Iterable[PoolEntry] = (), *, positives: Mapping[str, Sequence[str]],
            exclude: Mapping[str, Iterable[str]] | None = None,
            train_positives: Mapping[str, Sequence[str]] | None = None) -> list[PoolEntry]:
        """The entries of these queries ((id, text) pairs, in pool order); their statistics are kept.

        Args:
            queries: the (query id, text) pairs of this batch.
            sources: per source name, {query id: negatives} of (at least) these queries.
            previous: the previous pool's entries of these queries (for the ANN overlap).
            positives: each query's positives (never negatives).
            exclude: per query, more passages that are never negatives (QA: passages holding an answer).
            train_positives: per query, the positives its entry keeps for training (default: all of
                `positives`; every positive is still kept out of the negatives).

        Returns:
            One entry per query with a positive and a negative.
        """
        prev_ann = {e.query_id: e.sources.get("ann", []) for e in previous if e.sources.get("ann")}
        entries: list[PoolEntry] = []
        for qid, text in queries:
            self.queries += 1
            pos = list(positives.get(qid, []))
            if not pos:
                self._drop("no_positive", qid)
                continue
            banned = set(pos) | set((exclude or {}).get(qid, ()))
            per_source: dict[str, list[str]] = {}
            for name in self.order:
                if qid not in sources[name]:
                    self.missing[name] += 1
                    continue
                kept = [d for d in sources[name][qid] if d not in banned]
                self.removed[name] += len(sources[name][qid]) - len(kept)
                per_source[name] = kept
            negatives = [d for name in self.order for d in per_source.get(name, [])]
            if self.dedupe:
                negatives = list(dict.fromkeys(negatives))
            if not negatives:
                self._drop("no_negatives", qid)
                continue
            self.duplicates += len(negatives) - len(set(negatives))
            for a, b in itertools.combinations(self.order, 2):
                if a in per_source and b in per_source:
                    self.pair_jaccard[f"{a}|{b}"].append(_jaccard(per_source[a], per_source[b]))
            if qid in prev_ann and "ann" in per_source:
                self.prev_jaccard.append(_jaccard(per_source["ann"], prev_ann[qid]))
            self.kept_sizes.append(len(negatives))
            for name, docs in per_source.items():
                self.source_queries[name] += 1
                self.source_negatives[name] += len(docs)
                self.source_sizes[name].append(float(len(docs)))
            kept_pos = list((train_positives or {}).get(qid) or pos)
            entries.append(PoolEntry(query_id=qid, query_text=text, positive_document_ids=kept_pos,
                                     negative_document_ids=negatives, sources=per_source))
        for name in self.order:  # distinct documents per source, by 64-bit id hash (no set of id strings)
            docs = [d for e in entries for d in e.sources.get(name, [])]
            if docs:
                self.source_hashes[name].append(np.unique(hash_ids(docs)))
        return entries

    def _unique_docs(self, name: str) -> int:
        parts = self.source_hashes[name]
        return int(np.unique(np.concatenate(parts)).size) if parts else 0

    def stats(self) -> dict:
        """The statistics of every query added so far (pool.stats.json's mining fields)."""
        kept_sizes = self.kept_sizes
        return {
            "queries": self.queries,
            "kept": len(kept_sizes),
            "dropped": dict(self.dropped_count),
            "dropped_examples": {reason: ids for reason, ids in self.dropped.items() if ids},
            "negatives_per_query": {
                "mean": _mean([float(n) for n in kept_sizes]),
                "min": min(kept_sizes, default=0),
                "max": max(kept_sizes, default=0),
            },
            "repeated_negatives": self.duplicates,
            "sources": {
                name: {
                    "queries": self.source_queries[name],
                    "negatives": self.source_negatives[name],
                    "unique_docs": self._unique_docs(name),
                    "mean_per_query": _mean(self.source_sizes[name]),
                    "queries_without_source": self.missing[name],
                    "positives_removed": self.removed[name],
                }
                for name in self.order
            },
            "overlap_between_sources_jaccard": {pair: _mean(vals) for pair, vals in self.pair_jaccard.items()},
            "overlap_with_previous_ann_jaccard": {"mean": _mean(self.prev_jaccard), "queries": len(self.prev_jaccard)}
            if self.with_previous else None,
        }


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
    counted in the statistics. (`PoolBuilder` does the same a batch of queries at a time.)

    Args:
        collection: the training collection (its queries, in order, and their positives).
        sources: per source name, {query id: negatives}.
        previous_pool: the previous pool's entries, or None.
        positives: each query's positives (default: the collection's).
        exclude: per query, more passages that are never negatives.
        dedupe: keep each negative once per query.

    Returns:
        (entries, statistics).
    """
    positives = dict(positives) if positives is not None else {q: collection.positives(q) for q in collection.queries}
    builder = PoolBuilder(ordered_sources(sources), with_previous=previous_pool is not None, dedupe=dedupe)
    entries = builder.add(collection.queries.items(), sources, previous_pool or [], positives=positives,
                          exclude=exclude)
    return entries, builder.stats()


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

    runs = {name: open_run(r) for name, r in (("ann", query_run), ("bm25", bm25_run)) if r is not None}
    return answer_positives_and_exclusions(collection, _query_runs(runs), positives, depth=depth)[0]


@dataclass
class Hooks:
    """The functions `mine_episode` calls; swap any of them for your own with the same signature.

    The source hooks are called a batch of queries at a time (their `positives` hold that batch); a replaced
    `combine` is called once with every query's negatives, which then are all in memory.

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
    filter_positive: str = "weakest"
    momentum: str = "all"
    # the positives each entry keeps for training: all judged ones, or the one the mining model scores highest
    train_positives: str = "all"

    def __post_init__(self):
        if self.momentum not in MOMENTUM_MODES:
            raise ValueError(f"--momentum must be one of {', '.join(MOMENTUM_MODES)}; got '{self.momentum}'")
        if self.train_positives not in TRAIN_POSITIVES:
            raise ValueError(f"--train_positives must be one of {', '.join(TRAIN_POSITIVES)}; got "
                             f"'{self.train_positives}'")
        self.filter_settings()  # checks the filter's values

    def filter_settings(self) -> FilterSettings:
        return FilterSettings(self.max_negative_ratio, self.negative_margin, self.skip_top, self.filter_positive)


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
    if (settings.needs_scores or cfg.train_positives != "all"
            or (cfg.momentum != "all" and previous_pool is not None)) and scorer is None:
        raise ValueError(f"{pool_path}: --max_negative_ratio, --negative_margin, --train_positives best and --momentum "
                         f"{'/'.join(MOMENTUM_MODES[1:])} need the mining model's scores (pass scores=...)")
    if cfg.train_positives != "all" and hooks.combine is not build_pool:
        raise ValueError("--train_positives best is applied by the streamed pool builder; a replaced combine hook "
                         "chooses its own positives")
    # run files are looked up query by query (IndexedRun), the previous pool too: nothing is read whole
    runs = {name: open_run(r) for name, r in (("ann", query_run), ("lookahead", positive_run), ("bm25", bm25_run))
            if r is not None}
    positives = {q: collection.positives(q) for q in collection.queries}
    exclude: dict[str, set[str]] = {}
    if getattr(collection, "answers", None):
        from .answers import answer_positives_and_exclusions

        positives, exclude = answer_positives_and_exclusions(collection, _query_runs(runs), positives, depth=cfg.depth,
                                                             positive_run=runs.get("lookahead"))
    common = dict(depth=cfg.depth, sample=cfg.sample, rng=cfg.seed, exclude=exclude)
    filt = PositiveAwareFilter(settings, positives, scorer) if settings.active else None
    previous = None
    if previous_pool is not None:
        previous = (IndexedPool(previous_pool) if isinstance(previous_pool, (str, Path))
                    else {e.query_id: e for e in previous_pool})
    names = [n for n in ("ann", "lookahead") if n in runs] + ["momentum"] * (previous is not None) + \
        ["bm25"] * ("bm25" in runs)
    if not names:
        raise ValueError(f"{pool_path}: no ranking or previous pool given; nothing to mine from")
    replay_stats: dict | None = None

    def opts(name: str) -> dict:  # `keep` reaches the hooks only with a filter set (custom hooks need not know it)
        return {**common, "keep": filt.keeper(name)} if filt is not None else common

    def mine(qids: Sequence[str], *, momentum_only: bool = False) -> tuple[dict[str, Negatives], list[PoolEntry]]:
        """Every source's negatives of these queries (the hooks sample per query: batches change nothing)."""
        nonlocal replay_stats
        batch = {q: positives.get(q, []) for q in qids}
        sources: dict[str, Negatives] = {}
        if "ann" in runs and not momentum_only:
            sources["ann"] = hooks.ann(runs["ann"], batch, **opts("ann"))
        if "lookahead" in runs and not momentum_only:
            sources["lookahead"] = hooks.lookahead(runs["lookahead"], batch, all_positives=cfg.all_positives,
                                                   **opts("lookahead"))
        earlier: list[PoolEntry] = []
        if previous is not None:
            earlier = [previous[q] for q in qids if q in previous]
            sources["momentum"] = hooks.momentum(earlier)
            if cfg.momentum != "all":
                sources["momentum"], counts = replay_momentum_negatives(sources["momentum"], positives, scorer,
                                                                        cfg.momentum)
                replay_stats = _add_counts(replay_stats, counts)
            if filt is not None:
                keep = filt.keeper("momentum", ranked=False)
                sources["momentum"] = {q: keep(q, list(ds)) for q, ds in sources["momentum"].items()}
        if "bm25" in runs and not momentum_only:
            sources["bm25"] = hooks.bm25(runs["bm25"], batch, **opts("bm25"))
        return sources, earlier

    def finish(stats: dict) -> dict:
        """The mining statistics with the settings and the filter's and replay's counts, logged."""
        stats["config"] = {"depth": cfg.depth, "sample": cfg.sample, "seed": cfg.seed,
                           "all_positives": cfg.all_positives, "dedupe": cfg.dedupe, "sources": names}
        if filt is not None:  # (keys only when set: the stats of an unfiltered pool stay what they were)
            stats["config"].update(settings.to_dict())
            stats["positive_aware_filter"] = filt.stats()
        if cfg.train_positives != "all":
            stats["config"]["train_positives"] = cfg.train_positives
        if cfg.momentum != "all":
            stats["config"]["momentum"] = cfg.momentum
            stats["momentum_replay"] = replay_stats
        logger.info("pool %s: %d queries kept, dropped %s; sources %s", pool_path, stats["kept"], stats["dropped"],
                    {k: v["negatives"] for k, v in stats["sources"].items()})
        return stats

    queries = collection.queries
    order = ordered_sources(names)
    if hooks.combine is build_pool:  # streamed: a batch of queries mined, added and written at a time
        builder = PoolBuilder(order, with_previous=previous is not None, dedupe=cfg.dedupe)

        def entries() -> Iterator[PoolEntry]:
            qids = list(queries)
            for start in tqdm(range(0, len(qids), MINE_BATCH), desc=f"mining {pool_path.name}", unit="batch",
                              disable=len(qids) <= MINE_BATCH):
                chunk = qids[start:start + MINE_BATCH]
                sources, earlier = mine(chunk)
                kept = None if cfg.train_positives == "all" else {
                    q: [b] for q in chunk if (b := best_positive(scorer.scores(q, positives.get(q, [])),
                                                                 positives.get(q, [])))}
                yield from builder.add(((q, queries[q]) for q in chunk), sources, earlier, positives=positives,
                                       exclude=exclude, train_positives=kept)
            if previous is not None:  # momentum of earlier queries the collection lacks: counted, not pooled
                others = [q for q in previous if q not in queries]
                for start in range(0, len(others), MINE_BATCH):
                    mine(others[start:start + MINE_BATCH], momentum_only=True)

        write_pool(pool_path, entries(), lambda: finish(builder.stats()))
        return pool_path
    # a custom combine sees every query at once
    sources, earlier = mine(list(queries))
    if previous is not None:
        extra, earlier_others = mine([q for q in previous if q not in queries], momentum_only=True)
        sources["momentum"].update(extra["momentum"])
        earlier += earlier_others
    found, stats = hooks.combine(collection, sources, earlier if previous is not None else None,
                                 positives=positives, exclude=exclude, dedupe=cfg.dedupe)
    write_pool(pool_path, found, finish(stats))
    return pool_path


def _add_counts(total: dict | None, counts: dict) -> dict:
    """`counts` added to `total` field by field (integers summed, the other fields kept): stats of batches."""
    if total is None:
        return dict(counts)
    return {k: total[k] + v if isinstance(v, int) else v for k, v in counts.items()}
