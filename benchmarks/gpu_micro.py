"""GPU microbenchmarks for the episode loop's three costs: encoding, training steps, exact search.

    python benchmarks/gpu_micro.py --model MINILM_DIR --data DATA_DIR --out gpu_micro.json [--small]

- encoding: passages/s of all-MiniLM-L6-v2 over SciFact's corpus at 128 and 256 tokens, fp32 and bf16
  autocast, through the project's encoder (length-sorted batches from the token cache);
- training: optimizer steps/s of the same encoder on random token ids, 8 queries x 4 passages and
  32 x 8 at 128 tokens, bf16 autocast (and fp32 for the smaller one), contrastive loss with in-batch
  negatives, AdamW;
- search: exact top-100 of 1,000 queries over 1M x 768 random float16 vectors with torch: all on the
  GPU, through the project's `search_arrays` (chunks read from an .npy file) on the GPU, and on the CPU.
FAISS is not measured here (not installed on the GPU machine).
Every figure is written to the JSON file as soon as it is measured, with the device's name.
`--small` shrinks every size (a check of the script on a CPU, not a measurement).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
import numpy as np  # noqa: E402
import torch  # noqa: E402
from machine import machine_info  # noqa: E402

from tevatron_tele.retrieval.encode import resolve_device  # noqa: E402


class Recorder:
    """A JSON file rewritten after every figure, so a killed run still leaves what it measured."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict = {}

    def put(self, section: str, key: str, value) -> None:
        self.data.setdefault(section, {})[key] = value
        print(f"[micro] {section}/{key}: {value}", flush=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_encoding(rec: Recorder, model_dir: Path, data: Path, device: str, small: bool, work: Path) -> None:
    from tevatron_tele.backends import load_encoder
    from tevatron_tele.data.collections import load_corpus
    from tevatron_tele.data.token_cache import corpus_token_cache
    from tevatron_tele.retrieval.encode import encode_texts

    model, tokenizer = load_encoder(model_dir, device, pooling="mean", normalize=True)
    corpus = load_corpus(data / "scifact")
    n = 64 if small else len(corpus)
    for max_len in (128, 256):
        cache = corpus_token_cache(corpus, tokenizer, max_len, work / "token_cache")
        items = list(range(n))
        for amp in (None, "bf16"):
            if amp and not device.startswith("cuda"):
                continue
            kwargs = dict(is_query=False, max_len=max_len, batch_size=512 if device.startswith("cuda") else 64,
                          dtype="float16", amp=amp, progress=False)
            encode_texts(model, tokenizer, cache, items[:1024], **kwargs)  # warm-up (kernels, allocator)
            sync(device)
            started = time.perf_counter()
            encode_texts(model, tokenizer, cache, items, **kwargs)
            sync(device)
            seconds = time.perf_counter() - started
            rec.put("encoding", f"{max_len}tok_{amp or 'fp32'}",
                    {"passages": n, "seconds": round(seconds, 3), "passages_per_s": round(n / seconds, 1)})
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def _train_steps(model, opt, q, p, target, precision: str, device: str, steps: int) -> None:
    """`steps` optimizer steps of mean-pooled cosine contrastive training (temperature 0.05)."""
    def encode(ids):
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        return torch.nn.functional.normalize(out.mean(dim=1), dim=-1)

    for _ in range(steps):
        with torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16,
                            enabled=precision == "bf16"):
            scores = encode(q) @ encode(p).T / 0.05
            loss = torch.nn.functional.cross_entropy(scores.float(), target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


def bench_training(rec: Recorder, model_dir: Path, device: str, small: bool) -> None:
    from transformers import AutoModel

    shapes = [(8, 4, "bf16"), (8, 4, "fp32"), (32, 8, "bf16")] if not small else [(2, 2, "fp32")]
    for queries, passages, precision in shapes:
        if precision == "bf16" and not device.startswith("cuda"):
            continue
        model = AutoModel.from_pretrained(str(model_dir)).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=2e-5)
        gen = torch.Generator().manual_seed(0)
        p_len = 16 if small else 128
        q = torch.randint(1000, 30000, (queries, 32 if not small else 8), generator=gen).to(device)
        p = torch.randint(1000, 30000, (queries * passages, p_len), generator=gen).to(device)
        target = torch.arange(queries, device=device) * passages
        _train_steps(model, opt, q, p, target, precision, device, 3)  # warm-up
        sync(device)
        steps = 3 if small else 30
        started = time.perf_counter()
        _train_steps(model, opt, q, p, target, precision, device, steps)
        sync(device)
        seconds = time.perf_counter() - started
        rec.put("training", f"{queries}x{passages}_{p_len}tok_{precision}",
                {"steps": steps, "seconds": round(seconds, 3), "steps_per_s": round(steps / seconds, 2)})
        del model, opt
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


