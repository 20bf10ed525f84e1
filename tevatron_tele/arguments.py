"""Argument dataclasses: Tevatron's model / data / training arguments plus what ANCE-Tele training needs."""
from __future__ import annotations

from dataclasses import dataclass, field

from tevatron.arguments import DataArguments, ModelArguments

from .compat import CompatTrainingArguments

POOLINGS = ("cls", "mean")
NEGATIVE_MIXINGS = ("concat", "weighted")
POOL_FORMATS = ("auto", "ids", "reference")


def parse_source_weights(text: str) -> dict[str, float]:
    """Parse "ann=0.5,lookahead=0.25,momentum=0.25" into {source: weight}; weights must be >= 0."""
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


@dataclass
class TeleModelArguments(ModelArguments):
    pooling: str = field(
        default="cls",
        metadata={"help": "How a sequence becomes one vector: 'cls' (first token, Tevatron's default) or 'mean' "
                          "(average of the token vectors under the attention mask)."},
    )
    normalize: bool = field(
        default=False,
        metadata={"help": "L2-normalise query and passage vectors, so scores are cosine similarities."},
    )
    temperature: float = field(
        default=1.0,
        metadata={"help": "Training scores are divided by this before the softmax (e.g. 0.05 with --normalize)."},
    )
    # Tevatron's fields without a help text, redeclared with one (same defaults).
    add_pooler: bool = field(default=False, metadata={"help": "Add Tevatron's linear projection after pooling."})
    projection_in_dim: int = field(default=768, metadata={"help": "Input size of the --add_pooler projection."})
    projection_out_dim: int = field(default=768, metadata={"help": "Output size of the --add_pooler projection."})

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"--pooling must be one of {POOLINGS}, got '{self.pooling}'")
        if not self.temperature > 0:
            raise ValueError(f"--temperature must be > 0, got {self.temperature}")


@dataclass
class TeleDataArguments(DataArguments):
    # Tevatron's fields without a help text, redeclared with one (same defaults).
    passage_field_separator: str = field(default=" ", metadata={"help": "Text between a passage's title and body."})
    train_n_passages: int = field(
        default=8, metadata={"help": "Passages per query in a step: 1 positive + (this - 1) negatives."})
    encode_is_qry: bool = field(default=False, metadata={"help": "Encoding only: the input holds queries."})
    encode_num_shard: int = field(default=1, metadata={"help": "Encoding only: number of corpus shards."})
    encode_shard_index: int = field(default=0, metadata={"help": "Encoding only: which shard to encode."})

    pool: str = field(
        default=None,
        metadata={"help": "Training pool: a pool.jsonl of query/positive/negative document ids, or a reference "
                          "ANCE-Tele tokenized file of {query, positives, negatives} token ids."},
    )
    pool_format: str = field(
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
    negative_mixing: str = field(
        default="concat",
        metadata={"help": "How a step's negatives are drawn from the pool's sources: 'concat' (the pool's "
                          "negative list, duplicates kept, as the reference code) or 'weighted' (per-source "
                          "quotas from --source_weights, de-duplicated)."},
    )
    source_weights: str = field(
        default="ann=0.5,lookahead=0.25,momentum=0.25",
        metadata={"help": "Per-source weights for --negative_mixing weighted, e.g. 'ann=0.5,lookahead=0.25,"
                          "momentum=0.25' (normalised over the sources a query has)."},
    )
    mask_batch_positives: bool = field(
        default=False,
        metadata={"help": "Leave out of a query's in-batch softmax every passage that is a judged positive "
                          "of that query (other than its own target), e.g. another query's positive."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.negative_mixing not in NEGATIVE_MIXINGS:
            raise ValueError(f"--negative_mixing must be one of {NEGATIVE_MIXINGS}, got '{self.negative_mixing}'")
        if self.pool_format not in POOL_FORMATS:
            raise ValueError(f"--pool_format must be one of {POOL_FORMATS}, got '{self.pool_format}'")
        if self.train_n_passages < 1:
            raise ValueError(f"--train_n_passages must be >= 1, got {self.train_n_passages}")
        self.source_weight_map = parse_source_weights(self.source_weights)


@dataclass
class TeleTrainingArguments(CompatTrainingArguments):
    warmup_ratio: float = field(
        default=0.1, metadata={"help": "Linear warm-up over this fraction of all steps (used when --warmup_steps "
                                       "is 0); the schedule is computed for the full run even with --early_stop_step."})
    gc_q_chunk_size: int = field(default=4, metadata={"help": "Unused: --grad_cache is not supported."})
    gc_p_chunk_size: int = field(default=32, metadata={"help": "Unused: --grad_cache is not supported."})
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
        super().__post_init__()
