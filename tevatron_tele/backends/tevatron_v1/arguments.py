"""Tevatron 0.1.0's argument dataclasses with the ANCE-Tele flags (`tevatron_tele.arguments`) added."""
from __future__ import annotations

from dataclasses import dataclass, field

from tevatron.arguments import DataArguments, ModelArguments

from ...arguments import TeleDataFields, TeleModelFields, TeleTrainingFields
from .compat import CompatTrainingArguments

POOLINGS = ("cls", "mean")


@dataclass
class TeleModelArguments(TeleModelFields, ModelArguments):
    # Tevatron's fields without a help text, redeclared with one (same defaults).
    add_pooler: bool = field(default=False, metadata={"help": "Add Tevatron's linear projection after pooling."})
    projection_in_dim: int = field(default=768, metadata={"help": "Input size of the --add_pooler projection."})
    projection_out_dim: int = field(default=768, metadata={"help": "Output size of the --add_pooler projection."})

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"--pooling must be one of {POOLINGS} with Tevatron 0.1.0, got '{self.pooling}'")
        super().__post_init__()


@dataclass
class TeleDataArguments(TeleDataFields, DataArguments):
    # Tevatron's fields without a help text, redeclared with one (same defaults).
    passage_field_separator: str = field(default=" ", metadata={"help": "Text between a passage's title and body."})
    encode_is_qry: bool = field(default=False, metadata={"help": "Encoding only: the input holds queries."})
    encode_num_shard: int = field(default=1, metadata={"help": "Encoding only: number of corpus shards."})
    encode_shard_index: int = field(default=0, metadata={"help": "Encoding only: which shard to encode."})


@dataclass
class TeleTrainingArguments(TeleTrainingFields, CompatTrainingArguments):
    gc_q_chunk_size: int = field(default=4, metadata={"help": "Unused: --grad_cache needs current Tevatron."})
    gc_p_chunk_size: int = field(default=32, metadata={"help": "Unused: --grad_cache needs current Tevatron."})
