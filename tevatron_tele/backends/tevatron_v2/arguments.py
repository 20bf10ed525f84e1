"""Current Tevatron's argument dataclasses with the ANCE-Tele flags (`tevatron_tele.arguments`) added."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

import torch
from tevatron.retriever.arguments import DataArguments, ModelArguments, TevatronTrainingArguments

from ...arguments import TeleDataFields, TeleModelFields, TeleTrainingFields

Feed = Literal["token_cache", "text"]


@dataclass
class TeleModelArguments(TeleModelFields, ModelArguments):
    attn_implementation: str = field(
        default="sdpa",
        metadata={"help": "Attention kernel: 'sdpa' (default here), 'eager', or 'flash_attention_2' (Tevatron's "
                          "default, needs the flash-attn package and a GPU)."})

    def __post_init__(self):
        if self.untie_encoder:
            raise ValueError("--untie_encoder: current Tevatron's PyTorch models share one encoder; untied "
                             "encoders need the v1 backend (tevatron 0.1.0)")
        super().__post_init__()


@dataclass
class TeleDataArguments(TeleDataFields, DataArguments):
    feed: Feed = field(
        default="token_cache",
        metadata={"help": "What the dataset hands the collator: 'token_cache' (token ids from the memory-mapped "
                          "cache, padded by the collator) or 'text' (the texts, tokenized by Tevatron's own "
                          "TrainCollator at every step)."})
    pad_to_max_length: bool = field(
        default=False,
        metadata={"help": "Pad every batch to --query_max_len / --passage_max_len, as Tevatron 0.1.0 does, instead "
                          "of to the longest input (rounded up to --pad_to_multiple_of). Slower; with equal tensor "
                          "shapes one seed draws the same dropout masks as the v1 backend."})

    def __post_init__(self):
        super().__post_init__()
        if self.pad_to_max_length and self.feed != "token_cache":
            raise ValueError("--pad_to_max_length needs --feed token_cache (the text feed pads as Tevatron does)")


@dataclass
class TeleTrainingArguments(TeleTrainingFields, TevatronTrainingArguments):
    negatives_x_device: bool = field(
        default=False,
        metadata={"help": "Accepted for Tevatron 0.1.0's flag: current Tevatron always shares in-batch negatives "
                          "across processes."})

    def __post_init__(self):
        # transformers 5 dropped `warmup_ratio`; Tevatron's field parses but nothing reads it, so training
        # would run with no warm-up. A float warmup_steps below 1 is read as a ratio in transformers 5.
        if self.warmup_ratio and not self.warmup_steps:
            self.warmup_steps = self.warmup_ratio
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
            self.use_cpu = True  # under CPU torchrun transformers 5 sets up no process group otherwise
        super().__post_init__()
