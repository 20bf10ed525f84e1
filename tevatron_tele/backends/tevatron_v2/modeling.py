"""Current Tevatron's DenseModel with in-batch positive masking, the tele save layout, and the encoder loader.

A saved model folder holds the encoder as `save_pretrained` writes it (a LoRA adapter when trained with --lora;
`tele_config.json` then names the base model), the tokenizer, and `tele_config.json`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from tevatron.retriever.modeling import DenseModel
from tevatron.retriever.modeling.encoder import EncoderOutput
from torch import Tensor
from transformers import AutoTokenizer

from ...data.examples import InputFormat
from ...model_config import POOLINGS, batch_positive_mask, pad_keys_across_ranks, read_tele_config
from ...model_export import write_model_configs

ADAPTER_CONFIG = "adapter_config.json"


class TeleDenseModel(DenseModel):
    """Current Tevatron's DenseModel; with `mask_batch_positives`, forward also takes `passage_keys` and
    `query_positive_keys` and leaves other judged positives of a query out of its softmax."""

    mask_batch_positives: bool = False

    def forward(self, query: dict | None = None, passage: dict | None = None, passage_keys: Tensor | None = None,
                query_positive_keys: Tensor | None = None):
        if not (self.training and self.mask_batch_positives and passage_keys is not None):
            return super().forward(query=query, passage=passage)
        q_reps, p_reps = self.encode_query(query), self.encode_passage(passage)
        if self.is_ddp:
            q_reps, p_reps = self._dist_gather_tensor(q_reps), self._dist_gather_tensor(p_reps)
            passage_keys = self._dist_gather_tensor(passage_keys)
            query_positive_keys = self._dist_gather_tensor(pad_keys_across_ranks(query_positive_keys))
        scores = self.compute_similarity(q_reps, p_reps)
        per_query = p_reps.size(0) // q_reps.size(0)
        target = torch.arange(scores.size(0), device=scores.device, dtype=torch.long) * per_query
        scores = scores.masked_fill(batch_positive_mask(query_positive_keys, passage_keys, target),
                                    torch.finfo(scores.dtype).min)
        loss = self.compute_loss(scores / self.temperature, target)
        if self.is_ddp:
            loss = loss * self.world_size  # as Tevatron: undo the gradient averaging over processes
        return EncoderOutput(loss=loss, scores=scores, q_reps=q_reps, p_reps=p_reps)


def build_model(model_args: Any, data_args: Any, training_args: Any) -> TeleDenseModel:
    """The training model from the base model (or a LoRA adapter on it with --lora).

    Args:
        model_args, data_args, training_args: the run's arguments (this backend's).

    Returns:
        The model.
    """
    dtype = torch.bfloat16 if training_args.bf16 else torch.float16 if training_args.fp16 else torch.float32
    model = TeleDenseModel.build(model_args, training_args, cache_dir=model_args.cache_dir, dtype=dtype,
                                 attn_implementation=model_args.attn_implementation)
    model.mask_batch_positives = bool(data_args.mask_batch_positives)
    model.tele_input = {"query_prefix": data_args.query_prefix, "passage_prefix": data_args.passage_prefix,
                        "append_eos_token": bool(data_args.append_eos_token),
                        "base_model_name_or_path": str(Path(model_args.model_name_or_path).resolve())
                        if Path(model_args.model_name_or_path).exists() else model_args.model_name_or_path,
                        "lora": bool(model_args.lora or model_args.lora_name_or_path)}
    model.passage_max_len = data_args.passage_max_len  # the sentence-transformers max_seq_length of its saves
    return model


def save_model(model: DenseModel, output_dir: str | os.PathLike, tokenizer: Any = None) -> None:
    """The encoder (or its LoRA adapter), the tokenizer and tele_config.json into `output_dir`; without LoRA or an
    appended EOS token the folder is also a sentence-transformers model (`model_export`).

    Args:
        model: the model.
        output_dir: the model folder.
        tokenizer: saved beside it, when given.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(str(output_dir))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(output_dir))
    extra = dict(getattr(model, "tele_input", {}))
    if not extra.get("lora"):
        extra.pop("base_model_name_or_path", None)
    config = {"pooling": model.pooling, "normalize": bool(model.normalize), "temperature": float(model.temperature),
              "untie_encoder": False, "add_pooler": False, "backend": "v2", **extra}
    write_model_configs(output_dir, config, embedding_dimension=model.encoder.config.hidden_size,
                        max_seq_length=getattr(model, "passage_max_len", None))


def load_encoder(path: str | os.PathLike, device: str | torch.device = "cpu", *, pooling: str | None = None,
                 normalize: bool | None = None, attn_implementation: str = "sdpa", query_prefix: str | None = None,
                 passage_prefix: str | None = None, append_eos_token: bool | None = None) -> tuple[DenseModel, object]:
    """A saved model (or a plain HF model, or a LoRA adapter folder) in eval mode, and its tokenizer.

    Args:
        path: the model folder.
        device: where to put it.
        attn_implementation: the attention kernel.
        pooling, normalize, query_prefix, passage_prefix, append_eos_token: override the saved values.

    Returns:
        (model, tokenizer); `model.input_format` carries the prefixes and EOS switch.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model directory not found: {path}")
    if (path / "query_model").is_dir():
        raise ValueError(f"{path}: untied query/passage encoders (a tevatron 0.1.0 model); encode it with the v1 "
                         "backend")
    config = read_tele_config(path)
    pooling = pooling if pooling is not None else config.get("pooling", "cls")
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling '{pooling}', expected one of {POOLINGS}")
    normalize = normalize if normalize is not None else config.get("normalize", False)
    kwargs = {"attn_implementation": attn_implementation}
    if (path / ADAPTER_CONFIG).is_file():
        with open(path / ADAPTER_CONFIG, encoding="utf-8") as f:
            base = config.get("base_model_name_or_path") or json.load(f)["base_model_name_or_path"]
        model = DenseModel.load(base, pooling=pooling, normalize=normalize, lora_name_or_path=str(path), **kwargs)
    else:
        model = DenseModel.load(str(path), pooling=pooling, normalize=normalize, **kwargs)
    model.temperature = config.get("temperature", 1.0)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token_id = tokenizer.eos_token_id
    def saved(value, key, default):
        return value if value is not None else config.get(key, default)

    model.input_format = InputFormat.from_texts(tokenizer, saved(query_prefix, "query_prefix", ""),
                                                saved(passage_prefix, "passage_prefix", ""),
                                                saved(append_eos_token, "append_eos_token", False))
    model.to(device).eval()
    return model, tokenizer
