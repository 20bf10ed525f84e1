#!/usr/bin/env bash
# The GPU part of the effectiveness study, as one script for a lent GPU machine that cannot download.
# Needs what benchmarks/prepare_gpu_bundle.sh made here: .whl/ (wheels) and .gpu_bundle/ (model, data,
# BM25 train run). Writes at most 6 files into $OUT, each as soon as it has something:
#   gpu_log.txt      everything printed
#   gpu_micro.json   encoding (fp32 vs bf16), training steps/s, torch search over 1M x 768, with the card's name
#   summary.json/md  the headline (ANCE vs ANCE-Tele, seeds 1 2 3) and the single-seed runs that fitted
#   results.tar.gz   the runs' small files: eval.json, pool.stats.json, manifest.json, report/
#   env.txt          package versions seen
# Time-aware: runs that would not finish within GPU_BUDGET_S (default 540) seconds of the start are skipped; a run
# cut off by the caller's time limit loses only itself (every finished run is already in $OUT).
#
#   OUT=/some/dir bash benchmarks/gpu.sh             on the GPU machine
#   GPU_DRY=1 OUT=/tmp/out bash benchmarks/gpu.sh    here, on the CPU: a small subset, tiny sizes, this venv
#   GPU_PART=defaults OUT=/some/dir bash benchmarks/gpu.sh   the defaults study's deciding rows instead (NFCorpus)
set -uo pipefail
START=$(date +%s)
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder that receives the results}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_log.txt") 2>&1
DRY=${GPU_DRY:-0}
BUDGET=${GPU_BUDGET_S:-540}
WORK=${GPU_WORK:-/tmp/tele-gpu}
elapsed() { echo $(( $(date +%s) - START )); }
say() { echo "[gpu.sh $(elapsed)s] $*"; }

if [ "$DRY" = 1 ]; then
  PY=${PYTHON:-.venv/bin/python}
  export PYTHONPATH=$PWD
