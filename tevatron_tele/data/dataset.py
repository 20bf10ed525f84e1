"""TeleTrainDataset: Tevatron's TrainDataset fed from a negative pool and token caches.

Each training query becomes a group of integer passage keys (positions in the corpus token cache, or
in a table of distinct passages for reference tokenized pools); an example is the query plus one
positive and `train_n_passages - 1` negatives, chosen from (seed, epoch, item) alone, so runs repeat.
"""
from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tevatron.data import QPCollator, TrainDataset

from ..compat import build_example

logger = logging.getLogger(__name__)

SOURCE_ORDER = ("ann", "lookahead", "momentum", "bm25")
_HASH_MODULUS = 2**61 - 1  # Python's hash of a non-negative int below this is the int itself


def example_seed(item: int, seed: int) -> int:
    """Per-example seed; equals Tevatron's `hash(item + seed)` without depending on Python's hashing."""
    return (int(item) + int(seed)) % _HASH_MODULUS


@dataclass
class TrainGroup:
    """One training query: its token key, positive keys, stored negatives and per-source negatives."""

    query_id: str
    query: int
    positives: np.ndarray
    negatives: np.ndarray
    sources: dict[str, np.ndarray] = field(default_factory=dict)


def _dedupe(keys: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(int(k) for k in keys))


def quotas(weights: dict[str, float], n: int) -> dict[str, int]:
    """Split n slots by weight (largest remainder; ties go to the earlier source)."""
    total = sum(weights.values())
    if n <= 0 or total <= 0:
        return {name: 0 for name in weights}
    exact = {name: n * w / total for name, w in weights.items()}
    counts = {name: int(v) for name, v in exact.items()}
    order = sorted(weights, key=lambda name: -(exact[name] - counts[name]))
    for name in order[: n - sum(counts.values())]:
        counts[name] += 1
    return counts


def select_concat(negatives: Sequence[int], n: int, hashed_seed: int, epoch: int, *, no_shuffle: bool = False
                  ) -> list[int]:
    """Tevatron 0.1.0's negative choice: shuffled by the example seed, a window moving with the epoch.

    Duplicates are kept, so a negative listed by several sources is seen more often. When the list
    is shorter than n it is sampled with replacement, seeded (Tevatron uses the global RNG there).
    """
    if n == 0:
        return []
    if len(negatives) < n:
        return random.Random(f"{hashed_seed}:{epoch}:replace").choices(list(negatives), k=n)
    if no_shuffle:
        return list(negatives[:n])
    offset = epoch * n % len(negatives)
    negs = list(negatives)
    random.Random(hashed_seed).shuffle(negs)
    negs = negs * 2
    return negs[offset: offset + n]


def select_weighted(sources: dict[str, Sequence[int]], weights: dict[str, float], n: int, hashed_seed: int,
                    epoch: int) -> list[int]:
    """Per-source quotas from `weights` over the sources present, de-duplicated across sources.

    A source with fewer distinct negatives than its quota gives what it has; the rest comes from the
    other sources (round robin). Only when all sources together hold fewer than n distinct negatives
    are the missing ones drawn again, with replacement.
    """
    if n == 0:
        return []
    lists: dict[str, list[int]] = {}
    for name, keys in sources.items():
        unique = _dedupe(keys)
        if unique:
            random.Random(f"{hashed_seed}:{name}").shuffle(unique)
            lists[name] = unique
    if not lists:
        return []
    present = {name: weights.get(name, 0.0) for name in lists}
    if sum(present.values()) <= 0:
        present = {name: 1.0 for name in lists}  # none of the weighted sources here: share equally
    quota = quotas(present, n)
    rotated = {}
    for name, keys in lists.items():
        offset = epoch * max(quota[name], 1) % len(keys)
        rotated[name] = keys[offset:] + keys[:offset]

    chosen: list[int] = []
    seen: set[int] = set()
    for name, keys in rotated.items():
        taken = 0
        for key in keys:
            if taken == quota[name]:
                break
            if key not in seen:
                seen.add(key)
                chosen.append(key)
                taken += 1
    if len(chosen) < n:  # fill short quotas from the other sources, round robin
        iters = [iter(keys) for keys in rotated.values()]
        while len(chosen) < n and iters:
            for it in list(iters):
                key = next((k for k in it if k not in seen), None)
                if key is None:
                    iters.remove(it)
                    continue
                seen.add(key)
                chosen.append(key)
                if len(chosen) == n:
                    break
    if len(chosen) < n:
        pool = sorted(seen)
        chosen += random.Random(f"{hashed_seed}:{epoch}:replace").choices(pool, k=n - len(chosen))
    return chosen


