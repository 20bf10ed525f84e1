"""The options the drivers share, each declared once in a field group that the drivers' arguments compose: model
(`TeleModelFields`), mining (`MiningFields`, `FilterFields`), training (`LengthFields`, `MixingFields`, `TrainerFields`;
with the rest of `driver.train`'s, `TeleDataFields` and `TeleTrainingFields`).

Each backend declares `TeleModelArguments(TeleModelFields, <Tevatron>.ModelArguments)` and the like, so one set of flags
with one help text serves both Tevatrons (HfArgumentParser reads the union). Where the two Tevatrons name a setting
differently (`LENGTH_ALIASES`), both names are accepted and hold the same value after parsing; code here reads the
first. A choice is a `Literal` (`data.names`): --help lists its values, and another value is refused in one line where
the flags are parsed (`TeleArgumentParser`) and where arguments are made in code or from a file (`FieldGroup`).
"""
from __future__ import annotations

import functools
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, Literal, get_args, get_origin, get_type_hints

from transformers import HfArgumentParser

from .data.names import FilterPositive, MomentumMode, Pooling, TrainPositives, check_choice
from .data.sampling import DEFAULT_SOURCE_WEIGHTS_TEXT

NegativeMixing = Literal["concat", "weighted"]
PoolFormat = Literal["auto", "ids", "reference"]
BackendChoice = Literal["auto", "v1", "v2"]

# (ours, current Tevatron's) names of one setting; the default is `LengthFields`'
LENGTH_ALIASES = (("train_n_passages", "train_group_size"), ("q_max_len", "query_max_len"),
                  ("p_max_len", "passage_max_len"))


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


def resolve_aliases(args: Any) -> None:
    """Give both names of each setting in `LENGTH_ALIASES` the value that was set (refusing two different values).

    Args:
        args: the parsed arguments; both names of each setting are set on it (`LengthFields`' default if neither).
    """
    defaults = {f.name: f.default for f in fields(LengthFields)}
    for ours, theirs in LENGTH_ALIASES:
        mine, other = getattr(args, ours, None), getattr(args, theirs, None)
        if mine is not None and other is not None and mine != other:
            raise ValueError(f"--{ours} {mine} and --{theirs} {other} name the same setting; pass one")
        value = next((v for v in (mine, other) if v is not None), defaults[ours])
        setattr(args, ours, value)
        setattr(args, theirs, value)


@functools.cache
def _choices(cls: type) -> dict[str, tuple]:
    """{field: the values it allows} of a dataclass's `Literal` fields (None too for `Literal[...] | None`)."""
    out = {}
    for name, hint in get_type_hints(cls).items():
        literal = next((t for t in (hint, *get_args(hint)) if get_origin(t) is Literal), None)
        if literal is not None:
            out[name] = get_args(literal) + ((None,) if type(None) in get_args(hint) else ())
    return out


def option(group: type, name: str, default: Any = MISSING) -> Field:
    """An option of `group` declared again with its help, for a driver that takes it alone or with its own default.

    Args:
        group: the field group that declares the option.
        name: the option's field name.
        default: the driver's own default; MISSING keeps the group's.

    Returns:
        The field to declare in the driver's arguments.
    """
    declared = next(f for f in fields(group) if f.name == name)
    return field(default=declared.default if default is MISSING else default, metadata=declared.metadata)


def _number_or_none(kind: type) -> Any:
    """An argparse type: `kind` (int or float), or None for 'none' (an option whose default is a number)."""
    def parse(text: str):
        return None if text.strip().lower() == "none" else kind(text)
    parse.__name__ = kind.__name__
    return parse


class TeleArgumentParser(HfArgumentParser):
    """HfArgumentParser that refuses a value outside a `Literal` option's choices as `FieldGroup` does: a ValueError,
    which the drivers' error path (`cli.run_cli`) reports in one line, rather than argparse's usage message; and where a
    number option may be None but defaults to a number (`--max_negative_ratio`), 'none' turns it off."""

    def _add_dataclass_arguments(self, dtype):
        super()._add_dataclass_arguments(dtype)
        hints = get_type_hints(dtype)
        nullable = {f.name for f in fields(dtype)
                    if f.default is not None and type(None) in get_args(hints.get(f.name))}
        for action in self._actions:
            if action.dest in nullable and action.type in (int, float):
                action.type = _number_or_none(action.type)

    def _check_value(self, action, value):
        if action.choices is not None:
            check_choice(action.dest, value, action.choices)