def bench_search(rec: Recorder, device: str, small: bool, work: Path) -> None:
    from tevatron_tele.retrieval.embeddings import save_embeddings
    from tevatron_tele.retrieval.search import search_arrays

    n, dim, nq, k = (20_000, 64, 50, 10) if small else (1_000_000, 768, 1000, 100)
    # random vectors made on the device (3 GB of float32 normals take seconds on one CPU thread)
    gen = torch.Generator(device=device).manual_seed(0)
    corpus = torch.randn(n, dim, generator=gen, device=device, dtype=torch.float16).cpu()
    queries = torch.randn(nq, dim, generator=gen, device=device, dtype=torch.float16).cpu()
    rec.put("search", "setup", {"vectors": n, "dim": dim, "queries": nq, "k": k, "dtype": "float16"})

    if device.startswith("cuda"):
        c, qs = corpus.to(device), queries.to(device)
        for _ in range(2):  # warm-up, then timed
            sync(device)
            started = time.perf_counter()
            top = torch.topk(qs @ c.T, k, dim=1)
            sync(device)
            seconds = time.perf_counter() - started
        rec.put("search", "torch_gpu_resident_fp16", {"seconds": round(seconds, 4),
                                                     "queries_per_s": round(nq / seconds, 1)})
        reference = top.indices.cpu()
        del c, qs, top
        torch.cuda.empty_cache()
    else:
        reference = None

    prefix = work / "search" / "corpus"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    save_embeddings(prefix, corpus.numpy(), [str(i) for i in range(n)])
    q32 = queries.float().numpy()
    targets = [("cuda", device)] if device.startswith("cuda") else []
    targets.append(("cpu", "cpu"))
    for label, dev in targets:
        search_arrays(q32[:10], prefix, k, backend="torch", device=dev, progress=False)  # warm-up
        started = time.perf_counter()
        _, idx = search_arrays(q32, prefix, k, backend="torch", device=dev, progress=False)
        seconds = time.perf_counter() - started
        entry = {"seconds": round(seconds, 3), "queries_per_s": round(nq / seconds, 1)}
        if reference is not None:  # fp32 scores of fp16 vectors vs fp16 matmul: near-ties may swap
            entry["top10_agreement_with_gpu_resident"] = round(float(np.mean(
                [len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(idx.tolist(), reference.tolist())])), 4)
        rec.put("search", f"project_search_arrays_torch_{label}", entry)
    try:
        import faiss  # noqa: F401

        rec.put("search", "faiss", "installed but not measured here")
    except ImportError:
        rec.put("search", "faiss", "not installed on this machine: not measured")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="MiniLM folder (float32 weights).")
    p.add_argument("--data", type=Path, required=True, help="Folder holding scifact/.")
    p.add_argument("--out", type=Path, required=True, help="JSON file written after every figure.")
    p.add_argument("--small", action="store_true", help="Tiny sizes: checks the script, measures nothing useful.")
    p.add_argument("--parts", nargs="+", default=["encoding", "training", "search"],
                   choices=["encoding", "training", "search"])
    args = p.parse_args(argv)
    device = resolve_device("auto")
    rec = Recorder(args.out)
    rec.put("machine", "info", machine_info(device))
    rec.data["machine"]["small"] = args.small
    with tempfile.TemporaryDirectory(prefix="gpu-micro-") as tmp:
        work = Path(tmp)
        for part in args.parts:
            started = time.perf_counter()
            try:
                if part == "encoding":
                    bench_encoding(rec, args.model, args.data, device, args.small, work)
                elif part == "training":
                    bench_training(rec, args.model, device, args.small)
                else:
                    bench_search(rec, device, args.small, work)
            except Exception as e:  # one failing part must not cost the others
                rec.put(part, "error", f"{type(e).__name__}: {e}")
            rec.put(part, "part_seconds", round(time.perf_counter() - started, 1))


if __name__ == "__main__":
    main()
