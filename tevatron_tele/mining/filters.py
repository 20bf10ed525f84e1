"""Positive-aware negative filtering and forgotten-negative replay, from the mining model's S(q, d).

Positive-aware filter (NV-Retriever's TopK-PercPos / TopK-MarginPos; sentence-transformers' `mine_hard_negatives` with
`relative_margin` / `absolute_margin` / `range_min`): a mined candidate that the mining model scores too close to the
query's positive is likely an unlabelled relevant passage (a false negative), so it is dropped before sampling. s+ is
the score of the positive chosen by `filter_positive`: the *weakest* (the lowest S(q, d+): a candidate close to any
positive is suspect, which on a collection with dozens of judged positives per query drops nearly every candidate) or
the *best* (the highest, as a miner comparing each candidate with the one positive it trains on would). A candidate goes
when any rule set fires:

- `max_negative_ratio R`: drop d when S(q, d) > s+ - (1 - R) * |s+|, i.e. S(q, d) > R * s+ for s+ > 0. For s+ < 0
  (unnormalized dot products, a poor model's cosines) R * s+ would lie *above* s+ and a smaller R would drop *less*;
  this threshold never exceeds s+ for R <= 1, and a smaller R always drops more. R > 1 drops only candidates clearly
  above the positive; s+ = 0 makes the threshold 0 for every R.
- `negative_margin M`: drop d when S(q, d) > s+ - M (M = 0: anything scored above s+).
- `skip_top K`: the K best-ranked candidates of each ranking (after the query's positives are removed) are never
  negatives. It needs no scores and does not apply to momentum, which is not a ranking.

A candidate without a score (every candidate, when no positive of the query has one) is kept and counted as `unscored`.

Forgotten-negative replay (a momentum variant): a negative of the earlier pools that model i-1 again scores above the
query's weakest positive has been forgotten. `momentum="forgotten-only"` keeps just those; `"forgotten-first"` puts them
(each once, in pool order) ahead of the whole momentum list. As both mixing rules shuffle a query's list, what counts is
the extra copy: concat mixing (the default) draws a forgotten negative about twice as often, as it does one found by two
sources (`weighted` mixing, which de-duplicates each source, and `--dedupe` make `forgotten-first` equal `all`). Replay
precedes the filter, and the two pull apart: a forgotten negative scores above the positive, just what the filter takes
for a false negative, so with R <= 1 or M >= 0 against the weakest positive the filter removes every replayed one
(pool.stats.json counts both).
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..data.names import FILTER_POSITIVES, MOMENTUM_MODES, FilterPositive, MomentumMode, check_choice
from ..retrieval.scoring import EmbeddingScorer, StoredScores  # noqa: F401  (EmbeddingScorer re-exported here)

logger = logging.getLogger(__name__)

FILTER_RULES = ("skip_top", "max_negative_ratio", "negative_margin")


class Scorer(Protocol):
    def scores(self, qid: str, docids: Iterable[str]) -> dict[str, float]:
        """S(q, d) of the given passages.

        Args:
            qid, docids: the query and the passages.

        Returns:
            {docid: score}; passages (or a query) without a score are left out.
        """


class TableScorer:
    """Scores from a table `{qid: {docid: score}}` (`retrieval.scoring.ScoreTable`)."""

    def __init__(self, table: Mapping[str, Mapping[str, float]]):
        self.table = table

    def scores(self, qid: str, docids: Iterable[str]) -> dict[str, float]:
        """S(q, d) of the given passages that the table holds (`Scorer.scores`)."""
        row = self.table.get(qid, {})
        return {d: float(row[d]) for d in docids if d in row}


def as_scorer(scores) -> Scorer | None:
    """The Scorer of what `mine_episode` was given as `scores`.

    Args:
        scores: None, a Scorer, a score table `{qid: {docid: score}}`, or the path of a stored table (.npz).

    Returns:
        A Scorer, or None for None.
    """
    if scores is None or hasattr(scores, "scores"):
        return scores
    if isinstance(scores, (str, Path)):
        return TableScorer(StoredScores(scores))  # read a query at a time, not made into dicts
    if isinstance(scores, Mapping):
        return TableScorer(scores)
    raise TypeError(f"scores: expected a Scorer, a score table or a .npz path, got {type(scores).__name__}")


def weakest_positive_score(scores: Mapping[str, float], positives: Iterable[str]) -> float | None:
    """The lowest score among the query's positives that have one.

    Args:
        scores, positives: as for `reference_positive_score`.

    Returns:
        The score, or None when no positive has one.
    """
    return reference_positive_score(scores, positives, "weakest")


def reference_positive_score(scores: Mapping[str, float], positives: Iterable[str],
                             rule: FilterPositive = "weakest") -> float | None:
    """s+, the positive score the filter compares candidates with.

    Args:
        scores: S(q, d) of the query's positives (and candidates).
        positives: the query's positives.
        rule: 'weakest' (the lowest positive score) or 'best' (the highest).

    Returns:
        s+, or None when no positive has a score.
    """
    values = [scores[p] for p in positives if p in scores]
    if not values:
        return None
    return max(values) if rule == "best" else min(values)


def best_positive(scores: Mapping[str, float], positives: Sequence[str]) -> str | None:
    """The positive the mining model scores highest (the first of a tie).

    Args:
        scores, positives: S(q, d) of the query's positives, and the positives.

    Returns:
        Its id, or None when no positive has a score.
    """
    scored = [p for p in positives if p in scores]
    return max(scored, key=lambda p: scores[p]) if scored else None


def ratio_threshold(positive_score: float, ratio: float) -> float:
    """The score above which `max_negative_ratio` drops a candidate.

    Args:
        positive_score, ratio: s+ and R.

    Returns:
        s+ - (1 - R) * |s+| (= R * s+ for s+ >= 0).
    """
    return positive_score - (1.0 - ratio) * abs(positive_score)


@dataclass(frozen=True)
class FilterSettings:
    """The positive-aware filter's options (all off by default)."""

    max_negative_ratio: float | None = None
    negative_margin: float | None = None
    skip_top: int = 0
    positive: FilterPositive = "weakest"

    def __post_init__(self):
        check_choice("filter_positive", self.positive, FILTER_POSITIVES)
        if self.max_negative_ratio is not None and not self.max_negative_ratio > 0:
            raise ValueError(f"--max_negative_ratio must be > 0 (e.g. 0.95), got {self.max_negative_ratio}")
        if self.negative_margin is not None and not np.isfinite(self.negative_margin):
            raise ValueError(f"--negative_margin must be a finite number, got {self.negative_margin}")
        if self.skip_top < 0:
            raise ValueError(f"--skip_top must be >= 0, got {self.skip_top}")

    @property
    def active(self) -> bool:
        return self.needs_scores or self.skip_top > 0

    @property
    def needs_scores(self) -> bool:
        return self.max_negative_ratio is not None or self.negative_margin is not None

    def to_dict(self) -> dict:
        """The settings as pool.stats.json records them."""
        out = {"max_negative_ratio": self.max_negative_ratio, "negative_margin": self.negative_margin,
               "skip_top": self.skip_top}
        if self.positive != "weakest":  # (only when set: the stats of earlier filtered pools stay what they were)
            out["filter_positive"] = self.positive
        return out