@dataclass
class FieldGroup:
    """The base of the field groups: after the groups' own checks, every `Literal` option is checked against its
    choices, so a value from code or a settings file is refused as a flag's is."""

    def __post_init__(self):
        for name, allowed in _choices(type(self)).items():
            check_choice(name, getattr(self, name), allowed)
        parent = super()
        if hasattr(parent, "__post_init__"):
            parent.__post_init__()


@dataclass
class TeleModelFields(FieldGroup):
    pooling: Pooling = field(
        default="cls",
        metadata={"help": "How a sequence becomes one vector: 'cls' (first token), 'mean' (average of the token "
                          "vectors under the attention mask) or 'last' (last token, for decoder models; current "
                          "Tevatron only)."})
    normalize: bool = field(
        default=False, metadata={"help": "L2-normalise query and passage vectors, so scores are cosine similarities."})
    temperature: float = field(
        default=1.0,
        metadata={"help": "Training scores are divided by this before the softmax (e.g. 0.05 with --normalize)."})

    def __post_init__(self):
        if not self.temperature > 0:
            raise ValueError(f"--temperature must be > 0, got {self.temperature}")
        super().__post_init__()


@dataclass
class MiningFields(FieldGroup):
    depth: int = field(default=200, metadata={"help": "Ranks looked at per ranking (ANN, lookahead, BM25) when "
                                                      "mining negatives."})
    sample: int = field(default=30, metadata={"help": "Negatives kept per source per query: a random sample of the "
                                                      "candidates in the top --depth (0 keeps all)."})

    def __post_init__(self):
        check_mining_counts(self.depth, self.sample)
        super().__post_init__()


@dataclass
class FilterFields(FieldGroup):
    """The positive-aware filter, momentum replay and the positives kept (see `mining.filters`); the rules that compare
    scores need the mining model's S(q, d)."""

    max_negative_ratio: float | None = field(
        default=None,
        metadata={"help": "Positive-aware filter, every source: drop a candidate d that the mining model scores "
                          "S(q,d) > s+ - (1-R)*|s+| (= R*s+ when s+ >= 0; s+ the score of the --filter_positive "
                          "positive), e.g. 0.95; 'none' turns it off."})
    train_positives: TrainPositives = field(
        default="all",
        metadata={"help": "The positives a pool entry keeps for training: 'all' judged ones, or the 'best' one (the "
                          "mining model's highest-scored; the others stay out of the negatives). Needs the mining "
                          "model's scores, as the filter does."})
    filter_positive: FilterPositive = field(
        default="weakest",
        metadata={"help": "The positive whose score s+ the filter compares candidates with: 'weakest' (the lowest "
                          "S(q,d+); drops most on collections with many judged positives per query) or 'best'."})
    negative_margin: float | None = field(
        default=None, metadata={"help": "Positive-aware filter: drop a candidate d with S(q,d) > s+ - M."})
    skip_top: int = field(default=0, metadata={"help": "Never take the K best-ranked candidates of a ranking (ANN, "
                                                       "lookahead, BM25) as negatives."})
    momentum: MomentumMode = field(
        default="all",
        metadata={"help": "Momentum negatives: 'all' (the whole previous pool), 'forgotten-first' (those model "
                          "i-1 scores above the weakest positive listed once more, ahead of the rest) or "
                          "'forgotten-only' (those alone); the last two need the mining model's scores."})


@dataclass
class LengthFields(FieldGroup):
    train_n_passages: int = field(
        default=8, metadata={"help": "Passages per query in a step: 1 positive + (this - 1) negatives."})
    q_max_len: int = field(default=32, metadata={"help": "Query length in tokens."})
    p_max_len: int = field(default=128, metadata={"help": "Passage length in tokens."})

    def __post_init__(self):
        if self.train_n_passages < 1:
            raise ValueError(f"--train_n_passages must be >= 1, got {self.train_n_passages}")
        super().__post_init__()


