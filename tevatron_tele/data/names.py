"""The names the options choose from, each defined once below every layer that uses them; the one check of a choice.

Each is a `Literal`: a flag of that type lists the names in its help and refuses other values when parsed
(`tevatron_tele.arguments`); the tuples are for code that goes through them.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

Pooling = Literal["cls", "mean", "last"]  # how a sequence becomes one vector ("last": decoder models, current Tevatron)
MomentumMode = Literal["all", "forgotten-first", "forgotten-only"]  # momentum replay (mining.filters)
FilterPositive = Literal["weakest", "best"]  # which positive's score s+ the filter compares candidates with
TrainPositives = Literal["all", "best"]  # the positives a pool entry keeps for training
SearchBackend = Literal["faiss", "torch"]  # exact inner-product search: a FAISS flat index, or torch matmuls
EmbeddingDtype = Literal["float16", "float32"]  # how stored embeddings are written
Amp = Literal["fp16", "bf16"]  # autocast of encoding on a GPU
POOLINGS: tuple[str, ...] = get_args(Pooling)
MOMENTUM_MODES: tuple[str, ...] = get_args(MomentumMode)
FILTER_POSITIVES: tuple[str, ...] = get_args(FilterPositive)
TRAIN_POSITIVES: tuple[str, ...] = get_args(TrainPositives)
SEARCH_BACKENDS: tuple[str, ...] = get_args(SearchBackend)


def check_choice(flag: str, value: object, allowed: Iterable[object]) -> None:
    """Refuse a value that is not one of an option's choices, in one line that names the option.

    Args:
        flag: the option's name (e.g. "momentum"; the message says --momentum).
        value: the value given.
        allowed: the values it may take.
    """
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"--{flag} must be one of {', '.join(map(str, allowed))}; got '{value}'")
