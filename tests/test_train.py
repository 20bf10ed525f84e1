"""Training end to end on tiny models: early stop vs schedule, saved layout, loss goes down, torchrun, SciFact."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tevatron.modeling import DenseModelForInference
from transformers import AutoModel, AutoTokenizer

from tevatron_tele.backends import load_encoder
from tevatron_tele.data.collections import load_collection
from tevatron_tele.data.pools import PoolEntry, write_pool
from tevatron_tele.driver.train import parse_args
from tevatron_tele.model_config import read_tele_config
from tevatron_tele.training.train import train

REPO_ROOT = Path(__file__).resolve().parent.parent


def random_negative_pool(collection_dir, path, *, n_negatives=10, max_queries=None, seed=0) -> Path:
    """A pool of random non-positive negatives for the train split, as pool.jsonl."""
    collection = load_collection(collection_dir, split="train")
    rng = random.Random(seed)
    ids = collection.corpus.ids
    entries = []
    for qid in sorted(collection.queries)[:max_queries]:
        positives = collection.positives(qid)
        if not positives:
            continue
        negatives = []
        while len(negatives) < n_negatives:
            doc = ids[rng.randrange(len(ids))]
            if doc not in positives and doc not in negatives:
                negatives.append(doc)
        entries.append(PoolEntry(qid, collection.queries[qid], positives, negatives, {"ann": negatives}))
    write_pool(path, entries)
    return Path(path)


@pytest.fixture(scope="module")
def synthetic_pool(synthetic_dir, tmp_path_factory) -> Path:
    return random_negative_pool(synthetic_dir, tmp_path_factory.mktemp("pool") / "pool.jsonl")


def common_flags(model_dir, pool, collection, out, cache_dir) -> list[str]:
    return ["--model_name_or_path", str(model_dir), "--pool", str(pool), "--collection", str(collection),
            "--token_cache_dir", str(cache_dir), "--output_dir", str(out), "--per_device_train_batch_size", "4",
            "--train_n_passages", "3", "--q_max_len", "16", "--p_max_len", "32", "--learning_rate", "1e-3",
            "--logging_steps", "1", "--report_to", "none", "--save_strategy", "no", "--seed", "13",
            "--dataloader_num_workers", "0"]


def run_train(flags: list[str]) -> Path:
    torch.set_num_threads(1)
    return train(*parse_args(flags))


def logged(out: Path, key: str) -> list[float]:
    history = json.loads((out / "train_log.json").read_text())["log_history"]
    return [h[key] for h in history if key in h and "train_runtime" not in h]


@pytest.fixture(scope="module")
def runs(tiny_model_dir, synthetic_dir, synthetic_pool, tmp_path_factory):
    """Three runs from one set of flags: the full schedule, an early stop at 3, and max_steps=3."""
    root = tmp_path_factory.mktemp("runs")
    flags = common_flags(tiny_model_dir, synthetic_pool, synthetic_dir, root / "full", root / "cache")
    flags += ["--num_train_epochs", "2", "--warmup_ratio", "0.1", "--pooling", "mean", "--normalize",
              "--temperature", "0.1"]
    full = run_train(flags)
    early = run_train([*flags[: flags.index("--output_dir")], "--output_dir", str(root / "early"),
                       *flags[flags.index("--output_dir") + 2:], "--early_stop_step", "3"])
    short = run_train([*flags[: flags.index("--output_dir")], "--output_dir", str(root / "short"),
                       *flags[flags.index("--output_dir") + 2:], "--max_steps", "3"])
    return {"full": full, "early": early, "short": short}


def test_early_stop_keeps_the_full_schedule(runs):
    full_log = json.loads((runs["full"] / "train_log.json").read_text())
    early_log = json.loads((runs["early"] / "train_log.json").read_text())
    assert full_log["max_steps"] == 120 // 4 * 2  # 120 training queries, batch 4, 2 epochs
    assert early_log["global_step"] == 3 and early_log["max_steps"] == full_log["max_steps"]
    full_lr, early_lr, short_lr = (logged(runs[k], "learning_rate") for k in ("full", "early", "short"))
    assert early_lr == pytest.approx(full_lr[:3])
    # warm-up of ceil(0.1 * 60) = 6 steps: the LR is still rising at step 3
    assert early_lr[0] < early_lr[1] < early_lr[2] < 1e-3
    assert short_lr != pytest.approx(early_lr)  # max_steps would shrink the schedule
    # same steps, same data order: the early-stopped run's losses match the full run's first ones
    assert logged(runs["early"], "loss") == pytest.approx(logged(runs["full"], "loss")[:3], rel=1e-4)


def test_saved_model_loads_both_ways(runs, tiny_model_dir):
    out = runs["early"]
    assert read_tele_config(out) == {"pooling": "mean", "normalize": True, "temperature": 0.1,
                                     "untie_encoder": False, "add_pooler": False, "backend": "v1"}
    AutoModel.from_pretrained(out)
    AutoTokenizer.from_pretrained(out)
    tevatron_model = DenseModelForInference.build(str(out))
    model, tok = load_encoder(out)
    assert model.pooling == "mean" and model.normalize
    batch = dict(tok(["gapu siza gisu"], return_tensors="pt"))
    with torch.no_grad():
        hidden = tevatron_model.lm_q(**batch).last_hidden_state
        assert torch.allclose(model.encode_query(batch)[0], hidden, atol=1e-5)
    assert not (out.parent / "early.partial").exists()  # scratch folder removed after the final save


def test_training_on_synthetic_reduces_loss(runs):
    losses = logged(runs["full"], "loss")
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.8 * first, (first, last)


def test_untied_training_saves_both_encoders(tiny_model_dir, synthetic_dir, synthetic_pool, tmp_path):
    flags = common_flags(tiny_model_dir, synthetic_pool, synthetic_dir, tmp_path / "out", tmp_path / "cache")
    out = run_train([*flags, "--untie_encoder", "--early_stop_step", "2", "--negative_mixing", "weighted",
                     "--mask_batch_positives"])
    for name in ("query_model", "passage_model"):
        AutoModel.from_pretrained(out / name)
        AutoTokenizer.from_pretrained(out / name)
    model, _ = load_encoder(out)
    assert model.lm_q is not model.lm_p
    assert DenseModelForInference.build(str(out)).lm_q is not None


def test_existing_output_is_never_overwritten(tiny_model_dir, synthetic_dir, synthetic_pool, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not empty"):
        run_train(common_flags(tiny_model_dir, synthetic_pool, synthetic_dir, out, tmp_path / "cache"))
    assert (out / "earlier.txt").read_text() == "keep"


def test_reference_tokenized_pool_trains(tiny_model_dir, tmp_path):
    rng = random.Random(0)

    def tokens(n):
        return [rng.randrange(10, 500) for _ in range(n)]

    lines = [{"query": tokens(5), "positives": [tokens(12)], "negatives": [tokens(12) for _ in range(4)]}
             for _ in range(16)]
    pool = tmp_path / "train.hn.json"
    pool.write_text("".join(json.dumps(line) + "\n" for line in lines))
    flags = ["--model_name_or_path", str(tiny_model_dir), "--pool", str(pool), "--output_dir", str(tmp_path / "out"),
             "--per_device_train_batch_size", "4", "--train_n_passages", "3", "--report_to", "none",
             "--save_strategy", "no", "--max_steps", "2"]
    out = run_train(flags)
    assert json.loads((out / "train_log.json").read_text())["global_step"] == 2


def test_torchrun_two_processes_share_negatives(tiny_model_dir, synthetic_dir, synthetic_pool, tmp_path):
    out = tmp_path / "out"
    flags = common_flags(tiny_model_dir, synthetic_pool, synthetic_dir, out, tmp_path / "cache")
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_port", str(29500 + os.getpid() % 1000),
           "-m", "tevatron_tele.driver.train", *flags, "--negatives_x_device", "--mask_batch_positives",
           "--num_train_epochs", "1", "--early_stop_step", "4"]
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    log = json.loads((out / "train_log.json").read_text())
    assert log["max_steps"] == 120 // (4 * 2)  # each process gets its own half of the batches
    assert log["global_step"] == 4
    assert all(loss == loss and loss > 0 for loss in logged(out, "loss"))
    load_encoder(out)


def test_scifact_random_negative_pool_trains(scifact_dir, tiny_model_dir, tmp_path):
    pool = random_negative_pool(scifact_dir, tmp_path / "pool.jsonl", n_negatives=4, max_queries=40)
    flags = common_flags(tiny_model_dir, pool, scifact_dir, tmp_path / "out", tmp_path / "cache")
    out = run_train([*flags, "--early_stop_step", "5"])
    log = json.loads((out / "train_log.json").read_text())
    assert log["global_step"] == 5 and log["dropped_queries"] == {"no_positives": 0, "no_negatives": 0}
    assert all(loss == loss for loss in logged(out, "loss"))


def test_library_use_example_trains(tiny_model_dir, synthetic_dir, synthetic_pool, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO_ROOT / "examples" / "library_use.py"), "--model_name_or_path", str(tiny_model_dir),
           "--output_dir", str(out), "--pool", str(synthetic_pool), "--collection", str(synthetic_dir),
           "--token_cache_dir", str(tmp_path / "cache"), "--per_device_train_batch_size", "4",
           "--train_n_passages", "3", "--max_steps", "2", "--report_to", "none", "--save_strategy", "no"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    AutoModel.from_pretrained(out)
    assert DenseModelForInference.build(str(out)).lm_q is not None


_RECORD_TRUE_LOSS = '''
import json, os, sys
import torch
import torch.nn.functional as F
from tevatron_tele.backends.tevatron_v1 import modeling

forward, true_losses = modeling.TeleDenseModel.forward, []

def recording_forward(self, *args, **kwargs):
    out = forward(self, *args, **kwargs)
    if self.training and out.loss is not None:  # the loss over the gathered batch, before any scaling
        target = torch.arange(out.scores.size(0)) * (out.p_reps.size(0) // out.q_reps.size(0))
        true_losses.append(F.cross_entropy(out.scores, target).item())
    return out

modeling.TeleDenseModel.forward = recording_forward
from tevatron_tele.driver.train import main
main(sys.argv[1:])
with open(os.environ["TRUE_LOSS_FILE"] + "." + os.environ["RANK"], "w") as f:
    json.dump(true_losses, f)
'''


def test_logged_loss_under_negatives_x_device_is_the_true_loss(tiny_model_dir, synthetic_dir, synthetic_pool,
                                                               tmp_path):
    """The model multiplies its loss by the world size (DDP averages gradients over processes); the logged loss
    is the loss itself, the cross-entropy over the gathered batch, not world size times it."""
    out = tmp_path / "out"
    script = tmp_path / "record.py"
    script.write_text(_RECORD_TRUE_LOSS)
    flags = common_flags(tiny_model_dir, synthetic_pool, synthetic_dir, out, tmp_path / "cache")
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TRUE_LOSS_FILE": str(tmp_path / "true")}
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_port", str(29500 + (os.getpid() + 7) % 1000),
           str(script), *flags, "--negatives_x_device", "--num_train_epochs", "1", "--early_stop_step", "3"]
    result = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    true = [json.loads((tmp_path / f"true.{rank}").read_text()) for rank in (0, 1)]
    assert len(true[0]) == 3 and true[0] == pytest.approx(true[1], rel=1e-5)  # every process sees the whole batch
    assert logged(out, "loss") == pytest.approx(true[0], rel=1e-4)
    log = json.loads((out / "train_log.json").read_text())
    assert log["train_loss"] == pytest.approx(sum(true[0]) / 3, rel=1e-4)
