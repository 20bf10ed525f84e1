"""TeleTrainDataset on current Tevatron: its `TrainDataset` over a negative pool, fed from token caches or text.

Tevatron's own `TrainDataset.__init__` loads the pool and corpus with HF `datasets`; here the pool is already read (with
its per-source lists) and the corpus lives in a memory-mapped token cache, so that constructor is not called: the
attributes its methods use are set instead.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tevatron.retriever.collator import TrainCollator
from tevatron.retriever.dataset import TrainDataset

from ...data.examples import InputFormat
from ...data.pool_sampler import PoolSampler, TrainGroup, batch_keys


class TeleTrainDataset(PoolSampler, TrainDataset):
    """Current Tevatron's TrainDataset over a pool.

    With `data_args.feed == "token_cache"` an example is (query ids, [passage ids]) built from the caches (with
    --query_prefix / --passage_prefix tokenized once, and --append_eos_token), for `TeleTokenCollator`; with `"text"` it
    is Tevatron's own ((text, None, None, None), [...]) for its `TrainCollator`, the texts read from `collection`
    (passages as `title <sep> text`, like the token cache and `export_corpus`).

    Args:
        data_args: TeleDataArguments of this backend.
        entries: pool entries (`read_pool`, or `iter_pool` to stream them) or reference tokenized dicts (token_cache
            feed only).
        tokenizer: the model's tokenizer.
        query_cache, corpus_cache: TokenCaches of the queries and of the corpus.
        trainer: the Trainer whose epoch and seed drive the choice (set by `set_trainer`).
        seed: seed used while no trainer is attached.
        collection: the collection (needed by the text feed).
    """

    def __init__(self, data_args, entries: Iterable[Any], tokenizer, *, query_cache=None, corpus_cache=None,
                 trainer=None, seed: int = 42, collection=None):
        self.feed = getattr(data_args, "feed", "token_cache")
        if self.feed == "text" and (collection is None or corpus_cache is None):
            raise ValueError("--feed text needs a pool of document ids and its --collection (reference tokenized "
                             "pools hold token ids: use --feed token_cache)")
        self.train_data = self.load_groups(data_args, entries, tokenizer, query_cache=query_cache,
                                           corpus_cache=corpus_cache, seed=seed)
        self.trainer, self.tok, self.collection = trainer, tokenizer, collection
        self.corpus, self.docid_to_index = None, {}
        self.input_format = InputFormat.from_texts(tokenizer, data_args.query_prefix, data_args.passage_prefix,
                                                   data_args.append_eos_token)
        self._sep = tokenizer.sep_token or ""

    def __len__(self) -> int:
        return len(self.train_data)

    def passage_text(self, key: int) -> str:
        """The text feed's passage.

        Args:
            key: the passage's token-cache key.

        Returns:
            `title <sep> text`.
        """
        return self.collection.corpus.passage_text(self.collection.corpus.position(self.corpus_cache.ids[key]),
                                                   self._sep)

    def __getitem__(self, item):
        group: TrainGroup = self.train_data[item]
        positive, negatives = self.select(item)
        keys = [positive, *negatives]
        if self.feed == "text":
            args = self.data_args
            query = (args.query_prefix + self.collection.queries[group.query_id], None, None, None)
            passages = [(args.passage_prefix + self.passage_text(k), None, None, None) for k in keys]
        else:
            query = self.input_format.build(self.tok, self.query_tokens(group), self.data_args.q_max_len,
                                            is_query=True)
            passages = [self.input_format.build(self.tok, self.passage_tokens(k), self.data_args.p_max_len,
                                                is_query=False) for k in keys]
        if self.return_keys:
            return query, passages, {"passage_keys": keys, "positive_keys": group.positives.tolist()}
        return query, passages


@dataclass
class TeleTokenCollator:
    """Pads token-id examples as Tevatron's TrainCollator pads its own (pad_to_multiple_of, attention mask); examples
    carrying passage keys also yield the masking tensors."""

    data_args: Any
    tokenizer: Any

    def _pad(self, features: list[dict], max_len: int):
        if getattr(self.data_args, "pad_to_max_length", False):
            return self.tokenizer.pad(features, padding="max_length", max_length=max_len,
                                      return_attention_mask=True, return_tensors="pt")
        return self.tokenizer.pad(features, padding=True, pad_to_multiple_of=self.data_args.pad_to_multiple_of,
                                  return_attention_mask=True, return_tensors="pt")

    def __call__(self, features):
        query = self._pad([f[0] for f in features], self.data_args.query_max_len)
        passage = self._pad([p for f in features for p in f[1]], self.data_args.passage_max_len)
        if len(features[0]) == 2:
            return query, passage
        return query, passage, batch_keys([f[2] for f in features])


class TeleTextCollator(TrainCollator):
    """Tevatron's TrainCollator (it tokenizes the texts); examples carrying passage keys also yield the masking
    tensors."""

    def __call__(self, features):
        query, passage = super().__call__([(f[0], f[1]) for f in features])
        if len(features[0]) == 2:
            return query, passage
        return query, passage, batch_keys([f[2] for f in features])