def detect_pool_format(path: str | Path) -> str:
    """'ids' for pool.jsonl (query_id, ...), 'reference' for tokenized {query, positives, negatives}
    (a file, or a folder of such files as the reference code writes them)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl"))
        if not files:
            raise FileNotFoundError(f"no .json/.jsonl files in {path}")
        path = files[0]
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                obj = json.loads(line)
                if "query_id" in obj:
                    return "ids"
                if "query" in obj and "positives" in obj:
                    return "reference"
                raise ValueError(f"{path}:1: neither a pool.jsonl line (query_id) nor a tokenized line (query)")
    raise ValueError(f"{path}: empty pool")


class TeleTrainDataset(TrainDataset):
    """Training examples from a negative pool, built from cached token ids (no text processing here).

    `entries` are `PoolEntry` objects (with `query_cache` / `corpus_cache` TokenCaches) or reference
    ANCE-Tele dicts of token ids ({"query", "positives", "negatives"}). `data_args` supplies
    train_n_passages, q_max_len, p_max_len, negative_mixing, source_weight_map, mask_batch_positives and
    the *_no_shuffle switches. The epoch and seed come from `trainer` when set (as in Tevatron), else
    from `self.epoch` / `seed`.
    """

    def __init__(self, data_args, entries: Sequence[Any], tokenizer, *, query_cache=None, corpus_cache=None,
                 trainer=None, seed: int = 42):
        self.query_cache, self.corpus_cache = query_cache, corpus_cache
        self._query_tokens: list[np.ndarray] = []   # queries without a cache entry, tokenized here
        self._passage_tokens: list[np.ndarray] = []  # distinct passages of a reference pool
        self._passage_index: dict[tuple[int, ...], int] = {}
        self.dropped = {"no_positives": 0, "no_negatives": 0}
        groups = [g for g in (self._group(e, tokenizer) for e in entries) if g is not None]
        super().__init__(data_args, groups, tokenizer, trainer)
        self.seed, self.epoch = seed, 0
        self.n_negatives = data_args.train_n_passages - 1
        self.mixing = getattr(data_args, "negative_mixing", "concat")
        self.weights = getattr(data_args, "source_weight_map", None) or {"ann": 0.5, "lookahead": 0.25,
                                                                           "momentum": 0.25}
        self.return_keys = bool(getattr(data_args, "mask_batch_positives", False))
        logger.info("training queries: %d kept, %d dropped without positives, %d dropped without negatives",
                    len(groups), self.dropped["no_positives"], self.dropped["no_negatives"])
        if not groups:
            raise ValueError("no training query has both a positive and a negative")

    # -- loading ---------------------------------------------------------------------------------

    def _group(self, entry, tokenizer) -> TrainGroup | None:
        if isinstance(entry, dict):
            return self._reference_group(entry)
        positives = [self._corpus_key(entry.query_id, d) for d in entry.positive_document_ids]
        sources = {name: np.asarray([self._corpus_key(entry.query_id, d) for d in docs], dtype=np.int64)
                   for name, docs in _ordered(entry.sources).items()}
        negatives = [self._corpus_key(entry.query_id, d) for d in entry.negative_document_ids]
        if not negatives:
            negatives = [k for keys in sources.values() for k in keys.tolist()]
        if not positives:
            self.dropped["no_positives"] += 1
            return None
        if not negatives:
            self.dropped["no_negatives"] += 1
            return None
        return TrainGroup(entry.query_id, self._query_key(entry, tokenizer), np.asarray(positives, dtype=np.int64),
                          np.asarray(negatives, dtype=np.int64), sources)

    def _reference_group(self, entry: dict) -> TrainGroup | None:
        if not entry.get("positives"):
            self.dropped["no_positives"] += 1
            return None
        if not entry.get("negatives"):
            self.dropped["no_negatives"] += 1
            return None
        keys = {}
        for name in ("positives", "negatives"):
            keys[name] = np.asarray([self._passage_key(p) for p in entry[name]], dtype=np.int64)
        self._query_tokens.append(np.asarray(entry["query"], dtype=np.int32))
        return TrainGroup(str(len(self._query_tokens) - 1), -len(self._query_tokens), keys["positives"],
                          keys["negatives"], {"negatives": keys["negatives"]})

    def _passage_key(self, tokens: Sequence[int]) -> int:
        token_tuple = tuple(int(t) for t in tokens)
        key = self._passage_index.get(token_tuple)
        if key is None:
            key = self._passage_index[token_tuple] = len(self._passage_tokens)
            self._passage_tokens.append(np.asarray(token_tuple, dtype=np.int32))
        return key

    def _corpus_key(self, query_id: str, docid: str) -> int:
        if self.corpus_cache is None:
            raise ValueError("a pool of document ids needs corpus_cache (a TokenCache of the corpus)")
        try:
            return int(self.corpus_cache.position(docid))
        except KeyError:
            raise KeyError(f"pool query '{query_id}': document '{docid}' is not in the corpus token cache") from None

    def _query_key(self, entry, tokenizer) -> int:
        """Position in the query cache (>= 0), or -(1 + index) into queries tokenized here from the pool."""
        if self.query_cache is not None:
            try:
                return int(self.query_cache.position(entry.query_id))
            except KeyError:
                pass
        if not entry.query_text:
            raise KeyError(f"pool query '{entry.query_id}': not in the query token cache and no query_text")
        ids = tokenizer(entry.query_text, add_special_tokens=False)["input_ids"]
        self._query_tokens.append(np.asarray(ids, dtype=np.int32))
        return -len(self._query_tokens)

    # -- access ----------------------------------------------------------------------------------

    def query_tokens(self, group: TrainGroup) -> np.ndarray:
        return self._query_tokens[-group.query - 1] if group.query < 0 else self.query_cache[group.query]

    def passage_tokens(self, key: int) -> np.ndarray:
        return self._passage_tokens[key] if self._passage_tokens else self.corpus_cache[key]

    def current_epoch(self) -> int:
        return int(self.trainer.state.epoch) if self.trainer is not None else self.epoch

    def current_seed(self) -> int:
        return int(self.trainer.args.seed) if self.trainer is not None else self.seed

    def select(self, item: int) -> tuple[int, list[int]]:
        """(positive key, negative keys) of example `item` at the current epoch."""
        group: TrainGroup = self.train_data[item]
        epoch = self.current_epoch()
        hashed = example_seed(item, self.current_seed())
        if self.data_args.positive_passage_no_shuffle:
            positive = int(group.positives[0])
        else:
            positive = int(group.positives[(hashed + epoch) % len(group.positives)])
        if self.mixing == "weighted":
            sources = group.sources or {"negatives": group.negatives}
            negatives = select_weighted(sources, self.weights, self.n_negatives, hashed, epoch)
        else:
            negatives = select_concat(group.negatives.tolist(), self.n_negatives, hashed, epoch,
                                      no_shuffle=self.data_args.negative_passage_no_shuffle)
        return positive, [int(k) for k in negatives]

    def __getitem__(self, item):
        group: TrainGroup = self.train_data[item]
        positive, negatives = self.select(item)
        query = build_example(self.tok, self.query_tokens(group), self.data_args.q_max_len)
        passages = [build_example(self.tok, self.passage_tokens(k), self.data_args.p_max_len)
                    for k in [positive, *negatives]]
        if self.return_keys:
            return query, passages, {"passage_keys": [positive, *negatives],
                                     "positive_keys": group.positives.tolist()}
        return query, passages


def _ordered(sources: dict[str, list[str]]) -> dict[str, list[str]]:
    known = [s for s in SOURCE_ORDER if s in sources]
    return {name: sources[name] for name in known + sorted(set(sources) - set(known))}


class TeleQPCollator(QPCollator):
    """Tevatron's QPCollator; examples carrying passage keys also yield the tensors the model masks with:
    `passage_keys` [B * n] and `query_positive_keys` [B, max positives] padded with -1."""

    def __call__(self, features):
        if len(features[0]) == 2:
            return super().__call__(features)
        query, passage = super().__call__([(f[0], f[1]) for f in features])
        passage_keys = torch.tensor([k for f in features for k in f[2]["passage_keys"]], dtype=torch.long)
        width = max(len(f[2]["positive_keys"]) for f in features)
        positive_keys = torch.full((len(features), width), -1, dtype=torch.long)
        for i, f in enumerate(features):
            positive_keys[i, : len(f[2]["positive_keys"])] = torch.tensor(f[2]["positive_keys"], dtype=torch.long)
        return query, passage, {"passage_keys": passage_keys, "query_positive_keys": positive_keys}
