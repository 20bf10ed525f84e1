"""Everything that lets tevatron 0.1.0 run on transformers 5, and nothing else.

Four things broke when transformers 5 came out (see ENVIRONMENT.md):
1. `tokenizer.encode_plus` is gone, and fast tokenizers refuse lists of ids -> the dataset builds examples with
   `tevatron_tele.data.examples.build_example`.
2. `Trainer` calls `compute_loss(model, inputs, return_outputs, num_items_in_batch)` -> `CompatDenseTrainer`.
3. `TrainingArguments.warmup_ratio` no longer exists, so Tevatron's field parses but does nothing ->
   `CompatTrainingArguments.get_warmup_steps`.
4. GradCache: `GCTrainer` uses Trainer internals that are gone and its package is not installable -> `--grad_cache` is
   refused with a message saying so.
Besides, Tevatron's `get_train_dataloader` bypasses `accelerator.prepare`, which transformers 5 relies on to shard
batches across processes (`CompatDenseTrainer` restores the sharding), and under torchrun without a GPU transformers 5
only sets up distributed training with `use_cpu` (set automatically).
"""
from __future__ import annotations

import math
import os
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


@dataclass
class CompatTrainingArguments(DenseTrainingArguments):
    """Tevatron's training arguments with transformers 4 semantics restored on transformers 5."""

    def __post_init__(self):
        if self.grad_cache:
            raise GradCacheUnsupportedError(GRAD_CACHE_MESSAGE)
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


class CompatDenseTrainer(DenseTrainer):
    """Tevatron's DenseTrainer with the Trainer API of transformers 5.

    Inputs are `(query_batch, passage_batch)` as built by Tevatron's QPCollator, optionally followed by a dict of extra
    keyword tensors for the model's forward (e.g. in-batch positive keys).
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

