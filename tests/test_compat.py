"""Each transformers-5 accommodation for tevatron 0.1.0 does what it says, and is needed."""
from __future__ import annotations

import pytest
import torch
from tevatron.arguments import DenseTrainingArguments
from tevatron.data import TrainDataset
from tevatron.modeling import DenseModel
from tevatron.trainer import DenseTrainer
from transformers import AutoTokenizer

from tevatron_tele.backends.tevatron_v1.compat import (
    CompatDenseTrainer,
    CompatTrainingArguments,
    GradCacheUnsupportedError,
)
from tevatron_tele.data.examples import build_example

TEXTS = ["", "alpha", "the quick brown fox jumps over the lazy dog " * 6]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.mark.parametrize("max_len", [3, 8, 32, 512])
def test_build_example_equals_direct_tokenization(tokenizer, max_len):
    for text in TEXTS:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        direct = tokenizer(text, truncation=True, max_length=max_len)["input_ids"]
        assert build_example(tokenizer, ids, max_len) == {"input_ids": direct}


def test_build_example_accepts_numpy_ids_and_minilm(minilm_dir):
    import numpy as np

    tok = AutoTokenizer.from_pretrained(minilm_dir)
    text = "Mean pooling of MiniLM vectors, compared with CLS pooling. " * 10
    ids = np.asarray(tok(text, add_special_tokens=False)["input_ids"], dtype=np.int32)
    assert build_example(tok, ids, 64)["input_ids"] == tok(text, truncation=True, max_length=64)["input_ids"]


def test_build_example_refuses_room_for_nothing(tokenizer):
    with pytest.raises(ValueError, match="max_len=1"):
        build_example(tokenizer, [5, 6], 1)


def test_tevatron_encode_plus_is_gone(tokenizer):
    """Why build_example exists: Tevatron's own example builder fails on transformers 5."""
    ds = TrainDataset.__new__(TrainDataset)
    ds.tok = tokenizer
    with pytest.raises(AttributeError):
        ds.create_one_example([5, 6, 7])


def _tiny_dense_model(tiny_model_dir, args):
    from tevatron.arguments import DataArguments, ModelArguments

    return DenseModel.build(ModelArguments(model_name_or_path=str(tiny_model_dir)),
                            DataArguments(train_n_passages=2), args)


def _batch(tokenizer, n):
    enc = tokenizer(["alpha beta"] * n, padding="max_length", max_length=8, return_tensors="pt")
    return dict(enc)


def test_compute_loss_accepts_new_arguments(tiny_model_dir, tokenizer, tmp_path):
    args = CompatTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=2, report_to="none")
    model = _tiny_dense_model(tiny_model_dir, args)
    trainer = CompatDenseTrainer(model=model, args=args)
    model.train()
    inputs = (_batch(tokenizer, 2), _batch(tokenizer, 4))
    torch.manual_seed(0)  # same dropout masks for both calls
    loss, outputs = trainer.compute_loss(model, inputs, return_outputs=True, num_items_in_batch=4)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert outputs.scores.shape == (2, 4)
    torch.manual_seed(0)
    assert trainer.compute_loss(model, inputs, num_items_in_batch=None).item() == pytest.approx(loss.item())
    # Tevatron's own signature is what Trainer can no longer call.
    with pytest.raises(TypeError):
        DenseTrainer.compute_loss(trainer, model, inputs, return_outputs=False, num_items_in_batch=4)


def _lr_after_steps(trainer_cls, args, model, steps, total=100):
    trainer = trainer_cls(model=model, args=args)
    trainer.create_optimizer_and_scheduler(num_training_steps=total)
    for _ in range(steps):
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    return trainer.lr_scheduler.get_last_lr()[0]


def test_warmup_ratio_is_applied(tiny_model_dir, tmp_path):
    peak = 1e-3
    args = CompatTrainingArguments(output_dir=str(tmp_path), learning_rate=peak, warmup_ratio=0.1,
                                   report_to="none")
    model = _tiny_dense_model(tiny_model_dir, args)
    assert args.get_warmup_steps(100) == 10
    assert _lr_after_steps(CompatDenseTrainer, args, model, 1) == pytest.approx(peak * 1 / 10)
    assert _lr_after_steps(CompatDenseTrainer, args, model, 10) == pytest.approx(peak)
    # an explicit --warmup_steps still wins, as in transformers 4
    args_steps = CompatTrainingArguments(output_dir=str(tmp_path), learning_rate=peak, warmup_ratio=0.1,
                                         warmup_steps=4, report_to="none")
    assert args_steps.get_warmup_steps(100) == 4


def test_warmup_ratio_is_ignored_without_the_fix(tiny_model_dir, tmp_path):
    """Why the fix exists: Tevatron's arguments on transformers 5 start at the peak LR."""
    peak = 1e-3
    args = DenseTrainingArguments(output_dir=str(tmp_path), learning_rate=peak, warmup_ratio=0.1, report_to="none")
    model = _tiny_dense_model(tiny_model_dir, args)
    assert _lr_after_steps(CompatDenseTrainer, args, model, 1) == pytest.approx(peak * 99 / 100)


def test_grad_cache_is_refused_clearly(tiny_model_dir, tmp_path):
    with pytest.raises(GradCacheUnsupportedError, match="--grad_cache is not supported.*not published on PyPI"):
        CompatTrainingArguments(output_dir=str(tmp_path), grad_cache=True)
    args = DenseTrainingArguments(output_dir=str(tmp_path), grad_cache=True, report_to="none")
    with pytest.raises(GradCacheUnsupportedError, match="--grad_cache"):
        CompatDenseTrainer(model=_tiny_dense_model(tiny_model_dir, args), args=args)


def test_grad_cache_refused_by_the_driver(tmp_path):
    from tevatron_tele.driver.train import parse_args

    with pytest.raises(GradCacheUnsupportedError):
        parse_args(["--model_name_or_path", "x", "--output_dir", str(tmp_path), "--grad_cache"])