def filter_candidates(candidates: Sequence[str], scores: Mapping[str, float], positive_score: float | None,
                      settings: FilterSettings, *, ranked: bool = True) -> tuple[list[str], Counter]:
    """The candidates the filter keeps (order and repeats kept), and what each rule removed.

    Args:
        candidates: a query's candidates.
        scores: their S(q, d).
        positive_score: s+ (None: the score rules keep every candidate, counted as unscored).
        settings: the filter's options.
        ranked: the candidates are in rank order (`skip_top` then drops the first K); False for momentum's list.

    Returns:
        (the kept candidates, the counts per rule). Ratio and margin are counted independently (a candidate both drop
        counts under both); `removed` counts each dropped candidate once.
    """
    counts: Counter = Counter(candidates=len(candidates))
    skip = settings.skip_top if ranked else 0
    kept: list[str] = []
    ratio_at = (ratio_threshold(positive_score, settings.max_negative_ratio)
                if positive_score is not None and settings.max_negative_ratio is not None else None)
    margin_at = (positive_score - settings.negative_margin
                 if positive_score is not None and settings.negative_margin is not None else None)
    for rank, d in enumerate(candidates):
        if rank < skip:
            counts["skip_top"] += 1
            continue
        if settings.needs_scores and (positive_score is None or d not in scores):
            counts["unscored"] += 1
            kept.append(d)
            continue
        s = scores.get(d)
        by_ratio = ratio_at is not None and s > ratio_at
        by_margin = margin_at is not None and s > margin_at
        counts["max_negative_ratio"] += by_ratio
        counts["negative_margin"] += by_margin
        if not (by_ratio or by_margin):
            kept.append(d)
    counts["removed"] = len(candidates) - len(kept)
    counts["kept"] = len(kept)
    return kept, counts


