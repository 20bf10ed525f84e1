"""ANCE-Tele's quick refresh as a Trainer callback (used by both backends' trainers)."""
from __future__ import annotations

import logging

from transformers import TrainerCallback

logger = logging.getLogger(__name__)


class EarlyStopCallback(TrainerCallback):
    """Stop after `stop_step` optimizer steps (ANCE-Tele's quick refresh), keeping the LR schedule built for the full
    run: setting `max_steps` instead would compute the warm-up and the decay for the short run, which is not the same
    training."""

    def __init__(self, stop_step: int):
        self.stop_step = int(stop_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop_step > 0 and state.global_step >= self.stop_step:
            logger.info("early stop at step %d of %d (schedule kept for the full run)",
                        state.global_step, state.max_steps)
            control.should_training_stop = True
        return control
