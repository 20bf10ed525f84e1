"""The Tevatron 0.1.0 backend (`pip install tevatron==0.1.0`), made to run on transformers 5 (`compat`)."""
from __future__ import annotations

from ...data.examples import InputFormat
from .arguments import TeleDataArguments, TeleModelArguments, TeleTrainingArguments
from .dataset import TeleQPCollator, TeleTrainDataset
from .modeling import TeleDenseModel, TeleDenseModelForInference, save_encoders
from .modeling import load_encoder as _load_encoder
from .trainer import TeleTrainer

NAME = "v1"


def make_dataset(data_args, entries, tokenizer, *, query_cache=None, corpus_cache=None, seed: int = 42,
                 collection=None) -> TeleTrainDataset:
    """TeleTrainDataset over the pool entries (examples from the token caches; `collection` is not needed)."""
    return TeleTrainDataset(data_args, entries, tokenizer, query_cache=query_cache, corpus_cache=corpus_cache,
                            seed=seed)


def make_collator(data_args, tokenizer, dataset=None) -> TeleQPCollator:
    """Tevatron's QPCollator, with the masking keys when the examples carry them."""
    return TeleQPCollator(tokenizer, max_p_len=data_args.p_max_len, max_q_len=data_args.q_max_len)


def build_model(model_args, data_args, training_args) -> TeleDenseModel:
    """The training model (Tevatron's DenseModel with pooling, normalisation, temperature and masking)."""
    return TeleDenseModel.build(model_args, data_args, training_args, cache_dir=model_args.cache_dir)


def make_trainer(model, training_args, dataset, tokenizer, collator) -> TeleTrainer:
    """Tevatron's DenseTrainer on transformers 5, with the quick-refresh early stop."""
    return TeleTrainer(model=model, args=training_args, train_dataset=dataset, processing_class=tokenizer,
                       data_collator=collator)


def save_model(model, output_dir, tokenizer) -> None:
    """Tevatron's layout (root, or query_model/ + passage_model/), pooler, tokenizer and tele_config.json."""
    save_encoders(model, output_dir, tokenizer=tokenizer)


def load_encoder(path, device="cpu", *, pooling=None, normalize=None, **input_options):
    """(TeleDenseModelForInference, tokenizer) of a saved model; Tevatron 0.1.0 has no prefixes or appended EOS."""
    if input_options:
        raise ValueError(f"{', '.join('--' + k for k in input_options)}: current Tevatron's options (--backend v2)")
    model, tokenizer = _load_encoder(path, device, pooling=pooling, normalize=normalize)
    model.input_format = InputFormat()
    return model, tokenizer


__all__ = ["NAME", "TeleDataArguments", "TeleDenseModel", "TeleDenseModelForInference", "TeleModelArguments",
           "TeleQPCollator", "TeleTrainDataset", "TeleTrainer", "TeleTrainingArguments", "build_model",
           "load_encoder", "make_collator", "make_dataset", "make_trainer", "save_model"]
