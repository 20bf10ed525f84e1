"""Teleportation negatives: the hooks that turn rankings into episode i's negative pool.

Each hook is a plain function from rankings to `{query id: [docid, ...]}` (`Hooks`); `build_pool` unions what they
return into pool entries plus statistics. `mine_episode` runs them on `MINE_BATCH` queries at a time (`BatchMiner`),
over run files and the previous pool looked up by query (`IndexedRun`, `IndexedPool`), and writes each batch's entries
before the next (`PoolBuilder`); a hook samples each query on its own, so batching does not change the pool.

- ann: the query's own ranking by the model of episode i-1 (the present);
- lookahead: the ranking of the query's positive passage (where the ANN negatives move next);
- momentum: the whole negative pool of episode i-1 (the past, which accumulates);
- bm25: a BM25 ranking of the query (optional ablation).
A judged positive (or, for QA sets, any retrieved passage holding an answer) is never a negative. `MiningConfig` can add
the positive-aware filter (likely false negatives dropped before sampling) and momentum replay of `filters`.
"""
from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..data.collections import Collection
from ..data.id_index import hash_ids
from ..data.names import MOMENTUM_MODES, TRAIN_POSITIVES, FilterPositive, MomentumMode, TrainPositives, check_choice
from ..data.pools import IndexedPool, PoolEntry, ordered_sources, pool_stats_path, write_pool
from ..data.trec import Run, open_run
from ..utils import PathLike
from .answers import answer_positives_and_exclusions
from .filters import (
    FilterSettings,
    PositiveAwareFilter,
    Scorer,
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
    """`sample` of the candidates drawn uniformly, in rank order; all of them if fewer, or if sample is None or <= 0."""
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

    Args:
        run: {query id: [(docid, score), ...]} in rank order.
        positives: each query's positives; its queries that `run` ranks are mined, in sorted order (so a shared
            `random.Random` also gives a reproducible result).
        depth: the candidates looked at per query (its top `depth`).
        sample: negatives drawn per query, kept in rank order (None or <= 0: all candidates).
        rng: a seed (each query then draws from its own generator) or a shared `random.Random`.
        source: the source name, part of each query's seed.
        exclude: per query, more passages that are never negatives.
        keep: `keep(qid, rank-ordered candidates) -> kept`, applied before sampling (the positive-aware filter).

    Returns:
        {query id: negatives}.
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


def ann_negatives(query_run: Run, positives: Mapping[str, Sequence[str]], *args: Any, **options: Any) -> Negatives:
    """ANN negatives: a sample of the query's top `depth` passages that are not its positives.

    Args:
        query_run: the ranking of the training queries by the model of episode i-1.
        positives, *args, **options: as `ranked_negatives`'s (depth, sample, rng positional or by name; exclude, keep).

    Returns:
        {query id: negatives}.
    """
    return ranked_negatives(query_run, positives, *args, source="ann", **options)


def bm25_negatives(bm25_run: Run, positives: Mapping[str, Sequence[str]], *args: Any, **options: Any) -> Negatives:
    """BM25 negatives: as ANN negatives, from a BM25 ranking of the queries.

    Args:
        bm25_run: the BM25 ranking of the training queries.
        positives, *args, **options: as `ann_negatives`'s.

    Returns:
        {query id: negatives}.
    """
    return ranked_negatives(bm25_run, positives, *args, source="bm25", **options)


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
    """Lookahead negatives: from the ranking of the query's first positive passage.

    Args:
        positive_run: the ranking of each positive passage, keyed by positive docid.
        positives, depth, sample, rng, exclude: as `ranked_negatives`'s.
        all_positives: merge the rankings of all the query's positives by best score (else its first's).
        keep: the positive-aware filter; it judges candidates by the query's S(q, d), not by this ranking's scores.

    Returns:
        {query id: negatives}.
    """
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


