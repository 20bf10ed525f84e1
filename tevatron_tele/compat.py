"""Everything that lets tevatron 0.1.0 run on transformers 5, and nothing else.

Four things broke when transformers 5 came out (see ENVIRONMENT.md):
1. `tokenizer.encode_plus` is gone, and fast tokenizers refuse lists of ids -> `build_example`.
2. `Trainer` calls `compute_loss(model, inputs, return_outputs, num_items_in_batch)` -> `CompatDenseTrainer`.
3. `TrainingArguments.warmup_ratio` no longer exists, so Tevatron's field parses but does nothing
   -> `CompatTrainingArguments.get_warmup_steps`.
4. GradCache: `GCTrainer` uses Trainer internals that are gone and its package is not installable
   -> `--grad_cache` is refused with a message saying so.
Besides, Tevatron's `get_train_dataloader` bypasses `accelerator.prepare`, which transformers 5 relies
on to shard batches across processes (`CompatDenseTrainer` restores the sharding), and under torchrun
without a GPU transformers 5 only sets up distributed training with `use_cpu` (set automatically).
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tevatron.arguments import DenseTrainingArguments
from tevatron.trainer import DenseTrainer
from torch.utils.data import DataLoader

GRAD_CACHE_MESSAGE = (
    "--grad_cache is not supported: Tevatron 0.1.0's GCTrainer relies on Trainer internals removed in "
    "transformers 5, and its `grad_cache` package is not published on PyPI. Train without --grad_cache "
    "(lower --per_device_train_batch_size or --train_n_passages if memory is short)."
)


class GradCacheUnsupportedError(ValueError):
    """Raised when gradient caching is asked for."""


# ---------------------------------------------------------------------------------------------
# 1. Examples from cached token ids (replaces encode_plus(ids, truncation='only_first', ...))
# ---------------------------------------------------------------------------------------------

_SPECIAL_LAYOUT_ATTR = "_tele_special_layout"


def _special_layout(tokenizer) -> tuple[list[int], list[int]]:
    """Return the (prefix, suffix) special-token ids the tokenizer puts around a single sequence.

    Found once by tokenizing a probe text with and without special tokens, so it works for any
    single-sequence template (BERT's [CLS] x [SEP], RoBERTa's <s> x </s>, T5's x </s>, ...).
    """
    cached = getattr(tokenizer, "__dict__", {}).get(_SPECIAL_LAYOUT_ATTR)
    if cached is not None:
        return cached
    probe = "retrieval probe text"
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            layout = (full[:start], full[start + len(plain) :])
            break
    else:
        raise ValueError(f"cannot find how {type(tokenizer).__name__} adds special tokens around a sequence")
    try:
        tokenizer.__dict__[_SPECIAL_LAYOUT_ATTR] = layout
    except (AttributeError, TypeError):
        pass
    return layout


def build_example(tokenizer, token_ids: Sequence[int], max_len: int) -> dict[str, list[int]]:
    """Build one model input from token ids that carry no special tokens.

    Same result as transformers 4's `encode_plus(token_ids, truncation='only_first', max_length=max_len,
    padding=False, return_attention_mask=False, return_token_type_ids=False)`: the ids are cut so the
    sequence with its special tokens fits `max_len`. The collator pads and adds the attention mask.
    """
    prefix, suffix = _special_layout(tokenizer)
    room = max_len - len(prefix) - len(suffix)
    if room < 0:
        raise ValueError(f"max_len={max_len} leaves no room beside {len(prefix) + len(suffix)} special tokens")
    body = token_ids[:room]
    # one bulk conversion: element-wise int() on a memory-mapped slice costs ~15x more
    body = body.tolist() if hasattr(body, "tolist") else [int(t) for t in body]
    return {"input_ids": prefix + body + suffix}


# ---------------------------------------------------------------------------------------------
# 3. Warm-up ratio honoured, 4. GradCache refused (arguments side)
# ---------------------------------------------------------------------------------------------


@dataclass
class CompatTrainingArguments(DenseTrainingArguments):
    """Tevatron's training arguments with transformers 4 semantics restored on transformers 5."""

    def __post_init__(self):
        if self.grad_cache:
            raise GradCacheUnsupportedError(GRAD_CACHE_MESSAGE)
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ValueError(f"--warmup_ratio must lie in [0, 1], got {self.warmup_ratio}")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
            # Under torchrun without a GPU, transformers 5 sets up no distributed state unless use_cpu is
            # set: each process would train its own unsynchronised copy on all the data.
            self.use_cpu = True
        super().__post_init__()

    def get_warmup_steps(self, num_training_steps: int) -> int:
        # transformers 4: a positive warmup_steps wins, otherwise ceil(ratio * total steps).
        # transformers 5 dropped the ratio field, so Tevatron's default of 0.1 would silently become 0.
        if self.warmup_steps > 0:
            return super().get_warmup_steps(num_training_steps)
        return math.ceil(num_training_steps * self.warmup_ratio)


# ---------------------------------------------------------------------------------------------
# 2. compute_loss signature, sharded data loader, GradCache refused (trainer side)
# ---------------------------------------------------------------------------------------------


class CompatDenseTrainer(DenseTrainer):
    """Tevatron's DenseTrainer with the Trainer API of transformers 5.

    Inputs are `(query_batch, passage_batch)` as built by Tevatron's QPCollator, optionally followed by
    a dict of extra keyword tensors for the model's forward (e.g. in-batch positive keys).
    """

    def __init__(self, *args, **kwargs):
        training_args = kwargs.get("args", args[1] if len(args) > 1 else None)
        if getattr(training_args, "grad_cache", False):
            raise GradCacheUnsupportedError(GRAD_CACHE_MESSAGE)
        super().__init__(*args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch: Any = None):
        query, passage, *extra = inputs
        kwargs = dict(extra[0]) if extra else {}
        outputs = model(query=query, passage=passage, **kwargs)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def get_train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        # Tevatron drops the last incomplete batch (the loss assumes full batches); accelerator.prepare
        # gives each process its own share of the batches, as transformers 5 expects.
        loader = DataLoader(
            self.train_dataset,
            batch_size=self._train_batch_size,
            sampler=self._get_train_sampler(),
            collate_fn=self.data_collator,
            drop_last=True,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory and torch.cuda.is_available(),
        )
        return self.accelerator.prepare(loader)


__all__ = [
    "GRAD_CACHE_MESSAGE",
    "CompatDenseTrainer",
    "CompatTrainingArguments",
    "GradCacheUnsupportedError",
    "build_example",
]
