"""`train()`, the library entry point of training, on whichever Tevatron backend is chosen: it builds tokenizer,
dataset, model and trainer through the backend, trains from the base model, and writes the final model to
`training_args.output_dir` atomically (checkpoints and trainer state live in a `<output_dir>.partial` scratch folder
while it runs)."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

from transformers import AutoTokenizer, set_seed

from ..backends import get_backend
from ..data.collections import load_collection
from ..data.pools import detect_pool_format, iter_pool, read_reference_pool
from ..data.token_cache import corpus_token_cache, query_token_cache
from ..utils import OutputExistsError, atomic_path, setup_logging, write_json

logger = logging.getLogger(__name__)


def load_tokenizer(model_args: Any) -> Any:
    """The model's tokenizer.

    Args:
        model_args: the backend's TeleModelArguments (tokenizer_name or model_name_or_path, cache_dir).

    Returns:
        The tokenizer (from query_model/ when an untied model keeps it only there).
    """
    path = Path(model_args.tokenizer_name or model_args.model_name_or_path)
    if path.is_dir() and not (path / "tokenizer_config.json").exists() and (path / "query_model").is_dir():
        path = path / "query_model"
    return AutoTokenizer.from_pretrained(str(path), cache_dir=model_args.cache_dir)


def build_train_dataset(data_args: Any, tokenizer: Any, *, seed: int, cache_dir: Path,
                        backend: ModuleType | str | None = None) -> Any:
    """The backend's TeleTrainDataset over `data_args.pool`.

    Args:
        data_args: the backend's TeleDataArguments.
        tokenizer: the model's tokenizer.
        seed: the training seed.
        cache_dir: folder of the token caches.
        backend: a backend module or name (default: the one installed).

    Returns:
        The dataset: over token caches of `data_args.collection` for id pools, over the file's own token ids for
        reference tokenized pools.
    """
    backend = get_backend(backend) if backend is None or isinstance(backend, str) else backend
    if not data_args.pool:
        raise ValueError("--pool is required: a pool.jsonl or a reference tokenized training file")
    fmt = data_args.pool_format if data_args.pool_format != "auto" else detect_pool_format(data_args.pool)
    if fmt == "reference":
        entries = read_reference_pool(data_args.pool)
        logger.info("read %d tokenized training groups from %s", len(entries), data_args.pool)
        return backend.make_dataset(data_args, entries, tokenizer, seed=seed)

    if not data_args.collection:
        raise ValueError("--collection is required with a pool of document ids (it holds the texts)")
    collection = load_collection(data_args.collection, split=data_args.split, passages=data_args.passages)
    corpus_cache = corpus_token_cache(collection, tokenizer, data_args.p_max_len, cache_dir)
    query_cache = query_token_cache(collection, tokenizer, data_args.q_max_len, cache_dir)
    # streamed: each entry becomes a group of token-cache keys as it is read, so the pool's id strings are never
    # all held (the corpus checks the ids of a few thousand entries at a time, through its id index)
    entries = iter_pool(data_args.pool, known_doc_ids=collection.corpus)
    dataset = backend.make_dataset(data_args, entries, tokenizer, query_cache=query_cache, corpus_cache=corpus_cache,
                                   seed=seed, collection=collection)
    logger.info("read %d training groups from %s", len(dataset), data_args.pool)
    if not len(dataset):
        raise ValueError(f"{data_args.pool}: no training query in the pool (each lost its negatives or positives; "
                         "with the positive-aware filter of a model that ranks its positives low, try "
                         "--max_negative_ratio none --train_positives all)")
    return dataset


def _is_trained_model(folder: Path) -> bool:
    """Whether `folder` is a model this step saved (it writes `train_log.json` into each), so it may replace it."""
    return (folder / "train_log.json").is_file()


def train(model_args: Any, data_args: Any, training_args: Any, callbacks: list | None = None) -> Path:
    """Train a dense retriever on `data_args.pool` and return the saved model directory.

    Refuses a non-empty `output_dir` unless `overwrite_output_dir`. Safe to call in-process several times (one model per
    call) and under torchrun (rank 0 writes, the others wait).

    Args:
        model_args, data_args: the backend's TeleModelArguments and TeleDataArguments.
        training_args: the backend's TeleTrainingArguments; its `backend` picks the Tevatron.
        callbacks: extra Trainer callbacks.

    Returns:
        The model folder (`training_args.output_dir`).
    """
    setup_logging()
    backend = get_backend(getattr(training_args, "backend", "auto"))
    final_dir = Path(training_args.output_dir)
    if final_dir.exists() and any(final_dir.iterdir()) and not getattr(training_args, "overwrite_output_dir", False):
        raise FileExistsError(f"output directory {final_dir} exists and is not empty (use --overwrite_output_dir)")
    if final_dir.is_dir() and any(final_dir.iterdir()) and not _is_trained_model(final_dir):
        raise OutputExistsError(final_dir, "holds files this step did not write (no train_log.json); "
                                           "--overwrite_output_dir replaces only a model trained here: give another "
                                           "--output_dir, or remove this folder yourself")
    device = training_args.device  # initialises torch.distributed under torchrun, needed before the model
    logger.info("training on %s, %d process(es), Tevatron backend %s; model %s", device, training_args.world_size,
                backend.NAME, model_args.model_name_or_path)
    set_seed(training_args.seed)

    tokenizer = load_tokenizer(model_args)
    cache_dir = Path(data_args.token_cache_dir) if data_args.token_cache_dir else final_dir.parent / "token_cache"
    dataset = build_train_dataset(data_args, tokenizer, seed=training_args.seed, cache_dir=cache_dir, backend=backend)
    model = backend.build_model(model_args, data_args, training_args)

    scratch = final_dir.with_name(final_dir.name + ".partial")
    training_args.output_dir = str(scratch)
    try:
        trainer = backend.make_trainer(model, training_args, dataset, tokenizer,
                                       backend.make_collator(data_args, tokenizer, dataset))
        for callback in callbacks or []:
            trainer.add_callback(callback)
        dataset.trainer = trainer
        result = trainer.train()
        if trainer.is_world_process_zero():
            with atomic_path(final_dir, replaces=_is_trained_model) as tmp:
                backend.save_model(model, tmp, tokenizer)
                write_json(tmp / "train_log.json", {
                    "global_step": trainer.state.global_step, "max_steps": trainer.state.max_steps,
                    "backend": backend.NAME, "early_stop_step": getattr(training_args, "early_stop_step", 0),
                    "train_loss": result.training_loss, "dropped_queries": dataset.dropped,
                    "log_history": trainer.state.log_history,
                })
            shutil.rmtree(scratch, ignore_errors=True)
        trainer.accelerator.wait_for_everyone()
    finally:
        training_args.output_dir = str(final_dir)
    logger.info("model saved to %s", final_dir)
    return final_dir