def momentum_negatives(previous_pool_entries: Iterable[PoolEntry]) -> Negatives:
    """Momentum negatives: the whole negative list each query trained on in the previous episode.

    Args:
        previous_pool_entries: the previous pool's entries (of the batch).

    Returns:
        {query id: negatives}.
    """
    return {e.query_id: list(e.negative_document_ids) for e in previous_pool_entries}


def _jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a or b else 1.0


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 6) if values else None


class PoolBuilder:
    """Pool entries and their statistics, built a batch of queries at a time (what `build_pool` returns).

    `mine_episode` streams a few thousand queries at a time, so only the statistics (a few numbers per query, 8 bytes
    per negative for the distinct-document counts) outlive a batch.

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
        self.source_sizes: dict[str, list[int]] = {name: [] for name in self.order}  # per query that has the source
        self.source_hashes: dict[str, list[np.ndarray]] = {name: [] for name in self.order}

    def _drop(self, reason: str, qid: str) -> None:
        self.dropped_count[reason] += 1
        if len(self.dropped[reason]) < 20:
            self.dropped[reason].append(qid)

    def add(self, queries: Iterable[tuple[str, str]], sources: Mapping[str, Mapping[str, Sequence[str]]],
            previous: Iterable[PoolEntry] = (), *, positives: Mapping[str, Sequence[str]],
            exclude: Mapping[str, Iterable[str]] | None = None,
            train_positives: Mapping[str, Sequence[str]] | None = None) -> list[PoolEntry]:
        """The entries of this batch's queries, in pool order; their statistics are kept.

        Args:
            queries: the batch's (query id, text) pairs.
            sources: per source name, {query id: negatives} of (at least) these queries.
            previous: the previous pool's entries of these queries (for the ANN overlap).
            positives, exclude: per query, its positives and more passages that are never negatives (QA: answer
                passages).
            train_positives: per query, the positives its entry trains on (default: all; every positive still stays out
                of the negatives).

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
                self.source_sizes[name].append(len(docs))
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
                "mean": _mean(kept_sizes),
                "min": min(kept_sizes, default=0),
                "max": max(kept_sizes, default=0),
            },
            "repeated_negatives": self.duplicates,
            "sources": {
                name: {
                    "queries": len(self.source_sizes[name]),
                    "negatives": sum(self.source_sizes[name]),
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
    collection: Collection,
    sources: Mapping[str, Mapping[str, Sequence[str]]],
    previous_pool: Iterable[PoolEntry] | None = None,
    *,
    positives: Mapping[str, Sequence[str]] | None = None,
    exclude: Mapping[str, Iterable[str]] | None = None,
    dedupe: bool = False,
) -> tuple[list[PoolEntry], dict]:
    """Union the per-source negatives into pool entries (one per training query) and statistics.

    `negative_document_ids` concatenates the sources in the order ann, lookahead, momentum, bm25, with repeats kept
    unless `dedupe` (a negative found by several sources then weighs more, as in the reference recipe). Queries without
    a positive or without any negative are dropped and counted. (`PoolBuilder` does this a batch at a time.)

    Args:
        collection: the training collection (its queries, in order, and their positives).
        sources: per source name, {query id: negatives}.
        previous_pool: the previous pool's entries, or None.
        positives: each query's positives (default: the collection's).
        exclude, dedupe: as for `PoolBuilder`.

    Returns:
        (entries, statistics).
    """
    positives = dict(positives) if positives is not None else {q: collection.positives(q) for q in collection.queries}
    builder = PoolBuilder(ordered_sources(sources), with_previous=previous_pool is not None, dedupe=dedupe)
    entries = builder.add(collection.queries.items(), sources, previous_pool or [], positives=positives,
                          exclude=exclude)
    return entries, builder.stats()


def _query_runs(runs: Mapping[str, Run]) -> list[Run]:
    """Runs searched for answers; the first one's best answer passage becomes a positive-less query's positive."""
    return [runs[name] for name in ("ann", "bm25") if name in runs]


def mining_positives(
    collection: Collection,
    *,
    query_run: PathLike | Run | None = None,
    bm25_run: PathLike | Run | None = None,
    depth: int = DEFAULT_DEPTH,
) -> dict[str, list[str]]:
    """The positives `mine_episode` gives each training query when mining from these rankings.

    The judged positives; for a QA collection (`collection.answers`), a query without one takes the best-ranked passage
    holding an answer (in `query_run`, else `bm25_run`). The runner gathers the lookahead vectors of exactly these, so a
    promoted positive has a lookahead ranking.

    Args:
        collection: the training collection.
        query_run, bm25_run: the ANN and BM25 rankings of the training queries (TREC files or Runs), if mined from.
        depth: the candidates looked at per ranking.

    Returns:
        {query id: positives}.
    """
    positives = {q: collection.positives(q) for q in collection.queries}
    if not getattr(collection, "answers", None):
        return positives
    runs = {name: open_run(r) for name, r in (("ann", query_run), ("bm25", bm25_run)) if r is not None}
    return answer_positives_and_exclusions(collection, _query_runs(runs), positives, depth=depth)[0]


@dataclass
class Hooks:
    """The functions `mine_episode` calls; swap any of them for your own with the same signature.

    The source hooks are called a batch of queries at a time (their `positives` hold that batch); a replaced `combine`
    is called once with every query's negatives, which then are all in memory. With a positive-aware filter set, the
    ann, lookahead and bm25 hooks also receive `keep=` (`keep(qid, rank-ordered candidates) -> kept`, applied before
    sampling); momentum's lists are filtered after the hook.
    """

    ann: Callable[..., Negatives] = ann_negatives
    lookahead: Callable[..., Negatives] = lookahead_negatives
    momentum: Callable[..., Negatives] = momentum_negatives
    bm25: Callable[..., Negatives] = bm25_negatives
    combine: Callable[..., tuple[list, dict]] = build_pool


@dataclass
class MiningConfig:
    """How `mine_episode` mines each source (the defaults are the reference recipe's).

    Args:
        depth, sample: as for `ranked_negatives` (`sample` per source and query).
        seed: the seed of each query's draw.
        all_positives: lookahead merges the rankings of all of a query's positives (else its first's).
        dedupe: keep each negative once per query.
        hooks: the functions that mine each source and combine them.
        max_negative_ratio, negative_margin: the positive-aware filter's ratio and margin rules (`filters`; None: off).
        skip_top: the best-ranked candidates of each ranking that are never negatives.
        filter_positive: the positive whose score the filter compares with (`data.names.FILTER_POSITIVES`).
        momentum: momentum replay (`data.names.MOMENTUM_MODES`; "all": none).
        train_positives: each entry's training positives: all judged ones, or the one the mining model scores highest
            (`data.names.TRAIN_POSITIVES`).
    """

    depth: int = DEFAULT_DEPTH
    sample: int | None = DEFAULT_SAMPLE
    seed: int = 0
    all_positives: bool = False
    dedupe: bool = False
    hooks: Hooks = field(default_factory=Hooks)
    max_negative_ratio: float | None = None
    negative_margin: float | None = None
    skip_top: int = 0
    filter_positive: FilterPositive = "weakest"
    momentum: MomentumMode = "all"
    train_positives: TrainPositives = "all"

    def __post_init__(self) -> None:
        check_choice("momentum", self.momentum, MOMENTUM_MODES)
        check_choice("train_positives", self.train_positives, TRAIN_POSITIVES)
        self.filter_settings()  # checks the filter's values

    def filter_settings(self) -> FilterSettings:
        """The positive-aware filter's options."""
        return FilterSettings(self.max_negative_ratio, self.negative_margin, self.skip_top, self.filter_positive)

    def needs_scores(self, *, with_previous: bool) -> bool:
        """Whether mining needs the mining model's S(q, d): score rules, `train_positives best` or momentum replay.

        Args:
            with_previous: a previous pool is mined (momentum, which replay needs).

        Returns:
            True when `mine_episode` needs `scores`.
        """
        return (self.filter_settings().needs_scores or self.train_positives != "all"
                or (self.momentum != "all" and with_previous))


class BatchMiner:
    """Every source's negatives of a batch of training queries, by `config`'s hooks (`mine_episode`'s miner); the
    filter's counts (`filter`) and momentum replay's (`replay_stats`) add up over the batches.

    Args:
        collection: the training collection (its queries, their positives and, for QA sets, answers).
        config: the mining settings.
        runs: the rankings by source ("ann" and "bm25" keyed by query, "lookahead" by positive docid).
        previous: the previous pool's entries by query id, or None (no momentum).
        scorer: the mining model's S(q, d), or None.
    """

    def __init__(self, collection: Collection, config: MiningConfig, runs: Mapping[str, Run],
                 previous: Mapping[str, PoolEntry] | None = None, scorer: Scorer | None = None) -> None:
        self.config, self.hooks, self.runs, self.previous, self.scorer = config, config.hooks, runs, previous, scorer
        self.positives: dict[str, list[str]] = {q: collection.positives(q) for q in collection.queries}
        self.exclude: dict[str, set[str]] = {}
        if getattr(collection, "answers", None):
            self.positives, self.exclude = answer_positives_and_exclusions(
                collection, _query_runs(runs), self.positives, depth=config.depth, positive_run=runs.get("lookahead"))
        settings = config.filter_settings()
        self.filter = PositiveAwareFilter(settings, self.positives, scorer) if settings.active else None
        self.replay_stats: dict | None = None
        self.sources = [name for name in ("ann", "lookahead", "momentum", "bm25")
                        if (previous is not None if name == "momentum" else name in runs)]

    def mine(self, qids: Sequence[str], *, momentum_only: bool = False) -> tuple[dict[str, Negatives], list[PoolEntry]]:
        """Every source's negatives of these queries.

        Args:
            qids: the batch's query ids.
            momentum_only: mine momentum alone (for queries of the previous pool that the collection lacks).

        Returns:
            ({source: {query id: negatives}}, the previous pool's entries of these queries).
        """
        if self.filter is not None:
            self.filter.positive_scores.clear()  # (kept for `train_positives`, a batch at a time)
        batch = {q: self.positives.get(q, []) for q in qids}
        options = {"depth": self.config.depth, "sample": self.config.sample, "rng": self.config.seed,
                   "exclude": self.exclude}
        sources: dict[str, Negatives] = {}
        earlier: list[PoolEntry] = []
        for name in self.sources:
            if name == "momentum":
                earlier = [self.previous[q] for q in qids if q in self.previous]
                sources[name] = self._momentum(earlier)
            elif not momentum_only:  # `keep` reaches the hooks only with a filter set (custom hooks need not know it)
                keep = {"keep": self.filter.keeper(name)} if self.filter is not None else {}
                more = {"all_positives": self.config.all_positives} if name == "lookahead" else {}
                sources[name] = getattr(self.hooks, name)(self.runs[name], batch, **options, **keep, **more)
        return sources, earlier

    def _momentum(self, earlier: list[PoolEntry]) -> Negatives:
        """The momentum hook's lists of these entries, replayed (`config.momentum`) and filtered."""
        negatives = self.hooks.momentum(earlier)
        if self.config.momentum != "all":
            negatives, counts = replay_momentum_negatives(negatives, self.positives, self.scorer,
                                                          self.config.momentum)
            self.replay_stats = _add_counts(self.replay_stats, counts)
        if self.filter is not None:
            keep = self.filter.keeper("momentum", ranked=False)
            negatives = {q: keep(q, list(ds)) for q, ds in negatives.items()}
        return negatives

    def train_positives(self, qids: Sequence[str]) -> dict[str, list[str]] | None:
        """The positives the entries of the batch just mined keep for training.

        Args:
            qids: the batch's query ids.

        Returns:
            None (all of them), or under `train_positives best` each query's best-scored positive (reusing the scores
            the filter looked up while mining, where it did).
        """
        if self.config.train_positives == "all":
            return None
        known = self.filter.positive_scores if self.filter is not None else {}
        kept: dict[str, list[str]] = {}
        for q in qids:
            pos = self.positives.get(q, [])
            if best := best_positive(known[q] if q in known else self.scorer.scores(q, pos), pos):
                kept[q] = [best]
        return kept

    def absent_queries(self, queries: Mapping[str, str]) -> list[str]:
        """The previous pool's queries that `queries` lack (their momentum is counted, not pooled).

        Args:
            queries: the collection's queries.

        Returns:
            Their ids, in the previous pool's order.
        """
        return [q for q in self.previous if q not in queries] if self.previous is not None else []

    def combined(self, collection: Collection) -> tuple[list[PoolEntry], dict]:
        """Every query's negatives at once, combined by the (replaced) combine hook.

        Args:
            collection: the training collection.

        Returns:
            The hook's (entries, statistics).
        """
        queries = collection.queries
        sources, earlier = self.mine(list(queries))
        if self.previous is not None:
            absent, earlier_absent = self.mine(self.absent_queries(queries), momentum_only=True)
            sources["momentum"].update(absent["momentum"])
            earlier += earlier_absent
        return self.hooks.combine(collection, sources, earlier if self.previous is not None else None,
                                  positives=self.positives, exclude=self.exclude, dedupe=self.config.dedupe)

    def entries(self, queries: Mapping[str, str], builder: PoolBuilder, desc: str) -> Iterator[PoolEntry]:
        """The pool entries of `queries`, mined and added to `builder` `MINE_BATCH` queries at a time.

        Args:
            queries: {query id: text}, in pool order.
            builder: the builder that makes the entries and keeps their statistics.
            desc: the progress bar's label.

        Returns:
            The entries, a batch at a time (the previous pool's other queries are mined after the last).
        """
        qids = list(queries)
        for start in tqdm(range(0, len(qids), MINE_BATCH), desc=desc, unit="batch", disable=len(qids) <= MINE_BATCH):
            chunk = qids[start:start + MINE_BATCH]
            sources, earlier = self.mine(chunk)
            yield from builder.add(((q, queries[q]) for q in chunk), sources, earlier, positives=self.positives,
                                   exclude=self.exclude, train_positives=self.train_positives(chunk))
        absent = self.absent_queries(queries)
        for start in range(0, len(absent), MINE_BATCH):
            self.mine(absent[start:start + MINE_BATCH], momentum_only=True)


def mining_stats(pool_stats: dict, miner: BatchMiner, pool_path: Path) -> dict:
    """pool.stats.json's mining fields: the pool's statistics, the settings, the filter's and replay's counts (logged).

    Args:
        pool_stats: the statistics of the mined entries (`PoolBuilder.stats`, or a combine hook's).
        miner: the miner that mined them.
        pool_path: the pool they are written to (named in the log).

    Returns:
        `pool_stats` with `config` (and `positive_aware_filter`, `momentum_replay`) added; an option's keys appear only
        when it is set, so the stats of a pool mined without it stay what they were.
    """
    cfg = miner.config
    config = pool_stats["config"] = {"depth": cfg.depth, "sample": cfg.sample, "seed": cfg.seed,
                                     "all_positives": cfg.all_positives, "dedupe": cfg.dedupe,
                                     "sources": miner.sources}
    if miner.filter is not None:
        config.update(miner.filter.settings.to_dict())
        pool_stats["positive_aware_filter"] = miner.filter.stats()
    if cfg.train_positives != "all":
        config["train_positives"] = cfg.train_positives
    if cfg.momentum != "all":
        config["momentum"] = cfg.momentum
        pool_stats["momentum_replay"] = miner.replay_stats
    logger.info("pool %s: %d queries kept, dropped %s; sources %s", pool_path, pool_stats["kept"],
                pool_stats["dropped"], {k: v["negatives"] for k, v in pool_stats["sources"].items()})
    return pool_stats


def mine_episode(
    collection: Collection,
    pool_path: PathLike,
    *,
    query_run: PathLike | Run | None = None,
    positive_run: PathLike | Run | None = None,
    previous_pool: PathLike | list | None = None,
    bm25_run: PathLike | Run | None = None,
    config: MiningConfig | None = None,
    overwrite: bool = False,
    scores: Scorer | Mapping[str, Mapping[str, float]] | PathLike | None = None,
) -> Path:
    """Build and write episode i's pool (`pool.jsonl` + `pool.stats.json`) from the given rankings.

    Missing inputs leave their source out; for a QA collection, a query without a positive takes its best answer
    passage. Unless the combine hook is replaced, the pool is mined and written `MINE_BATCH` queries at a time
    (`BatchMiner`).

    Args:
        collection: the training collection.
        pool_path: the pool.jsonl to write; an existing pool (with its stats) is kept unless `overwrite`.
        query_run, bm25_run: the ANN and (optional) BM25 rankings of the training queries (TREC files or Runs).
        positive_run: the ranking of their positive passages, keyed by positive docid (lookahead).
        previous_pool: episode i-1's pool file or entries (momentum).
        config: the mining settings.
        overwrite: mine again over an existing pool.
        scores: the mining model's S(q, d) (a `filters.Scorer`, a score table or a stored `.npz` table), which the
            positive-aware filter, momentum replay and `train_positives best` need.

    Returns:
        `pool_path`.
    """
    pool_path = Path(pool_path)
    if pool_path.exists() and pool_stats_path(pool_path).exists() and not overwrite:
        logger.info("pool %s exists; not mining again", pool_path)
        return pool_path
    cfg = config or MiningConfig()
    scorer = as_scorer(scores)
    if scorer is None and cfg.needs_scores(with_previous=previous_pool is not None):
        raise ValueError(f"{pool_path}: --max_negative_ratio, --negative_margin, --train_positives best and --momentum "
                         f"{'/'.join(MOMENTUM_MODES[1:])} need the mining model's scores (pass scores=...)")
    if cfg.train_positives != "all" and cfg.hooks.combine is not build_pool:
        raise ValueError("--train_positives best is applied by the streamed pool builder; a replaced combine hook "
                         "chooses its own positives")
    runs = {name: open_run(r) for name, r in (("ann", query_run), ("lookahead", positive_run), ("bm25", bm25_run))
            if r is not None}
    previous = (None if previous_pool is None else IndexedPool(previous_pool)
                if isinstance(previous_pool, (str, Path)) else {e.query_id: e for e in previous_pool})
    if not runs and previous is None:
        raise ValueError(f"{pool_path}: no ranking or previous pool given; nothing to mine from")
    miner = BatchMiner(collection, cfg, runs, previous, scorer)
    if cfg.hooks.combine is build_pool:  # streamed: a batch of queries mined, added and written at a time
        builder = PoolBuilder(ordered_sources(miner.sources), with_previous=previous is not None, dedupe=cfg.dedupe)
        write_pool(pool_path, miner.entries(collection.queries, builder, f"mining {pool_path.name}"),
                   lambda: mining_stats(builder.stats(), miner, pool_path))
    else:
        entries, stats = miner.combined(collection)
        write_pool(pool_path, entries, mining_stats(stats, miner, pool_path))
    return pool_path


def _add_counts(total: dict | None, counts: dict) -> dict:
    """`counts` added to `total` field by field (integers summed, the other fields kept): stats of batches."""
    if total is None:
        return dict(counts)
    return {k: total[k] + v if isinstance(v, int) else v for k, v in counts.items()}
