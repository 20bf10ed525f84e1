#!/usr/bin/env bash
# ANCE-Tele on MS MARCO passage with the paper's settings (one GPU): coCondenser, 200-deep mining,
# 30 negatives kept per source, 8 queries x (1 + 15/31/31 negatives), lr 5e-6, 3 epochs, quick refresh
# of 20k steps for episodes 1-2, max lengths 32 / 128.
#
# Data: an MS MARCO folder with collection.tsv (id<TAB>text, or id<TAB>title<TAB>text as in the
# Tevatron/coCondenser release), queries.train.tsv, qrels.train.tsv, queries.dev.tsv, qrels.dev.tsv.
# Model: a local copy of Luyu/co-condenser-marco (or any BERT checkpoint; a hub name works online).
# Expect (paper, released checkpoints): dev MRR@10 39.1, R@1k 98.4 after episode 3.
set -euo pipefail
DATA=${DATA:?set DATA to the MS MARCO folder}
MODEL=${MODEL:?set MODEL to the coCondenser folder}
OUT=${1:-runs/msmarco-tele}
python -m tevatron_tele.driver.episodes \
  --output_dir "$OUT" --negatives tele \
  --model_name_or_path "$MODEL" --pooling cls \
  --collection "$DATA" --train_split train --eval_split dev \
  --num_episodes 3 --refresh_steps 20000 --num_train_epochs 3 \
  --per_device_train_batch_size 8 --episode_train_n_passages 16,32,32 --learning_rate 5e-6 --warmup_ratio 0.1 \
  --q_max_len 32 --p_max_len 128 --depth 200 --sample 30 \
  --bf16 --encode_amp bf16 --encode_batch_size 512 --search_backend faiss --eval_depth 1000 \
  --analysis_max_queries 20000
