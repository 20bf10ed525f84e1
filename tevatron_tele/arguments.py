"""The ANCE-Tele flags both backends add to their Tevatron's argument dataclasses.

Each backend declares `TeleModelArguments(TeleModelFields, <Tevatron>.ModelArguments)` and the like, so
one set of flags with one help text serves both Tevatrons (HfArgumentParser reads the union). Where the
two Tevatrons name a setting differently (`train_n_passages` / `train_group_size`, `q_max_len` /
`query_max_len`, `p_max_len` / `passage_max_len`), both names are accepted and hold the same value
after parsing; code in this package reads the first of each pair.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .data.sampling import DEFAULT_SOURCE_WEIGHTS_TEXT

NegativeMixing = Literal["concat", "weighted"]
PoolFormat = Literal["auto", "ids", "reference"]
BackendChoice = Literal["auto", "v1", "v2"]

# (ours, current Tevatron's) names of one setting, and its default
LENGTH_ALIASES = (("train_n_passages", "train_group_size", 8), ("q_max_len", "query_max_len", 32),
                  ("p_max_len", "passage_max_len", 128))


def parse_source_weights(text: str) -> dict[str, float]:
    """Parse per-source weights.

    Args:
        text: e.g. "ann=0.5,lookahead=0.25,momentum=0.25"; weights must be >= 0, one of them > 0.

    Returns:
        {source: weight}.
    """
    weights: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"--source_weights: '{part}' is not of the form source=weight")
        try:
            weight = float(value)
        except ValueError as e:
            raise ValueError(f"--source_weights: weight of '{name.strip()}' is not a number: '{value}'") from e
        if weight < 0 or weight != weight:
            raise ValueError(f"--source_weights: weight of '{name.strip()}' must be >= 0, got {value}")
        weights[name.strip()] = weight
    if not weights or sum(weights.values()) <= 0:
        raise ValueError(f"--source_weights: need at least one positive weight, got '{text}'")
    return weights


def check_mining_counts(depth: int, sample: int | None) -> None:
    """Refuse a mining depth below 1 (every candidate would be lost, or all but one) and a negative sample size.

    Args:
        depth: ranks looked at per ranking (`--depth`).
        sample: negatives sampled per source per query (`--sample`; 0 or None: all).
    """
    if depth < 1:
        raise ValueError(f"--depth must be a positive number of ranks, got {depth}")
    if sample is not None and sample < 0:
        raise ValueError(f"--sample must be 0 (every candidate) or a positive count, got {sample}")


def resolve_aliases(args, pairs=LENGTH_ALIASES) -> None:
    """Give both names of each aliased setting the value that was set (refusing two different values)."""
    for ours, theirs, default in pairs:
        mine, other = getattr(args, ours, None), getattr(args, theirs, None)
        if mine is not None and other is not None and mine != other:
            raise ValueError(f"--{ours} {mine} and --{theirs} {other} name the same setting; pass one")
        value = next((v for v in (mine, other) if v is not None), default)
        setattr(args, ours, value)
        setattr(args, theirs, value)


def _post_init_next(self, cls) -> None:
    parent = super(cls, self)
    if hasattr(parent, "__post_init__"):
        parent.__post_init__()


@dataclass
class TeleModelFields:
    pooling: str = field(
        default="cls",
        metadata={"help": "How a sequence becomes one vector: 'cls' (first token), 'mean' (average of the token "
                          "vectors under the attention mask) or 'last' (last token, for decoder models; current "
                          "Tevatron only)."},
    )
    normalize: bool = field(
        default=False,
        metadata={"help": "L2-normalise query and passage vectors, so scores are cosine similarities."},
    )
    temperature: float = field(
        default=1.0,
        metadata={"help": "Training scores are divided by this before the softmax (e.g. 0.05 with --normalize)."},
    )

    def __post_init__(self):
        if not self.temperature > 0:
            raise ValueError(f"--temperature must be > 0, got {self.temperature}")
        _post_init_next(self, TeleModelFields)


@dataclass
class TeleDataFields:
    pool: str = field(
        default=None,
        metadata={"help": "Training pool: a pool.jsonl of query/positive/negative document ids, or a reference "
                          "ANCE-Tele tokenized file of {query, positives, negatives} token ids."},
    )
    pool_format: PoolFormat = field(
        default="auto",
        metadata={"help": "Format of --pool: 'ids' (pool.jsonl), 'reference' (tokenized) or 'auto' (detect)."},
    )
    collection: str = field(
        default=None,
        metadata={"help": "Collection the pool's ids refer to (BEIR dir, MS MARCO dir, DPR json or Tevatron jsonl); "
                          "its texts are tokenized once into --token_cache_dir."},
    )
    passages: str = field(
        default=None, metadata={"help": "Passages TSV (id, text, title) when --collection is a DPR json file."})
    split: str = field(default="train", metadata={"help": "Split of --collection whose queries are trained on."})
    token_cache_dir: str = field(
        default=None,
        metadata={"help": "Directory of token caches (reused when tokenizer, max length and texts match); "
                          "default: <output_dir>/../token_cache."},
    )
    train_n_passages: int = field(
        default=None,
        metadata={"help": "Passages per query in a step: 1 positive + (this - 1) negatives (default 8; "
                          "--train_group_size is the same setting)."})
    train_group_size: int = field(default=None, metadata={"help": "Current Tevatron's name of --train_n_passages."})
    q_max_len: int = field(default=None, metadata={"help": "Query length in tokens (default 32; --query_max_len "
                                                           "is the same setting)."})
    query_max_len: int = field(default=None, metadata={"help": "Current Tevatron's name of --q_max_len."})
    p_max_len: int = field(default=None, metadata={"help": "Passage length in tokens (default 128; "
                                                           "--passage_max_len is the same setting)."})
    passage_max_len: int = field(default=None, metadata={"help": "Current Tevatron's name of --p_max_len."})
    negative_mixing: NegativeMixing = field(
        default="concat",
        metadata={"help": "How a step's negatives are drawn from the pool's sources: 'concat' (the pool's "
                          "negative list, duplicates kept, as the reference code and Tevatron's own dataset) or "
                          "'weighted' (per-source quotas from --source_weights, de-duplicated)."},
    )
    source_weights: str = field(
        default=DEFAULT_SOURCE_WEIGHTS_TEXT,
        metadata={"help": "Per-source weights for --negative_mixing weighted, e.g. 'ann=0.5,lookahead=0.25,"
                          "momentum=0.25' (normalised over the sources a query has)."},
    )
    mask_batch_positives: bool = field(
        default=False,
        metadata={"help": "Leave out of a query's in-batch softmax every passage that is a judged positive "
                          "of that query (other than its own target), e.g. another query's positive."},
    )

    def __post_init__(self):
        resolve_aliases(self)
        if self.negative_mixing not in ("concat", "weighted"):
            raise ValueError(f"--negative_mixing must be 'concat' or 'weighted', got '{self.negative_mixing}'")
        if self.pool_format not in ("auto", "ids", "reference"):
            raise ValueError(f"--pool_format must be 'auto', 'ids' or 'reference', got '{self.pool_format}'")
        if self.train_n_passages < 1:
            raise ValueError(f"--train_n_passages must be >= 1, got {self.train_n_passages}")
        self.source_weight_map = parse_source_weights(self.source_weights)
        _post_init_next(self, TeleDataFields)


@dataclass
class TeleTrainingFields:
    backend: BackendChoice = field(
        default="auto",
        metadata={"help": "Which Tevatron trains: 'v1' (tevatron 0.1.0 from PyPI), 'v2' (current Tevatron, "
                          "`tevatron.retriever`) or 'auto' (the one installed)."})
    warmup_ratio: float = field(
        default=0.1, metadata={"help": "Linear warm-up over this fraction of all steps (used when --warmup_steps "
                                       "is 0); the schedule is computed for the full run even with --early_stop_step."})
    early_stop_step: int = field(
        default=0,
        metadata={"help": "Stop after this many optimizer steps while the learning-rate schedule stays the one "
                          "for the full --num_train_epochs (ANCE-Tele's quick refresh). 0 trains fully."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Replace an existing non-empty --output_dir (refused otherwise, so an earlier "
                          "model is never overwritten by mistake)."},
    )

    def __post_init__(self):
        if self.early_stop_step < 0:
            raise ValueError(f"--early_stop_step must be >= 0, got {self.early_stop_step}")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ValueError(f"--warmup_ratio must lie in [0, 1], got {self.warmup_ratio}")
        _post_init_next(self, TeleTrainingFields)
