"""Training: TeleTrainer, the early-stop callback, and `train()`, the library entry point.

`train()` builds tokenizer, model, dataset and trainer from the three argument dataclasses, trains
from the base model, and writes the final model to `training_args.output_dir` atomically (checkpoints
and trainer state live in a `<output_dir>.partial` scratch folder while it runs).
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from transformers import AutoTokenizer, TrainerCallback, set_seed

from ..compat import CompatDenseTrainer
from ..data.dataset import TeleQPCollator, TeleTrainDataset, detect_pool_format
from ..modeling import TeleDenseModel, save_encoders
from ..utils import atomic_path, setup_logging, write_json

logger = logging.getLogger(__name__)


class EarlyStopCallback(TrainerCallback):
    """Stop after `stop_step` optimizer steps; the LR schedule stays the one built for the full run.

    This is ANCE-Tele's quick refresh. Setting `max_steps` instead would shrink the schedule (the warm-up
    and the decay would be computed for the short run), which is not the same training.
    """

    def __init__(self, stop_step: int):
        self.stop_step = int(stop_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop_step > 0 and state.global_step >= self.stop_step:
            logger.info("early stop at step %d of %d (schedule kept for the full run)",
                        state.global_step, state.max_steps)
            control.should_training_stop = True
        return control


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


def load_tokenizer(model_args):
    """The model's tokenizer (from query_model/ when an untied model keeps it only there)."""
    path = Path(model_args.tokenizer_name or model_args.model_name_or_path)
    if path.is_dir() and not (path / "tokenizer_config.json").exists() and (path / "query_model").is_dir():
        path = path / "query_model"
    return AutoTokenizer.from_pretrained(str(path), cache_dir=model_args.cache_dir)


def build_train_dataset(data_args, tokenizer, *, seed: int, cache_dir: Path) -> TeleTrainDataset:
    """Read the pool (ids or reference tokens); for id pools, token caches of the collection."""
    from ..data.pools import read_pool, read_reference_pool

    if not data_args.pool:
        raise ValueError("--pool is required: a pool.jsonl or a reference tokenized training file")
    fmt = data_args.pool_format if data_args.pool_format != "auto" else detect_pool_format(data_args.pool)
    if fmt == "reference":
        entries = read_reference_pool(data_args.pool)
        logger.info("read %d tokenized training groups from %s", len(entries), data_args.pool)
        return TeleTrainDataset(data_args, entries, tokenizer, seed=seed)

    from ..data.collections import load_collection
    from ..data.token_cache import corpus_token_cache, query_token_cache

    if not data_args.collection:
        raise ValueError("--collection is required with a pool of document ids (it holds the texts)")
    collection = load_collection(data_args.collection, split=data_args.split, passages=data_args.passages)
    entries = read_pool(data_args.pool, known_doc_ids=set(collection.corpus.ids))
    logger.info("read %d pool entries from %s", len(entries), data_args.pool)
    corpus_cache = corpus_token_cache(collection, tokenizer, data_args.p_max_len, cache_dir)
    query_cache = query_token_cache(collection, tokenizer, data_args.q_max_len, cache_dir)
    return TeleTrainDataset(data_args, entries, tokenizer, query_cache=query_cache, corpus_cache=corpus_cache,
                            seed=seed)


def train(model_args, data_args, training_args, callbacks: list | None = None) -> Path:
    """Train a TeleDenseModel on `data_args.pool` and return the saved model directory.

    Refuses a non-empty `output_dir` unless `overwrite_output_dir`. Safe to call in-process several
    times (one model per call) and under torchrun (rank 0 writes, the others wait).
    """
    setup_logging()
    final_dir = Path(training_args.output_dir)
    if final_dir.exists() and any(final_dir.iterdir()) and not getattr(training_args, "overwrite_output_dir", False):
        raise FileExistsError(f"output directory {final_dir} exists and is not empty (use --overwrite_output_dir)")
    device = training_args.device  # initialises torch.distributed under torchrun, needed before the model
    logger.info("training on %s, %d process(es); model %s", device, training_args.world_size,
                model_args.model_name_or_path)
    set_seed(training_args.seed)

    tokenizer = load_tokenizer(model_args)
    cache_dir = Path(data_args.token_cache_dir) if data_args.token_cache_dir else final_dir.parent / "token_cache"
    dataset = build_train_dataset(data_args, tokenizer, seed=training_args.seed, cache_dir=cache_dir)
    model = TeleDenseModel.build(model_args, data_args, training_args, cache_dir=model_args.cache_dir)

    scratch = final_dir.with_name(final_dir.name + ".partial")
    training_args.output_dir = str(scratch)
    try:
        trainer = TeleTrainer(model=model, args=training_args, train_dataset=dataset, processing_class=tokenizer,
                              data_collator=TeleQPCollator(tokenizer, max_p_len=data_args.p_max_len,
                                                           max_q_len=data_args.q_max_len))
        for callback in callbacks or []:
            trainer.add_callback(callback)
        dataset.trainer = trainer
        result = trainer.train()
        if trainer.is_world_process_zero():
            with atomic_path(final_dir) as tmp:
                save_encoders(model, tmp, tokenizer=tokenizer)
                write_json(tmp / "train_log.json", {
                    "global_step": trainer.state.global_step, "max_steps": trainer.state.max_steps,
                    "early_stop_step": getattr(training_args, "early_stop_step", 0),
                    "train_loss": result.training_loss, "dropped_queries": dataset.dropped,
                    "log_history": trainer.state.log_history,
                })
            shutil.rmtree(scratch, ignore_errors=True)
        trainer.accelerator.wait_for_everyone()
    finally:
        training_args.output_dir = str(final_dir)
    logger.info("model saved to %s", final_dir)
    return final_dir
