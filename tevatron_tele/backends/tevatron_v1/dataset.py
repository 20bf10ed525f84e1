"""TeleTrainDataset on Tevatron 0.1.0: its `TrainDataset` fed from a negative pool and token caches."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tevatron.data import QPCollator, TrainDataset

from ...data.examples import build_example
from ...data.pool_sampler import PoolSampler, TrainGroup, batch_keys


class TeleTrainDataset(PoolSampler, TrainDataset):
    """Tevatron 0.1.0's TrainDataset over a pool: examples are built from cached token ids.

    Args:
        data_args: TeleDataArguments (train_n_passages, q_max_len, p_max_len, negative_mixing, ...).
        entries: pool entries (`read_pool`, or `iter_pool` to stream them) or reference tokenized dicts
            (`read_reference_pool`).
        tokenizer: the model's tokenizer.
        query_cache, corpus_cache: TokenCaches of the queries and of the corpus (the latter required for id pools).
        trainer: the Trainer whose epoch and seed drive the choice (Tevatron sets it after building).
        seed: seed used while no trainer is attached.
    """

    def __init__(self, data_args, entries: Iterable[Any], tokenizer, *, query_cache=None, corpus_cache=None,
                 trainer=None, seed: int = 42):
        groups = self.load_groups(data_args, entries, tokenizer, query_cache=query_cache, corpus_cache=corpus_cache,
                                  seed=seed)
        TrainDataset.__init__(self, data_args, groups, tokenizer, trainer)

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


class TeleQPCollator(QPCollator):
    """Tevatron's QPCollator; examples carrying passage keys also yield the tensors the model masks with:
    `passage_keys` [B * n] and `query_positive_keys` [B, max positives] padded with -1."""

    def __call__(self, features):
        if len(features[0]) == 2:
            return super().__call__(features)
        query, passage = super().__call__([(f[0], f[1]) for f in features])
        return query, passage, batch_keys([f[2] for f in features])
