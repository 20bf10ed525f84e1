"""The trainers of the current-Tevatron backend: Tevatron's own, with quick-refresh early stop, the tele save layout,
masking keys, and (GradCache) a loss that honours the model's temperature."""
from __future__ import annotations

import logging
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tevatron.retriever.gc_trainer import GradCacheTrainer
from tevatron.retriever.trainer import TevatronTrainer

from ..early_stop import EarlyStopCallback
from .modeling import save_model

logger = logging.getLogger(__name__)


class _TeleTrainerMixin:
    """Early stop at `args.early_stop_step` and the tele save layout, for both of Tevatron's trainers."""

    def _add_early_stop(self) -> None:
        stop_step = getattr(self.args, "early_stop_step", 0)
        if stop_step:
            self.add_callback(EarlyStopCallback(stop_step))

    def compute_loss(self, model, inputs, return_outputs: bool = False, num_items_in_batch=None):
        query, passage, *extra = inputs
        outputs = model(query=query, passage=passage, **(dict(extra[0]) if extra else {}))
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        logger.info("saving model to %s", output_dir)
        save_model(self.model, output_dir, tokenizer=self.processing_class)


class TeleTrainer(_TeleTrainerMixin, TevatronTrainer):
    """Current Tevatron's TevatronTrainer with quick refresh, masking keys and the tele layout."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._add_early_stop()


class TemperatureContrastiveLoss:
    """Softmax cross-entropy of q.p / temperature over all passages (gathered across processes under DDP).

    Tevatron's GradCache loss leaves the temperature out, so with --temperature below 1 it would train another objective
    than the model's own loss; this one computes the model's (same order of operations).
    """

    def __init__(self, temperature: float):
        self.temperature = float(temperature)

    @staticmethod
    def _gather(t: torch.Tensor) -> torch.Tensor:
        gathered = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, t)
        gathered[dist.get_rank()] = t
        return torch.cat(gathered, dim=0)

    def __call__(self, q_reps: torch.Tensor, p_reps: torch.Tensor, **_) -> torch.Tensor:
        ddp = dist.is_available() and dist.is_initialized()
        if ddp:
            q_reps, p_reps = self._gather(q_reps), self._gather(p_reps)
        per_query = p_reps.size(0) // q_reps.size(0)
        target = torch.arange(0, q_reps.size(0) * per_query, per_query, device=q_reps.device, dtype=torch.long)
        loss = F.cross_entropy(torch.matmul(q_reps, p_reps.transpose(0, 1)) / self.temperature, target)
        return loss * dist.get_world_size() if ddp else loss


class TeleGradCacheTrainer(_TeleTrainerMixin, GradCacheTrainer):
    """Current Tevatron's GradCacheTrainer (the `grad_cache` package) with the model's temperature in the loss."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gc.loss_fn = TemperatureContrastiveLoss(self.model.temperature)
        self._add_early_stop()


def make_trainer(model: Any, training_args: Any, dataset: Any, tokenizer: Any, collator: Any
                 ) -> TeleTrainer | TeleGradCacheTrainer:
    """TeleGradCacheTrainer with --grad_cache, else TeleTrainer.

    Args:
        model, training_args, dataset, tokenizer, collator: what the trainer trains with.

    Returns:
        The trainer.
    """
    if training_args.grad_cache and getattr(model, "mask_batch_positives", False):
        raise ValueError("--mask_batch_positives is not available with --grad_cache (GradCache's loss sees no "
                         "passage keys); drop one of them")
    cls = TeleGradCacheTrainer if training_args.grad_cache else TeleTrainer
    return cls(model=model, args=training_args, train_dataset=dataset, processing_class=tokenizer,
               data_collator=collator)
