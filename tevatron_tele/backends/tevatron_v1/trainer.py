"""The trainer of the Tevatron 0.1.0 backend: transformers-5 compatible, quick-refresh early stop, tele layout."""
from __future__ import annotations

import logging

from ..early_stop import EarlyStopCallback
from .compat import CompatDenseTrainer
from .modeling import save_encoders

logger = logging.getLogger(__name__)


class TeleTrainer(CompatDenseTrainer):
    """CompatDenseTrainer that saves in the tele layout and honours `args.early_stop_step`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        stop_step = getattr(self.args, "early_stop_step", 0)
        if stop_step:
            self.add_callback(EarlyStopCallback(stop_step))

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        logger.info("saving model to %s", output_dir)
        save_encoders(self.model, output_dir, tokenizer=self.processing_class)
