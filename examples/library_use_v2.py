"""Current Tevatron's own training script (`tevatron.retriever.driver.train`), trained on an ANCE-Tele pool.

One swap: the examples come from `TeleTrainDataset` (a pool.jsonl of document ids plus memory-mapped token
caches, with per-source mixing) and are padded by its collator, instead of Tevatron's TrainDataset and
TrainCollator reading texts. Model, trainer and argument dataclasses are Tevatron's; the ANCE-Tele data flags
(`--pool`, `--collection`, `--negative_mixing`, ...) come with `TeleDataArguments`.

    python examples/library_use_v2.py --model_name_or_path MODEL --output_dir OUT \\
        --pool RUN/episode-1/pool.jsonl --collection data/scifact --token_cache_dir cache \\
        --per_device_train_batch_size 8 --train_group_size 4 --attn_implementation sdpa --use_cpu
"""
from __future__ import annotations

import logging

from tevatron.retriever.arguments import ModelArguments, TevatronTrainingArguments
from tevatron.retriever.modeling import DenseModel
from tevatron.retriever.trainer import TevatronTrainer
from transformers import AutoTokenizer, HfArgumentParser, set_seed

from tevatron_tele import corpus_token_cache, iter_pool, load_collection, query_token_cache
from tevatron_tele.backends.tevatron_v2 import TeleDataArguments, TeleTrainDataset, make_collator


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    parser = HfArgumentParser((ModelArguments, TeleDataArguments, TevatronTrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses()
    set_seed(training_args.seed)

    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path)
    model = DenseModel.build(model_args, training_args, attn_implementation=model_args.attn_implementation)

    collection = load_collection(data_args.collection, split=data_args.split)
    cache_dir = data_args.token_cache_dir or "token_cache"
    dataset = TeleTrainDataset(
        data_args,
        iter_pool(data_args.pool, known_doc_ids=collection.corpus),  # streamed: entries become groups as read
        tokenizer,
        query_cache=query_token_cache(collection, tokenizer, data_args.q_max_len, cache_dir),
        corpus_cache=corpus_token_cache(collection, tokenizer, data_args.p_max_len, cache_dir),
        collection=collection,
    )
    trainer = TevatronTrainer(model=model, args=training_args, train_dataset=dataset,
                              data_collator=make_collator(data_args, tokenizer))
    dataset.set_trainer(trainer)  # the epoch and seed of each example's choice come from the trainer
    trainer.train()
    trainer.save_model()
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(training_args.output_dir)


if __name__ == "__main__":
    main()