class PositiveAwareFilter:
    """The filter of one mining step: `keeper(source)` gives the hooks' per-query `keep(qid, candidates) -> kept`,
    `stats()` what each rule removed per source.

    The positives' scores of each query it scores are kept in `positive_scores` (from its first look-up of the query
    until the caller clears it), so that `train_positives best` need not score them again.

    Args:
        settings: the filter's options.
        positives: each query's positives.
        scorer: the mining model's S(q, d) (needed by the ratio and margin rules).
    """

    def __init__(self, settings: FilterSettings, positives: Mapping[str, Sequence[str]],
                 scorer: Scorer | None = None):
        if settings.needs_scores and scorer is None:
            raise ValueError("--max_negative_ratio / --negative_margin need the mining model's scores S(q, d) "
                             "(a scorer: stored scores or the episode's embeddings)")
        self.settings = settings
        self.positives = positives
        self.scorer = scorer
        self.counts: dict[str, Counter] = {}
        self.positive_scores: dict[str, dict[str, float]] = {}

    def keeper(self, source: str, *, ranked: bool = True) -> Callable[[str, list[str]], list[str]]:
        """The filter of one source's candidates, counted under `source`.

        Args:
            source: the source name its counts are kept under.
            ranked: the candidates come in rank order (`skip_top` applies; not so for momentum).

        Returns:
            `keep(qid, candidates) -> kept`, the candidates the filter keeps (order and repeats kept).
        """
        counts = self.counts.setdefault(source, Counter())

        def keep(qid: str, candidates: list[str]) -> list[str]:
            pos = list(self.positives.get(qid, ()))
            scores: Mapping[str, float] = {}
            if self.settings.needs_scores:
                scores = self.scorer.scores(qid, [*pos, *candidates])
                self.positive_scores.setdefault(qid, {p: scores[p] for p in pos if p in scores})
            positive_score = reference_positive_score(scores, pos, self.settings.positive)
            if self.settings.needs_scores and positive_score is None and candidates:
                counts["queries_without_positive_score"] += 1
            kept, c = filter_candidates(candidates, scores, positive_score, self.settings, ranked=ranked)
            counts.update(c)
            counts["queries"] += 1
            return kept

        return keep

    def stats(self) -> dict:
        """What each rule removed per source so far (pool.stats.json's `positive_aware_filter`)."""
        keys = ("queries", "candidates", "kept", "removed", *FILTER_RULES, "unscored",
                "queries_without_positive_score")
        return {"rule": "drop d when S(q,d) > s+ - (1-R)*|s+| (ratio) or S(q,d) > s+ - M (margin), s+ = the "
                        f"{self.settings.positive} positive's score; skip the top K candidates of each ranking",
                **self.settings.to_dict(),
                "sources": {name: {k: int(c.get(k, 0)) for k in keys} for name, c in self.counts.items()}}


def forgotten(negatives: Sequence[str], scores: Mapping[str, float], positive_score: float | None) -> list[str]:
    """The entries of `negatives` (order and repeats kept) scored above the weakest positive.

    Args:
        negatives: a query's momentum list.
        scores: their S(q, d).
        positive_score: the weakest positive's score (None: nothing is forgotten).

    Returns:
        The forgotten negatives.
    """
    if positive_score is None:
        return []
    return [d for d in negatives if d in scores and scores[d] > positive_score]


def replay_momentum(negatives: Sequence[str], scores: Mapping[str, float], positive_score: float | None,
                    mode: MomentumMode) -> list[str]:
    """A query's momentum list under `mode` (see the module doc).

    Args:
        negatives, scores, positive_score: as for `forgotten`.
        mode: all | forgotten-first | forgotten-only.

    Returns:
        The list momentum contributes to the query's pool entry.
    """
    check_choice("momentum", mode, MOMENTUM_MODES)
    if mode == "all":
        return list(negatives)
    lost = forgotten(negatives, scores, positive_score)
    if mode == "forgotten-only":
        return lost
    return list(dict.fromkeys(lost)) + list(negatives)


def replay_momentum_negatives(momentum: Mapping[str, Sequence[str]], positives: Mapping[str, Sequence[str]],
                              scorer: Scorer, mode: MomentumMode) -> tuple[dict[str, list[str]], dict]:
    """`replay_momentum` for every query of `momentum`, with counts for pool.stats.json.

    Args:
        momentum: each query's momentum list (the previous pool's negatives).
        positives: each query's positives.
        scorer: model i-1's S(q, d).
        mode: as for `replay_momentum`.

    Returns:
        (each query's replayed list, the counts of `momentum_replay`).
    """
    out: dict[str, list[str]] = {}
    counts = Counter()
    scored = mode != "all"
    for qid, negatives in momentum.items():
        pos = list(positives.get(qid, ()))
        scores = scorer.scores(qid, [*pos, *negatives]) if scored else {}
        positive_score = weakest_positive_score(scores, pos)
        lost = forgotten(negatives, scores, positive_score)
        out[qid] = replay_momentum(negatives, scores, positive_score, mode)
        counts["queries"] += 1
        counts["negatives"] += len(negatives)
        counts["forgotten"] += len(lost)
        counts["queries_with_forgotten"] += bool(lost)
        counts["unscored"] += sum(1 for d in negatives if d not in scores) if scored else 0
        counts["queries_without_positive_score"] += positive_score is None and scored
        counts["listed"] += len(out[qid])
    keys = ("queries", "negatives", "forgotten", "queries_with_forgotten", "unscored",
            "queries_without_positive_score", "listed")
    return out, {"mode": mode, "rule": "forgotten: S_{i-1}(q,d) > the weakest positive's S_{i-1}(q,d+)",
                 **{k: int(counts[k]) for k in keys}}
