"""Encode token-cached texts (corpus, queries, or queries' positive passages) with either backend's encoder.

Items are batched in order of token length (longest first, as sentence-transformers' `encode` orders its inputs), so a
batch holds items of similar length and pads to its own longest item, not to max_len; results are put back in the
requested order. Where lengths vary (MS MARCO) this saves most of the padding a batch in corpus order carries
(BENCHMARKS.md, "Encoding speed"). Work can be split into shards (`shard_index` / `num_shards`, and torchrun's RANK /
WORLD_SIZE on top): each shard is a contiguous slice of the items written to its own file, and a shard whose file exists
is not computed again.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..data.examples import InputFormat
from ..data.token_cache import TokenCache
from ..utils import PathLike
from .embeddings import is_complete, save_embeddings, shard_prefix

logger = logging.getLogger(__name__)

DTYPES = {"float16": np.float16, "float32": np.float32}
AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


def _positions(token_cache: TokenCache, positions_or_ids: Sequence[int] | Sequence[str] | None) -> np.ndarray:
    if positions_or_ids is None:
        return np.arange(len(token_cache), dtype=np.int64)
    items = list(positions_or_ids)
    if items and isinstance(items[0], str):
        return np.asarray([token_cache.position(i) for i in items], dtype=np.int64)
    return np.asarray(items, dtype=np.int64)


def encode_texts(
    model: Any,
    tokenizer: Any,
    token_cache: TokenCache,
    positions_or_ids: Sequence[int] | Sequence[str] | None = None,
    *,
    is_query: bool,
    max_len: int,
    batch_size: int = 64,
    dtype: str = "float32",
    amp: str | None = None,
    progress: bool = True,
    sort_by_length: bool = True,
) -> np.ndarray:
    """Embeddings of the cached items (all of them when `positions_or_ids` is None), one row per item.

    Args:
        model: a backend's encoder (`backends.load_encoder`), called as both Tevatrons' models are
            (`model(query=batch).q_reps`, `model(passage=batch).p_reps`); its `input_format` (prefixes, appended EOS)
            shapes the inputs.
        tokenizer: its tokenizer (pads each batch).
        token_cache: the items' token cache (`data.token_cache`).
        positions_or_ids: the items, as cache positions or ids (default: the whole cache).
        is_query: encode with the query side of the model.
        max_len, batch_size: tokens per item, items per forward pass.
        dtype: the returned type, float16 or float32.
        amp: "fp16" / "bf16" autocast when the model is on a GPU; ignored on CPU.
        progress: show a progress bar.
        sort_by_length: batch items of similar length together (longest first); False batches them in the order given,
            each batch still padded to its own longest item (same embeddings, more padding).

    Returns:
        One row per item, in the order of `positions_or_ids`.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if amp is not None and amp not in AMP_DTYPES:
        raise ValueError(f"amp must be one of {sorted(AMP_DTYPES)} or None, got {amp!r}")
    positions = _positions(token_cache, positions_or_ids)
    lengths = np.asarray(token_cache.lengths)[positions]
    # longest first: the largest batch's memory shows at once
    order = np.argsort(-lengths, kind="stable") if sort_by_length else np.arange(len(positions))
    input_format = getattr(model, "input_format", None) or InputFormat()
    out: np.ndarray | None = None
    model.eval()
    bar = tqdm(total=len(positions), desc="encode queries" if is_query else "encode passages", unit="text",
               disable=not progress)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        features = [input_format.build(tokenizer, token_cache[int(positions[r])], max_len, is_query=is_query)
                    for r in rows]
        reps = _forward(model, tokenizer.pad(features, padding="longest", return_tensors="pt"), is_query, amp)
        if out is None:
            out = np.empty((len(positions), reps.shape[1]), dtype=DTYPES[dtype])
        out[rows] = reps
        bar.update(len(rows))
    bar.close()
    return out if out is not None else _empty(model, dtype)


def _forward(model: Any, batch, is_query: bool, amp: str | None) -> np.ndarray:
    """One padded batch through the encoder's query or passage side, as float32 rows on the CPU."""
    device = _device_of(model)
    batch = {k: v.to(device) for k, v in batch.items()}
    use_amp = amp is not None and device.type == "cuda"
    with torch.no_grad(), torch.autocast(device.type, dtype=AMP_DTYPES.get(amp, torch.float16), enabled=use_amp):
        reps = model(query=batch).q_reps if is_query else model(passage=batch).p_reps
    return reps.float().cpu().numpy()


def _empty(model, dtype: str) -> np.ndarray:
    """The embeddings of no item: zero rows of the model's width."""
    lm = getattr(model, "lm_q", None) or getattr(model, "encoder", None)
    dim = getattr(getattr(lm, "config", None), "hidden_size", 0)
    return np.empty((0, dim), dtype=DTYPES[dtype])


def resolve_device(device: str) -> str:
    """The device an option names, with 'auto' made concrete.

    Args:
        device: cpu, cuda, cuda:N or auto.

    Returns:
        `device`, or for 'auto' cuda when a GPU is visible and cpu otherwise.
    """
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def distributed_shard(shard_index: int = 0, num_shards: int = 1) -> tuple[int, int]:
    """Refine a shard by torchrun's RANK / WORLD_SIZE: each process takes one sub-shard.

    Args:
        shard_index, num_shards: the shard asked for, and shards asked for.

    Returns:
        (this process' shard index, shards in all).
    """
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index {shard_index} is outside 0..{num_shards - 1}")
    return shard_index * world + rank, num_shards * world


def encode_to_file(
    token_cache: TokenCache,
    prefix: PathLike,
    *,
    is_query: bool,
    ids: Sequence[str] | None = None,
    shard_index: int = 0,
    num_shards: int = 1,
    max_len: int = 128,
    batch_size: int = 64,
    dtype: str = "float16",
    amp: str | None = None,
    model: Any = None,
    tokenizer: Any = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Encode one shard of the items (`ids`, or the whole cache) to `<prefix>[.shard-i-of-n].{npy,ids}`.

    Args:
        token_cache: the items' token cache (`data.token_cache`).
        prefix: the output prefix.
        ids: the items to encode (default: the whole cache).
        shard_index, num_shards: this process' shard, and shards in all.
        is_query, max_len, batch_size, amp, progress: as for `encode_texts`.
        dtype: the stored type, float16 or float32.
        model, tokenizer: a loaded encoder (`backends.load_encoder`) and its tokenizer, unless the shard exists.
        overwrite: encode even when the shard exists (which is otherwise kept as it is).

    Returns:
        The shard's prefix.
    """
    out_prefix = shard_prefix(prefix, shard_index, num_shards)
    if is_complete(out_prefix) and not overwrite:
        logger.info("embeddings %s exist; not encoding again", out_prefix)
        return out_prefix
    positions = _positions(token_cache, ids)
    mine = np.array_split(positions, num_shards)[shard_index]
    if model is None or tokenizer is None:
        raise ValueError(f"{out_prefix}: encoding needs a loaded model and tokenizer (backends.load_encoder)")
    started = time.perf_counter()
    logger.info("encoding %d %s (shard %d of %d) to %s", len(mine), "queries" if is_query else "passages",
                shard_index, num_shards, out_prefix)
    array = encode_texts(model, tokenizer, token_cache, mine, is_query=is_query, max_len=max_len,
                         batch_size=batch_size, dtype=dtype, amp=amp, progress=progress)
    all_ids = token_cache.ids
    save_embeddings(out_prefix, array, [all_ids[int(p)] for p in mine])
    logger.info("encoded %d items in %.1f s", len(mine), time.perf_counter() - started)
    return out_prefix