else
  PY=python3
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { say "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
  PYTHONUNBUFFERED=1 MPLBACKEND=Agg
say "start (dry=$DRY, budget ${BUDGET}s, work $WORK)"

# ---- inputs: float32 model, data ----
mkdir -p "$WORK/data"
"$PY" - "$WORK/minilm" <<'EOF' || { say "model conversion failed"; exit 1; }
import shutil, sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

src, dst = Path(".gpu_bundle/minilm"), Path(sys.argv[1])
if not (dst / "model.safetensors").exists():
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name != "model.safetensors":
            shutil.copy2(f, dst / f.name)
    state = load_file(str(src / "model.safetensors"))
    save_file({k: v.to(torch.float32) for k, v in state.items()}, str(dst / "model.safetensors"),
              metadata={"format": "pt"})
print("model ready:", dst)
EOF
[ -d "$WORK/data/scifact" ] || tar -xzf .gpu_bundle/data.tar.gz -C "$WORK/data" || { say "data unpack failed"; exit 1; }

# tevatron.data names datasets.Dataset in annotations only; if the carried `datasets` cannot import against
# this machine's pyarrow or huggingface-hub, a stand-in module with that one name lets training run.
if [ "${GPU_FORCE_DATASETS_STANDIN:-0}" = 1 ] || ! "$PY" -c "import datasets" > /dev/null 2>&1; then
  say "datasets does not import here: using a stand-in module for tevatron.data's annotations"
  mkdir -p "$WORK/standin/datasets"
  printf 'class Dataset:\n    """Stand-in: tevatron.data only names this class."""\n' > "$WORK/standin/datasets/__init__.py"
  export PYTHONPATH=$WORK/standin:$PYTHONPATH
fi
"$PY" - > "$OUT/env.txt" 2>&1 <<'EOF'
import importlib, platform
from importlib.metadata import version, PackageNotFoundError
print("python", platform.python_version())
for name in ("torch", "transformers", "datasets", "tevatron", "ir-measures", "pytrec-eval-terrier", "numpy",
             "pyarrow", "huggingface-hub", "fsspec", "dill", "multiprocess", "accelerate", "tokenizers"):
    try:
        print(name, version(name))
    except PackageNotFoundError:
        print(name, "missing")
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
for module in ("datasets", "tevatron.data", "ir_measures", "pytrec_eval", "tevatron_tele.runner.episodes",
               "tevatron_tele.training.train", "tevatron_tele.evaluation.analysis", "tevatron_tele.retrieval.search"):
    importlib.import_module(module)
    print("import ok", module)
import sys
print("faiss imported:", "faiss" in sys.modules)
EOF
IMPORTS=$?
cat "$OUT/env.txt"

# ---- GPU_PART=defaults: the defaults study's deciding rows (benchmarks/defaults_study.py) instead of (a)-(c) ----
# NFCorpus dev, seeds 13 14 15: the one-shot recipe through sentence-transformers, one episode of ANN negatives on
# the runner's defaults (filter against the best positive, trained on it), and the README recipe on those defaults
# with Tele and with ANN negatives only (what Tele adds); the summary after each part, so a cut-off run keeps what
# finished.
if [ "${GPU_PART:-effectiveness}" = defaults ]; then
  if [ "$IMPORTS" != 0 ]; then say "imports failed (see env.txt)"; exit 1; fi
  if [ "$DRY" = 1 ]; then DEVICE=cpu; SEEDS=(13); else DEVICE=cuda; SEEDS=(13 14 15); fi
  NF=$WORK/data/nfcorpus; D=$WORK/defaults
  summary() { "$PY" benchmarks/defaults_study.py summary --out "$D/nfcorpus" --one_shot "$D/one_shot" \
    --device "$DEVICE" > /dev/null && cp "$D/nfcorpus/summary.json" "$D/nfcorpus/summary.md" "$OUT/"; }
  for part in one_shot ance-top30-best95-bestpos tele3-readme-best95-bestpos ance3-readme-best95-bestpos; do
    LEFT=$(( BUDGET - $(elapsed) ))
    [ "$LEFT" -gt 30 ] || { say "no time left for $part"; break; }
    say "$part with ${LEFT}s left"
    if [ "$part" = one_shot ]; then
      timeout "$LEFT" "$PY" benchmarks/one_shot.py --collection "$NF" --eval_split dev --seeds "${SEEDS[@]}" \
        --model "$WORK/minilm" --out "$D/one_shot" --device "$DEVICE"
    else
      timeout "$LEFT" "$PY" benchmarks/defaults_study.py run --collection "$NF" --eval_split dev --rows "$part" \
        --seeds "${SEEDS[@]}" --model "$WORK/minilm" --out "$D/nfcorpus" --device "$DEVICE"
    fi
    say "$part: rc $?"; summary
  done
  exit 0
fi

# ---- (a) microbenchmarks ----
if [ "$DRY" = 1 ]; then MICRO=(--small); MICRO_LIMIT=300; else MICRO=(); MICRO_LIMIT=150; fi
say "microbenchmarks"
timeout "$MICRO_LIMIT" "$PY" benchmarks/gpu_micro.py --model "$WORK/minilm" --data "$WORK/data" \
  --out "$OUT/gpu_micro.json" "${MICRO[@]}" || say "microbenchmarks stopped (rc $?); figures so far are kept"

# ---- (b) the headline, then single-seed runs while time remains; (c) summary + tarball after every run ----
if [ "$IMPORTS" != 0 ]; then say "imports failed (see env.txt): no episode runs"; exit 1; fi
if [ "$DRY" = 1 ]; then
  STUDY=(--profile dry --subset --seeds 1 --only headline baselines ablations --device cpu)
else
  STUDY=(--profile gpu --seeds 1 2 3 --only headline baselines ablations refresh)
fi
LEFT=$(( BUDGET - $(elapsed) ))
say "episode runs with ${LEFT}s left"
"$PY" benchmarks/effectiveness.py --results "$WORK/results" "${STUDY[@]}" --model "$WORK/minilm" \
  --data "$WORK/data" --bm25_train_run .gpu_bundle/bm25/train.trec --no_bm25_baseline \
  --deadline_s "$LEFT" --reserve_s 15 --export "$OUT"
RC=$?
say "done (rc $RC)"; ls -la "$OUT"
exit $RC
