"""tevatron-tele: ANCE-Tele teleportation negatives for the Tevatron dense-retrieval toolkit.

The names below load on first use, so `import tevatron_tele` stays cheap.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "TeleTrainDataset": "tevatron_tele.data.dataset",
    "TeleQPCollator": "tevatron_tele.data.dataset",
    "Collection": "tevatron_tele.data.collections",
    "Corpus": "tevatron_tele.data.collections",
    "load_collection": "tevatron_tele.data.collections",
    "load_corpus": "tevatron_tele.data.collections",
    "TokenCache": "tevatron_tele.data.token_cache",
    "corpus_token_cache": "tevatron_tele.data.token_cache",
    "query_token_cache": "tevatron_tele.data.token_cache",
    "PoolEntry": "tevatron_tele.data.pools",
    "read_pool": "tevatron_tele.data.pools",
    "write_pool": "tevatron_tele.data.pools",
    "read_reference_pool": "tevatron_tele.data.pools",
    "TeleDenseModel": "tevatron_tele.modeling",
    "load_encoder": "tevatron_tele.modeling",
    "train": "tevatron_tele.training.trainer",
    "TeleDenseModelForInference": "tevatron_tele.modeling",
    "TeleModelArguments": "tevatron_tele.arguments",
    "TeleDataArguments": "tevatron_tele.arguments",
    "TeleTrainingArguments": "tevatron_tele.arguments",
    "TeleTrainer": "tevatron_tele.training.trainer",
    "CompatDenseTrainer": "tevatron_tele.compat",
    "CompatTrainingArguments": "tevatron_tele.compat",
    "build_example": "tevatron_tele.compat",
    "EpisodeArguments": "tevatron_tele.runner.config",
    "run_episodes": "tevatron_tele.runner.episodes",
}

__all__ = [
    "Collection",
    "CompatDenseTrainer",
    "CompatTrainingArguments",
    "Corpus",
    "EpisodeArguments",
    "PoolEntry",
    "TeleDataArguments",
    "TeleDenseModel",
    "TeleDenseModelForInference",
    "TeleModelArguments",
    "TeleQPCollator",
    "TeleTrainDataset",
    "TeleTrainer",
    "TeleTrainingArguments",
    "TokenCache",
    "build_example",
    "corpus_token_cache",
    "load_collection",
    "load_corpus",
    "load_encoder",
    "query_token_cache",
    "read_pool",
    "read_reference_pool",
    "run_episodes",
    "train",
    "write_pool",
]

if TYPE_CHECKING:  # pragma: no cover
    from .arguments import TeleDataArguments, TeleModelArguments, TeleTrainingArguments
    from .compat import CompatDenseTrainer, CompatTrainingArguments, build_example
    from .data.collections import Collection, Corpus, load_collection, load_corpus
    from .data.dataset import TeleQPCollator, TeleTrainDataset
    from .data.pools import PoolEntry, read_pool, read_reference_pool, write_pool
    from .data.token_cache import TokenCache, corpus_token_cache, query_token_cache
    from .modeling import TeleDenseModel, TeleDenseModelForInference, load_encoder
    from .runner.config import EpisodeArguments
    from .runner.episodes import run_episodes
    from .training.trainer import TeleTrainer, train


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tevatron_tele' has no attribute {name!r}")
