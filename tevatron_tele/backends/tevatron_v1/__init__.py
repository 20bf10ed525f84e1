"""The Tevatron 0.1.0 backend (`pip install tevatron==0.1.0`), made to run on transformers 5 (`compat`)."""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from ...data.examples import InputFormat
from ...data.token_cache import TokenCache
from .arguments import TeleDataArguments, TeleModelArguments, TeleTrainingArguments
from .dataset import TeleQPCollator, TeleTrainDataset
from .modeling import TeleDenseModel, TeleDenseModelForInference, save_encoders
from .modeling import load_encoder as _load_encoder
from .trainer import TeleTrainer

NAME = "v1"


def make_dataset(data_args: TeleDataArguments, entries: Iterable, tokenizer: Any, *,
                 query_cache: TokenCache | None = None, corpus_cache: TokenCache | None = None, seed: int = 42,
                 collection: Any = None) -> TeleTrainDataset:
    """TeleTrainDataset over the pool entries, examples from the token caches.

    Args:
        data_args, entries, tokenizer, query_cache, corpus_cache, seed: as `TeleTrainDataset` takes them.
        collection: unused here (current Tevatron's text feed reads it).

    Returns:
        The dataset.
    """
    return TeleTrainDataset(data_args, entries, tokenizer, query_cache=query_cache, corpus_cache=corpus_cache,
                            seed=seed)


def make_collator(data_args: TeleDataArguments, tokenizer: Any, dataset: Any = None) -> TeleQPCollator:
    """Tevatron's QPCollator, with the masking keys when the examples carry them.

    Args:
        data_args: the lengths are read.
        tokenizer: pads the batches.
        dataset: unused.

    Returns:
        The collator.
    """
    return TeleQPCollator(tokenizer, max_p_len=data_args.p_max_len, max_q_len=data_args.q_max_len)


def build_model(model_args: TeleModelArguments, data_args: TeleDataArguments,
                training_args: TeleTrainingArguments) -> TeleDenseModel:
    """The training model (Tevatron's DenseModel with pooling, normalisation, temperature and masking).

    Args:
        model_args, data_args, training_args: the run's arguments.

    Returns:
        The model.
    """
    return TeleDenseModel.build(model_args, data_args, training_args, cache_dir=model_args.cache_dir)


def make_trainer(model: TeleDenseModel, training_args: TeleTrainingArguments, dataset: TeleTrainDataset,
                 tokenizer: Any, collator: TeleQPCollator) -> TeleTrainer:
    """Tevatron's DenseTrainer on transformers 5, with the quick-refresh early stop.

    Args:
        model, training_args, dataset, tokenizer, collator: what the trainer trains with.

    Returns:
        The trainer.
    """
    return TeleTrainer(model=model, args=training_args, train_dataset=dataset, processing_class=tokenizer,
                       data_collator=collator)


def save_model(model: TeleDenseModel, output_dir: str | os.PathLike, tokenizer: Any) -> None:
    """Tevatron's layout (root, or query_model/ + passage_model/), pooler, tokenizer and tele_config.json.

    Args:
        model: the trained model.
        output_dir: the model folder.
        tokenizer: saved beside it.
    """
    save_encoders(model, output_dir, tokenizer=tokenizer)


def load_encoder(path: str | os.PathLike, device: str = "cpu", *, pooling: str | None = None,
                 normalize: bool | None = None, **input_options: Any) -> tuple[TeleDenseModelForInference, Any]:
    """A saved model for encoding (`backends.load_encoder`).

    Args:
        path, device, pooling, normalize: as for `backends.load_encoder`.
        **input_options: refused: Tevatron 0.1.0 has no prefixes or appended EOS.

    Returns:
        (model in eval mode, tokenizer).
    """
    if input_options:
        raise ValueError(f"{', '.join('--' + k for k in input_options)}: current Tevatron's options (--backend v2)")
    model, tokenizer = _load_encoder(path, device, pooling=pooling, normalize=normalize)
    model.input_format = InputFormat()
    return model, tokenizer


__all__ = ["NAME", "TeleDataArguments", "TeleDenseModel", "TeleDenseModelForInference", "TeleModelArguments",
           "TeleQPCollator", "TeleTrainDataset", "TeleTrainer", "TeleTrainingArguments", "build_model",
           "load_encoder", "make_collator", "make_dataset", "make_trainer", "save_model"]
