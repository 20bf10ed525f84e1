"""What every TeleTrainDataset shares, whichever Tevatron it subclasses: pool entries turned into groups of integer
passage keys, and the choice of one example's positive and negatives.

A key is a row of the corpus token cache (for reference tokenized pools, of a table of the file's distinct passages).
A backend's dataset mixes `PoolSampler` into its Tevatron's `TrainDataset` and makes its collator's inputs from keys.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .pools import ordered_sources
from .sampling import DEFAULT_SOURCE_WEIGHTS, example_seed, select_concat, select_weighted

logger = logging.getLogger(__name__)

KEY_DTYPE = np.int32  # a passage key (a token-cache row): 4 bytes for each key every group holds

@dataclass
class TrainGroup:
    """One training query: its token key, positive keys, stored negatives and per-source negatives."""

    query_id: str
    query: int
    positives: np.ndarray
    negatives: np.ndarray
    sources: dict[str, np.ndarray] = field(default_factory=dict)


class PoolSampler:
    """Pool groups and the per-example choice of (positive, negatives); a mixin for TrainDataset subclasses.

    `data_args` supplies train_n_passages, negative_mixing, source_weight_map, mask_batch_positives and the
    *_no_shuffle switches. The epoch and seed come from `trainer` when set (as in Tevatron), else `self.epoch/seed`.
    """

    trainer: Any = None
    data_args: Any = None

    def load_groups(self, data_args, entries: Iterable[Any], tokenizer, *, query_cache=None, corpus_cache=None,
                    seed: int = 42) -> list[TrainGroup]:
        """Set up the sampler and return the training groups (queries without a positive or a negative dropped).

        Args:
            data_args: the backend's TeleDataArguments.
            entries: `PoolEntry` objects (ids) or reference ANCE-Tele dicts of token ids (`{"query", "positives",
                "negatives"}`); read once, so an iterator streams them.
            tokenizer: tokenizes a pool's `query_text` when a query is not in `query_cache`.
            query_cache, corpus_cache: TokenCaches of the queries (optional) and corpus (required for id pools).
            seed: the seed used when no trainer is attached.

        Returns:
            The kept groups, in pool order.
        """
        self.data_args = data_args
        self.query_cache, self.corpus_cache = query_cache, corpus_cache
        self._query_tokens: list[np.ndarray] = []   # queries without a cache entry, tokenized here
        self._passage_tokens: list[np.ndarray] = []  # distinct passages of a reference pool
        self._passage_index: dict[tuple[int, ...], int] = {}
        self.dropped = {"no_positives": 0, "no_negatives": 0}
        groups = [g for g in (self._group(e, tokenizer) for e in entries) if g is not None]
        self.seed, self.epoch = seed, 0
        self.n_negatives = data_args.train_n_passages - 1
        self.mixing = getattr(data_args, "negative_mixing", "concat")
        self.weights = getattr(data_args, "source_weight_map", None) or dict(DEFAULT_SOURCE_WEIGHTS)
        self.return_keys = bool(getattr(data_args, "mask_batch_positives", False))
        logger.info("training queries: %d kept, %d dropped without positives, %d dropped without negatives",
                    len(groups), self.dropped["no_positives"], self.dropped["no_negatives"])
        if not groups:
            raise ValueError("no training query has both a positive and a negative")
        return groups

    # -- loading ---------------------------------------------------------------------------------

    def _group(self, entry, tokenizer) -> TrainGroup | None:
        if isinstance(entry, dict):
            return self._reference_group(entry)
        qid = entry.query_id
        positives = self._keys(qid, entry.positive_document_ids)
        names = ordered_sources(entry.sources)
        listed = [d for name in names for d in entry.sources[name]]
        if not entry.negative_document_ids or entry.negative_document_ids == listed:
            # the negatives are the sources concatenated (a mined pool, not de-duplicated) or given by them
            # alone: one array, each source a view of its part
            negatives = self._keys(qid, listed)
            sources, start = {}, 0
            for name in names:
                end = start + len(entry.sources[name])
                sources[name] = negatives[start:end]
                start = end
        else:
            sources = {name: self._keys(qid, entry.sources[name]) for name in names}
            negatives = self._keys(qid, entry.negative_document_ids)
        if not len(positives):
            self.dropped["no_positives"] += 1
            return None
        if not len(negatives):
            self.dropped["no_negatives"] += 1
            return None
        return TrainGroup(qid, self._query_key(entry, tokenizer), positives, negatives, sources)

    def _keys(self, query_id: str, docids: Sequence[str]) -> np.ndarray:
        return np.asarray([self._corpus_key(query_id, d) for d in docids], dtype=KEY_DTYPE)

    def _reference_group(self, entry: dict) -> TrainGroup | None:
        if not entry.get("positives"):
            self.dropped["no_positives"] += 1
            return None
        if not entry.get("negatives"):
            self.dropped["no_negatives"] += 1
            return None
        keys = {}
        for name in ("positives", "negatives"):
            keys[name] = np.asarray([self._passage_key(p) for p in entry[name]], dtype=KEY_DTYPE)
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
        if getattr(self.data_args, "positive_passage_no_shuffle", False):
            positive = int(group.positives[0])
        else:
            positive = int(group.positives[(hashed + epoch) % len(group.positives)])
        if self.mixing == "weighted":
            sources = group.sources or {"negatives": group.negatives}
            negatives = select_weighted(sources, self.weights, self.n_negatives, hashed, epoch)
        else:
            negatives = select_concat(group.negatives.tolist(), self.n_negatives, hashed, epoch,
                                      no_shuffle=getattr(self.data_args, "negative_passage_no_shuffle", False))
        return positive, [int(k) for k in negatives]


def batch_keys(features: Sequence[dict]) -> dict[str, torch.Tensor]:
    """The tensors in-batch positive masking needs, from examples' key dicts (`passage_keys`, `positive_keys`).

    Args:
        features: one dict per example, as `PoolSampler` examples carry them.

    Returns:
        `passage_keys` [B * n] and `query_positive_keys` [B, most positives] padded with -1.
    """
    passage_keys = torch.tensor([k for f in features for k in f["passage_keys"]], dtype=torch.long)
    width = max(len(f["positive_keys"]) for f in features)
    positive_keys = torch.full((len(features), width), -1, dtype=torch.long)
    for i, f in enumerate(features):
        positive_keys[i, : len(f["positive_keys"])] = torch.tensor(f["positive_keys"], dtype=torch.long)
    return {"passage_keys": passage_keys, "query_positive_keys": positive_keys}