@dataclass
class MixingFields(FieldGroup):
    negative_mixing: NegativeMixing = field(
        default="concat",
        metadata={"help": "How a step's negatives are drawn from the pool's sources: 'concat' (the pool's "
                          "negative list, duplicates kept, as the reference code and Tevatron's own dataset) or "
                          "'weighted' (per-source quotas from --source_weights, de-duplicated)."})
    source_weights: str = field(
        default=DEFAULT_SOURCE_WEIGHTS_TEXT,
        metadata={"help": "Per-source weights for --negative_mixing weighted, e.g. 'ann=0.5,lookahead=0.25,"
                          "momentum=0.25' (normalised over the sources a query has)."})
    mask_batch_positives: bool = field(
        default=False,
        metadata={"help": "Leave out of a query's in-batch softmax every passage that is a judged positive "
                          "of that query (other than its own target), e.g. another query's positive."})

    def __post_init__(self):
        self.source_weight_map = parse_source_weights(self.source_weights)
        super().__post_init__()


@dataclass
class TrainerFields(FieldGroup):
    backend: BackendChoice = field(
        default="auto",
        metadata={"help": "Which Tevatron trains (and encodes, in a run of episodes): 'v1' (tevatron 0.1.0 from "
                          "PyPI), 'v2' (current Tevatron, `tevatron.retriever`) or 'auto' (the one installed)."})
    warmup_ratio: float = field(
        default=0.1, metadata={"help": "Linear warm-up over this fraction of all steps (used when --warmup_steps "
                                       "is 0); the schedule is the full run's even when training stops early."})

    def __post_init__(self):
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ValueError(f"--warmup_ratio must lie in [0, 1], got {self.warmup_ratio}")
        super().__post_init__()


@dataclass
class TeleDataFields(MixingFields, LengthFields):
    pool: str = field(
        default=None,
        metadata={"help": "Training pool: a pool.jsonl of query/positive/negative document ids, or a reference "
                          "ANCE-Tele tokenized file of {query, positives, negatives} token ids."})
    pool_format: PoolFormat = field(
        default="auto",
        metadata={"help": "Format of --pool: 'ids' (pool.jsonl), 'reference' (tokenized) or 'auto' (detect)."})
    collection: str = field(
        default=None,
        metadata={"help": "Collection the pool's ids refer to (BEIR dir, MS MARCO dir, DPR json or Tevatron jsonl); "
                          "its texts are tokenized once into --token_cache_dir."})
    passages: str = field(
        default=None, metadata={"help": "Passages TSV (id, text, title) when --collection is a DPR json file."})
    split: str = field(default="train", metadata={"help": "Split of --collection whose queries are trained on."})
    token_cache_dir: str = field(
        default=None,
        metadata={"help": "Directory of token caches (reused when tokenizer, max length and texts match); "
                          "default: <output_dir>/../token_cache."})
    # None until resolve_aliases gives both names of a setting the value passed (LengthFields' default if neither)
    train_n_passages: int = option(LengthFields, "train_n_passages", None)
    q_max_len: int = option(LengthFields, "q_max_len", None)
    p_max_len: int = option(LengthFields, "p_max_len", None)
    train_group_size: int = field(default=None, metadata={"help": "Current Tevatron's name of --train_n_passages "
                                                                  "(both are 8 when neither is given)."})
    query_max_len: int = field(default=None, metadata={"help": "Current Tevatron's name of --q_max_len (both are "
                                                               "32 when neither is given)."})
    passage_max_len: int = field(default=None, metadata={"help": "Current Tevatron's name of --p_max_len (both "
                                                                 "are 128 when neither is given)."})

    def __post_init__(self):
        resolve_aliases(self)
        super().__post_init__()


@dataclass
class TeleTrainingFields(TrainerFields):
    early_stop_step: int = field(
        default=0,
        metadata={"help": "Stop after this many optimizer steps while the learning-rate schedule stays the one "
                          "for the full --num_train_epochs (ANCE-Tele's quick refresh). 0 trains fully."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Replace an existing non-empty --output_dir (refused otherwise, so an earlier "
                          "model is never overwritten by mistake)."})

    def __post_init__(self):
        if self.early_stop_step < 0:
            raise ValueError(f"--early_stop_step must be >= 0, got {self.early_stop_step}")
        super().__post_init__()
