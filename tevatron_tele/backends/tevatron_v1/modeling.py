"""Tevatron 0.1.0's bi-encoder with a choice of pooling, cosine scores, a temperature and false-negative masking.

A saved model directory holds the HF encoder (or `query_model/` and `passage_model/` when untied, each with tokenizer
files), the tokenizer files, Tevatron's `pooler.pt` / `pooler_config.json` when a pooler is used, and `tele_config.json`
with the options below, which `load_encoder` reads back.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tevatron.modeling import DenseModel, DenseModelForInference, DenseOutput
from torch import Tensor, nn
from transformers import AutoTokenizer

from ...model_config import batch_positive_mask, pad_keys_across_ranks, read_tele_config
from ...model_export import write_model_configs
from .arguments import POOLINGS

logger = logging.getLogger(__name__)

# Tevatron 0.1.0 has no last-token pooling; it is current Tevatron's (backend v2).


def pool_hidden(hidden: Tensor, attention_mask: Tensor | None, pooling: str) -> Tensor:
    """One vector per sequence.

    Args:
        hidden: the encoder's last hidden states [batch, length, dim].
        attention_mask: [batch, length], or None (every token counts).
        pooling: 'cls' (the first token) or 'mean' (over the unmasked tokens).

    Returns:
        [batch, dim].
    """
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        if attention_mask is None:
            return hidden.mean(dim=1)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    raise ValueError(f"unknown pooling '{pooling}', expected one of {POOLINGS}")


class _TeleEncoding:
    """Pooling, optional linear pooler and optional L2 normalisation, shared by training and inference."""

    pooling: str = "cls"
    normalize: bool = False

    def _represent(self, lm: nn.Module, batch, side: str) -> tuple[Tensor | None, Tensor | None]:
        if batch is None:
            return None, None
        out = lm(**batch, return_dict=True)
        hidden = out.last_hidden_state
        reps = pool_hidden(hidden, batch.get("attention_mask"), self.pooling)
        if self.pooler is not None:
            # Tevatron's LinearPooler projects position 0 of what it gets; hand it the pooled vector there.
            reps = self.pooler(**{side: reps.unsqueeze(1)})
        if self.normalize:
            reps = F.normalize(reps, p=2, dim=-1)
        return hidden, reps

    def tele_config(self) -> dict:
        return {"pooling": self.pooling, "normalize": bool(self.normalize),
                "temperature": float(getattr(self, "temperature", 1.0)),
                "untie_encoder": self.lm_q is not self.lm_p, "add_pooler": self.pooler is not None, "backend": "v1"}


class TeleDenseModel(_TeleEncoding, DenseModel):
    """Training model: scores = q.p / temperature; softmax over own positive, own negatives, in-batch passages.

    Options come from `model_args` (pooling, normalize, temperature) and `data_args.mask_batch_positives`, or as keyword
    arguments. With masking, forward takes `passage_keys` (one int key per passage) and `query_positive_keys` (keys of
    each query's judged positives, -1 padded); a passage whose key is a positive of a query, other than that query's own
    target, is removed from that query's softmax.
    """

    def __init__(self, lm_q, lm_p, pooler=None, model_args=None, data_args=None, train_args=None, *,
                 pooling: str | None = None, normalize: bool | None = None, temperature: float | None = None,
                 mask_batch_positives: bool | None = None):
        super().__init__(lm_q=lm_q, lm_p=lm_p, pooler=pooler, model_args=model_args, data_args=data_args,
                         train_args=train_args)
        self.pooling = pooling if pooling is not None else getattr(model_args, "pooling", "cls")
        self.normalize = normalize if normalize is not None else getattr(model_args, "normalize", False)
        self.temperature = temperature if temperature is not None else getattr(model_args, "temperature", 1.0)
        self.mask_batch_positives = (mask_batch_positives if mask_batch_positives is not None
                                     else getattr(data_args, "mask_batch_positives", False))
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling '{self.pooling}', expected one of {POOLINGS}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    def encode_query(self, qry):
        return self._represent(self.lm_q, qry, "q")

    def encode_passage(self, psg):
        return self._represent(self.lm_p, psg, "p")

    def forward(self, query=None, passage=None, passage_keys: Tensor | None = None,
                query_positive_keys: Tensor | None = None):
        q_hidden, q_reps = self.encode_query(query)
        p_hidden, p_reps = self.encode_passage(passage)
        if q_reps is None or p_reps is None:
            return DenseOutput(q_reps=q_reps, p_reps=p_reps)
        if not self.training:
            return DenseOutput(scores=(q_reps * p_reps).sum(1), q_reps=q_reps, p_reps=p_reps)

        x_device = self.train_args.negatives_x_device
        if x_device:
            q_reps, p_reps = self.dist_gather_tensor(q_reps), self.dist_gather_tensor(p_reps)
            if passage_keys is not None:
                passage_keys = self.dist_gather_tensor(passage_keys)
                query_positive_keys = self.dist_gather_tensor(pad_keys_across_ranks(query_positive_keys))

        scores = torch.matmul(q_reps, p_reps.transpose(0, 1)) / self.temperature
        n_passages = p_reps.size(0) // q_reps.size(0)
        target = torch.arange(scores.size(0), device=scores.device, dtype=torch.long) * n_passages
        if self.mask_batch_positives and passage_keys is not None:
            mask = batch_positive_mask(query_positive_keys, passage_keys, target)
            scores = scores.masked_fill(mask, torch.finfo(scores.dtype).min)
        loss = self.cross_entropy(scores, target)
        if x_device:
            # DDP averages gradients over processes; undo that here. The logged loss is the loss itself:
            # Tevatron's DenseTrainer.training_step divides what it returns by the world size (tested in
            # tests/test_train.py), so no trainer of this package divides again.
            loss = loss * self.world_size
        return DenseOutput(loss=loss, scores=scores, q_reps=q_reps, p_reps=p_reps)

    def save(self, output_dir: str) -> None:
        """Write the encoder(s), the pooler if any and tele_config.json (Tevatron's hook, see `save_encoders`).

        Args:
            output_dir: the model folder.
        """
        save_encoders(self, output_dir)


class TeleDenseModelForInference(_TeleEncoding, DenseModelForInference):
    """Inference model: `encode_query` / `encode_passage` return (hidden, reps) with pooling + normalisation."""

    def __init__(self, lm_q, lm_p, pooler=None, *, pooling: str = "cls", normalize: bool = False,
                 temperature: float = 1.0, **kwargs):
        super().__init__(lm_q=lm_q, lm_p=lm_p, pooler=pooler, **kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling '{pooling}', expected one of {POOLINGS}")
        self.pooling, self.normalize, self.temperature = pooling, normalize, temperature

    @torch.no_grad()
    def encode_query(self, qry):
        return self._represent(self.lm_q, qry, "q")

    @torch.no_grad()
    def encode_passage(self, psg):
        return self._represent(self.lm_p, psg, "p")

    @classmethod
    def build(cls, model_name_or_path: str | None = None, model_args: Any = None, data_args: Any = None,
              train_args: Any = None, *, pooling: str | None = None, normalize: bool | None = None,
              **hf_kwargs: Any) -> TeleDenseModelForInference:
        """Tevatron's loader (tied or untied, with or without pooler) plus tele_config.json.

        Args:
            model_name_or_path: the model folder (default: `model_args.model_name_or_path`).
            model_args, data_args, train_args: Tevatron's signature; only `model_args` is read.
            pooling, normalize: override the saved pooling (for models saved without one) and normalisation.
            **hf_kwargs: passed to Tevatron's loader.

        Returns:
            The model.
        """
        if model_name_or_path is None:
            model_name_or_path = model_args.model_name_or_path
        base = DenseModelForInference.build(model_name_or_path, **hf_kwargs)
        config = read_tele_config(model_name_or_path)
        return cls(lm_q=base.lm_q, lm_p=base.lm_p, pooler=base.pooler,
                   pooling=pooling if pooling is not None else config.get("pooling", "cls"),
                   normalize=normalize if normalize is not None else config.get("normalize", False),
                   temperature=config.get("temperature", 1.0))


def save_encoders(model: _TeleEncoding, output_dir: str | os.PathLike, tokenizer: Any = None) -> None:
    """Save in Tevatron's layout (root or query_model/ + passage_model/), pooler, tele_config.json and, when given, the
    tokenizer (in the root and, untied, in each encoder folder so each loads alone); a tied model without a pooler is
    also written as a sentence-transformers model (`model_export`).

    Args:
        model: a training or inference model.
        output_dir: the model folder.
        tokenizer: the tokenizer, or None.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if model.lm_q is not model.lm_p:
        for name, lm in (("query_model", model.lm_q), ("passage_model", model.lm_p)):
            lm.save_pretrained(output_dir / name)
            if tokenizer is not None:
                tokenizer.save_pretrained(output_dir / name)
    else:
        model.lm_q.save_pretrained(output_dir)
    if model.pooler is not None:
        model.pooler.save_pooler(str(output_dir))
    if tokenizer is not None:
        tokenizer.save_pretrained(output_dir)
    # a training model knows its passage length (Tevatron's data_args); an inference model does not
    write_model_configs(output_dir, model.tele_config(), embedding_dimension=model.lm_p.config.hidden_size,
                        max_seq_length=getattr(getattr(model, "data_args", None), "p_max_len", None))


def load_encoder(path: str | os.PathLike, device: str | torch.device = "cpu", *, pooling: str | None = None,
                 normalize: bool | None = None) -> tuple[TeleDenseModelForInference, object]:
    """Load a saved model (tied or untied, with or without a pooler) in eval mode, and its tokenizer.

    Args:
        path: the model folder.
        device: where to put it.
        pooling, normalize: override the saved pooling and normalisation.

    Returns:
        (model, tokenizer).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model directory not found: {path}")
    model = TeleDenseModelForInference.build(str(path), pooling=pooling, normalize=normalize)
    tokenizer_dir = path
    if not any((path / f).exists() for f in ("tokenizer_config.json", "tokenizer.json", "vocab.txt")):
        tokenizer_dir = path / "query_model"
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    model.to(device).eval()
    return model, tokenizer
