#!/usr/bin/env bash
# ANCE-Tele on Natural Questions with the paper's settings: coCondenser (Wikipedia) with untied query
# and passage encoders, 80 negatives kept per source, 4 GPUs x 32 queries with negatives shared across
# devices, lr 5e-6, 40 epochs, quick refresh of 2k steps, max lengths 32 / 156.
# Retrieved passages that contain an answer (DPR's normalised has-answer rule) are never negatives
# and become the positive of a question that has none.
#
# Data: DPR's nq-train.json / nq-dev.json (question, answers, positive_ctxs) and psgs_w100.tsv.
# Expect (paper): top-5 / 20 / 100 accuracy 77.0 / 84.9 / 89.7 on NQ test.
set -euo pipefail
DATA=${DATA:?set DATA to the folder with nq-train.json and psgs_w100.tsv}
MODEL=${MODEL:?set MODEL to the coCondenser-wiki folder}
OUT=${1:-runs/nq-tele}
python -m tevatron_tele.driver.episodes \
  --output_dir "$OUT" --negatives tele \
  --model_name_or_path "$MODEL" --untie_encoder --pooling cls \
  --collection "$DATA/nq-train.json" --passages "$DATA/psgs_w100.tsv" --eval_split "" \
  --num_episodes 3 --refresh_steps 2000 --num_train_epochs 40 \
  --train_nproc 4 --per_device_train_batch_size 32 --episode_train_n_passages 4,8,12 --learning_rate 5e-6 \
  --q_max_len 32 --p_max_len 156 --depth 200 --sample 80 \
  --bf16 --encode_amp bf16 --encode_batch_size 512
# Evaluate the last episode on NQ test with top-k accuracy (answers from DPR's nq-test file):
#   python -m tevatron_tele.driver.evaluate --run "$OUT/episode-3/rankings/<test run>.trec" \
#       --collection "$DATA/nq-test.json" --passages "$DATA/psgs_w100.tsv"
