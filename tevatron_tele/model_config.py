"""What a saved model folder says about itself (`tele_config.json`), and the in-batch positive mask.

Both backends write the same `tele_config.json` beside the weights, so that encoding, the runner and the analysis read a
model's pooling, normalisation and input format without knowing which Tevatron trained it. A plain Hugging Face or
Tevatron model has none: it is read as CLS pooling and dot product.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from .data.names import POOLINGS

TELE_CONFIG = "tele_config.json"


def read_tele_config(path: str | os.PathLike) -> dict:
    """Options saved beside a model.

    Args:
        path: a model folder.

    Returns:
        The parsed `tele_config.json`, or {} for a plain HF / Tevatron model (CLS pooling, dot product).
    """
    config_path = Path(path) / TELE_CONFIG
    if not config_path.is_file():
        return {}
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    if config.get("pooling", "cls") not in POOLINGS:
        raise ValueError(f"{config_path}: field 'pooling': expected one of {POOLINGS}, got {config['pooling']!r}")
    return config


def write_tele_config(path: str | os.PathLike, config: dict) -> None:
    """Write `tele_config.json` into the model folder `path`."""
    with open(Path(path) / TELE_CONFIG, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")


def batch_positive_mask(query_positive_keys: Tensor, passage_keys: Tensor, target: Tensor) -> Tensor:
    """Which in-batch passages to leave out of each query's softmax.

    Args:
        query_positive_keys: [queries, K] keys of each query's judged positives, -1 padded.
        passage_keys: [passages] key of every passage in the batch.
        target: [queries] column of each query's own positive.

    Returns:
        Bool [queries, passages]: passage j is a judged positive of query i and is not i's own target.
    """
    keys = query_positive_keys.to(passage_keys.device)
    hit = (keys.unsqueeze(-1) == passage_keys.view(1, 1, -1)) & (keys.unsqueeze(-1) >= 0)
    mask = hit.any(dim=1)
    mask[torch.arange(mask.size(0), device=mask.device), target] = False
    return mask


def pad_keys_across_ranks(keys: Tensor) -> Tensor:
    """all_gather needs equal shapes: pad every rank's [B, K] positive-key matrix to the largest K with -1.

    Args:
        keys: this process's [B, K] keys.

    Returns:
        [B, K_max] keys, K_max the widest over all processes.
    """
    width = torch.tensor([keys.size(1)], device=keys.device)
    dist.all_reduce(width, op=dist.ReduceOp.MAX)
    if int(width) > keys.size(1):
        keys = F.pad(keys, (0, int(width) - keys.size(1)), value=-1)
    return keys
