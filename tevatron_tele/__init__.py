"""tevatron-tele: ANCE-Tele teleportation negatives for the Tevatron dense-retrieval toolkit.

The names below load on first use, so `import tevatron_tele` stays cheap. The training names (`TeleTrainDataset`,
`TeleDenseModel`, `TeleTrainer`, the argument dataclasses, `make_collator`) come from the backend of the Tevatron
installed here: tevatron 0.1.0 or current Tevatron (`tevatron.retriever`).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "Collection": "tevatron_tele.data.collections",
    "Corpus": "tevatron_tele.data.collections",
    "load_collection": "tevatron_tele.data.collections",
    "load_corpus": "tevatron_tele.data.collections",
    "TokenCache": "tevatron_tele.data.token_cache",
    "corpus_token_cache": "tevatron_tele.data.token_cache",
    "query_token_cache": "tevatron_tele.data.token_cache",
    "PoolEntry": "tevatron_tele.data.pools",
    "read_pool": "tevatron_tele.data.pools",
    "iter_pool": "tevatron_tele.data.pools",
    "IndexedPool": "tevatron_tele.data.pools",
    "write_pool": "tevatron_tele.data.pools",
    "IndexedRun": "tevatron_tele.data.trec",
    "read_reference_pool": "tevatron_tele.data.pools",
    "build_example": "tevatron_tele.data.examples",
    "load_encoder": "tevatron_tele.backends",
    "get_backend": "tevatron_tele.backends",
    "train": "tevatron_tele.training.train",
    "EpisodeArguments": "tevatron_tele.runner.config",
    "run_episodes": "tevatron_tele.runner.episodes",
}
# names each backend defines; taken from the installed Tevatron's backend
_BACKEND_EXPORTS = ("TeleTrainDataset", "TeleDenseModel", "TeleTrainer", "TeleModelArguments", "TeleDataArguments",
                    "TeleTrainingArguments", "make_collator")

__all__ = ["Collection", "Corpus", "EpisodeArguments", "IndexedPool", "IndexedRun", "PoolEntry", "TeleDataArguments",
           "TeleDenseModel", "TeleModelArguments", "TeleTrainDataset", "TeleTrainer", "TeleTrainingArguments",
           "TokenCache", "build_example", "corpus_token_cache", "get_backend", "iter_pool", "load_collection",
           "load_corpus", "load_encoder", "make_collator", "query_token_cache", "read_pool", "read_reference_pool",
           "run_episodes", "train", "write_pool"]

if TYPE_CHECKING:  # pragma: no cover
    from .backends import get_backend, load_encoder
    from .data.collections import Collection, Corpus, load_collection, load_corpus
    from .data.examples import build_example
    from .data.pools import IndexedPool, PoolEntry, iter_pool, read_pool, read_reference_pool, write_pool
    from .data.token_cache import TokenCache, corpus_token_cache, query_token_cache
    from .data.trec import IndexedRun
    from .runner.config import EpisodeArguments
    from .runner.episodes import run_episodes
    from .training.train import train


def __getattr__(name: str):
    """Load an exported name on first use (see the module's docstring)."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _BACKEND_EXPORTS:
        value = getattr(importlib.import_module("tevatron_tele.backends").get_backend("auto"), name)
    else:
        raise AttributeError(f"module 'tevatron_tele' has no attribute {name!r}")
    globals()[name] = value
    return value
