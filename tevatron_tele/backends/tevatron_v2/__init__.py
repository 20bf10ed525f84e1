"""The current-Tevatron backend (`tevatron.retriever`, installed from its repository): LoRA, decoder models with
last-token pooling, query/passage prefixes and GradCache, on our pools and token caches."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ...data.token_cache import TokenCache
from .arguments import TeleDataArguments, TeleModelArguments, TeleTrainingArguments
from .dataset import TeleTextCollator, TeleTokenCollator, TeleTrainDataset
from .modeling import TeleDenseModel, build_model, load_encoder, save_model
from .trainer import TeleGradCacheTrainer, TeleTrainer, make_trainer

NAME = "v2"


def make_dataset(data_args: TeleDataArguments, entries: Iterable, tokenizer: Any, *,
                 query_cache: TokenCache | None = None, corpus_cache: TokenCache | None = None, seed: int = 42,
                 collection: Any = None) -> TeleTrainDataset:
    """TeleTrainDataset over the pool entries, fed as `data_args.feed` says.

    Args:
        data_args, entries, tokenizer, query_cache, corpus_cache, seed, collection: as `TeleTrainDataset` takes them.

    Returns:
        The dataset.
    """
    return TeleTrainDataset(data_args, entries, tokenizer, query_cache=query_cache, corpus_cache=corpus_cache,
                            seed=seed, collection=collection)


def make_collator(data_args: TeleDataArguments, tokenizer: Any, dataset: Any = None
                  ) -> TeleTextCollator | TeleTokenCollator:
    """The collator for the dataset's feed; sets the tokenizer's pad token (EOS when it has none, as Tevatron's driver
    does for decoder models) and padding side.

    Args:
        data_args: the feed, lengths and padding are read.
        tokenizer: pads the batches.
        dataset: unused.

    Returns:
        The collator.
    """
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token_id = tokenizer.eos_token_id
    tokenizer.padding_side = "left" if data_args.padding_side == "left" else "right"
    if getattr(data_args, "feed", "token_cache") == "text":
        return TeleTextCollator(data_args, tokenizer)
    return TeleTokenCollator(data_args, tokenizer)


__all__ = ["NAME", "TeleDataArguments", "TeleDenseModel", "TeleGradCacheTrainer", "TeleModelArguments",
           "TeleTextCollator", "TeleTokenCollator", "TeleTrainDataset", "TeleTrainer", "TeleTrainingArguments",
           "build_model", "load_encoder", "make_collator", "make_dataset", "make_trainer", "save_model"]
