"""A plain Tevatron 0.1.0 training script that trains on an ANCE-Tele negative pool.

Tevatron's own driver, with two swaps: the examples come from `TeleTrainDataset` (a pool.jsonl of
document ids plus memory-mapped token caches, instead of a JSON file of token copies), and the
trainer is the transformers-5 compatible `CompatDenseTrainer`. Model, collator and arguments are
Tevatron's.

    python examples/library_use.py --model_name_or_path MODEL --output_dir OUT \\
        --pool RUN/episode-1/pool.jsonl --collection data/scifact --token_cache_dir cache \\
        --per_device_train_batch_size 8 --train_n_passages 4 --num_train_epochs 1
"""
from __future__ import annotations

import logging

from tevatron.arguments import ModelArguments
from tevatron.data import QPCollator
from tevatron.modeling import DenseModel
from transformers import AutoTokenizer, HfArgumentParser, set_seed

from tevatron_tele import TeleTrainDataset, corpus_token_cache, iter_pool, load_collection, query_token_cache
from tevatron_tele.backends.tevatron_v1.arguments import (
    TeleDataArguments,  # Tevatron's DataArguments + pool / collection fields
)
from tevatron_tele.backends.tevatron_v1.compat import CompatDenseTrainer, CompatTrainingArguments


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    parser = HfArgumentParser((ModelArguments, TeleDataArguments, CompatTrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses()
    set_seed(training_args.seed)

    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path)
    model = DenseModel.build(model_args, data_args, training_args)

    collection = load_collection(data_args.collection, split=data_args.split)
    cache_dir = data_args.token_cache_dir or "token_cache"
    dataset = TeleTrainDataset(
        data_args,
        iter_pool(data_args.pool, known_doc_ids=collection.corpus),  # streamed: entries become groups as read
        tokenizer,
        query_cache=query_token_cache(collection, tokenizer, data_args.q_max_len, cache_dir),
        corpus_cache=corpus_token_cache(collection, tokenizer, data_args.p_max_len, cache_dir),
    )

    trainer = CompatDenseTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        data_collator=QPCollator(tokenizer, max_p_len=data_args.p_max_len, max_q_len=data_args.q_max_len),
    )
    dataset.trainer = trainer  # Tevatron's datasets read the epoch and seed from the trainer
    trainer.train()
    trainer.save_model()
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(training_args.output_dir)


if __name__ == "__main__":
    main()
