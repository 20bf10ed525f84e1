"""Exact inner-product top-k search over corpus embeddings that need not fit in memory.

The corpus is read shard by shard and, inside a shard, in row chunks mapped from the `.npy` file only while they are
scored, so resident memory stays near `memory_budget_mb` whatever the corpus size. Each chunk's top-k is merged into a
running top-k; since every document is scored exactly once, the merged list is the exact top-k. Two interchangeable
backends: FAISS (`faiss.knn`, GPU when a GPU build is installed) and torch (matmul + topk, CPU or CUDA).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..data.names import SEARCH_BACKENDS
from ..data.trec import Run, write_run
from ..utils import PathLike
from .embeddings import expand_prefixes, ids_path, load_embeddings, npy_path

logger = logging.getLogger(__name__)

BACKENDS = SEARCH_BACKENDS
DEFAULT_MEMORY_BUDGET_MB = 1024


@dataclass
class _NpyInfo:
    path: Path
    shape: tuple[int, int]
    dtype: np.dtype
    offset: int


def _npy_info(prefix: PathLike) -> _NpyInfo:
    path = npy_path(prefix)
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(f)
        offset = f.tell()
    if fortran or len(shape) != 2:
        raise ValueError(f"{path}: expected a C-ordered 2-d array, got shape {shape} (fortran={fortran})")
    return _NpyInfo(path, (int(shape[0]), int(shape[1])), np.dtype(dtype), offset)


def _chunks(info: _NpyInfo, rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (first row, float32 copy) per chunk; the mapping is closed before the next chunk."""
    n, dim = info.shape
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        offset = info.offset + start * dim * info.dtype.itemsize
        mapped = np.memmap(info.path, dtype=info.dtype, mode="r", offset=offset, shape=(stop - start, dim))
        block = np.array(mapped, dtype=np.float32)
        del mapped
        yield start, block


def plan_chunks(dim: int, n_queries: int, depth: int, memory_budget_mb: float) -> tuple[int, int]:
    """The block sizes that keep the working set within the budget.

    Working set per block: query block (q*dim*4), score matrix (q*c*4), corpus rows mapped + as float32 (c*dim*6 for
    float16 input, at most c*dim*8), running and merged top-k (q*depth*12*3). Half the budget is kept in reserve for
    allocator slack and library buffers.

    Args:
        dim, n_queries, depth: the vector size, the number of queries and the top-k depth.
        memory_budget_mb: the budget.

    Returns:
        (query rows, corpus rows) per block.
    """
    budget = memory_budget_mb * 2**20 / 2
    q = min(n_queries, 2048)
    while q > 16 and q * (dim * 4 + depth * 36) > budget / 4:
        q //= 2
    left = budget - q * (dim * 4 + depth * 36)
    c = int(left // (dim * 8 + q * 4))
    if c < max(depth, 256):
        raise ValueError(f"memory budget {memory_budget_mb} MB is too small for dim {dim}, depth {depth}")
    return q, c


def _knn(backend: str, device: str) -> tuple[Callable, Callable]:
    """(prepare a query block, top-k of prepared queries over a float32 corpus block -> (scores, int64 rows))."""
    if backend == "faiss":
        import faiss  # lazy: slow to load, and the search driver's --help and the torch backend need none of it

        if device.startswith("cuda") and hasattr(faiss, "StandardGpuResources"):
            res = faiss.StandardGpuResources()
            return np.asarray, lambda q, block, k: faiss.knn_gpu(res, q, block, k, metric=faiss.METRIC_INNER_PRODUCT)
        return np.asarray, lambda q, block, k: faiss.knn(q, block, k, metric=faiss.METRIC_INNER_PRODUCT)
    import torch  # lazy: slow to load, and the search driver's --help and the faiss backend need none of it

    def knn(queries, block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        top = torch.topk(queries @ torch.from_numpy(block).to(device).T, k, dim=1, largest=True, sorted=True)
        return top.values.cpu().numpy(), top.indices.cpu().numpy().astype(np.int64)

    return lambda q: torch.from_numpy(q).to(device), knn


def _merge(best_s: np.ndarray, best_i: np.ndarray, new_s: np.ndarray, new_i: np.ndarray, k: int):
    scores = np.concatenate([best_s, new_s], axis=1)
    index = np.concatenate([best_i, new_i], axis=1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(index, order, 1)


def search_arrays(
    query_emb: np.ndarray,
    corpus_prefixes: Sequence[PathLike] | PathLike,
    depth: int,
    *,
    backend: str = "faiss",
    device: str = "cpu",
    memory_budget_mb: float | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-`depth` of every query over the corpus embeddings, as arrays.

    Args:
        query_emb: query vectors, one row each.
        corpus_prefixes: an embeddings prefix (sharded or not), or several.
        depth: top-k depth.
        backend, device: "faiss" or "torch", and where it computes the scores ("cuda" needs a GPU build of it).
        memory_budget_mb: the working set's budget (default DEFAULT_MEMORY_BUDGET_MB).
        progress: show a progress bar.

    Returns:
        (scores, global row indices), one row per query, best first; index -1 marks an empty slot.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown search backend {backend!r}; choose one of {BACKENDS}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    infos = [_npy_info(p) for p in expand_prefixes(corpus_prefixes)]
    dim = query_emb.shape[1]
    for info in infos:
        if info.shape[1] != dim:
            raise ValueError(f"{info.path}: corpus dim {info.shape[1]} != query dim {dim}")
    n_q = query_emb.shape[0]
    q_rows, c_rows = plan_chunks(dim, n_q, depth, memory_budget_mb or DEFAULT_MEMORY_BUDGET_MB)
    total = sum(i.shape[0] for i in infos)
    logger.info("searching %d queries over %d vectors in %d shard(s): top %d, backend %s on %s, blocks %d x %d",
                n_q, total, len(infos), depth, backend, device, q_rows, c_rows)
    best_s = np.full((n_q, depth), -np.inf, dtype=np.float32)
    best_i = np.full((n_q, depth), -1, dtype=np.int64)
    # Corpus chunks outside, query blocks inside: each corpus row is read from disk once.
    bar = tqdm(total=total, desc="search", unit="doc", disable=not progress)
    base = 0
    prepare, knn = _knn(backend, device)
    query_blocks = [(q0, prepare(np.ascontiguousarray(query_emb[q0:q0 + q_rows], dtype=np.float32)))
                    for q0 in range(0, n_q, q_rows)]
    for info in infos:
        for start, chunk in _chunks(info, c_rows):
            k = min(depth, chunk.shape[0])
            for q0, queries in query_blocks:
                s, i = knn(queries, chunk, k)
                i = np.where(i >= 0, i + base + start, -1)
                q1 = q0 + s.shape[0]
                best_s[q0:q1], best_i[q0:q1] = _merge(best_s[q0:q1], best_i[q0:q1], s, i, depth)
            bar.update(chunk.shape[0])
            del chunk
        base += info.shape[0]
    bar.close()
    return best_s, best_i


def _ids_for(prefixes: list[Path], wanted: np.ndarray) -> dict[int, str]:
    """Docids of the wanted global rows, streamed from the ids files (never all held at once)."""
    wanted = np.unique(wanted[wanted >= 0])
    out: dict[int, str] = {}
    pos, base = 0, 0
    for p in prefixes:
        with open(ids_path(p), encoding="utf-8") as f:
            for row, line in enumerate(f):
                while pos < len(wanted) and wanted[pos] == base + row:
                    out[int(wanted[pos])] = line.rstrip("\n")
                    pos += 1
                if pos == len(wanted):
                    return out
        base += _npy_info(p).shape[0]
    if pos < len(wanted):
        raise ValueError(f"ids files of {[str(p) for p in prefixes]} hold fewer rows than their embeddings")
    return out


def search(
    query_emb: np.ndarray,
    query_ids: Sequence[str],
    corpus_prefixes: Sequence[PathLike] | PathLike,
    depth: int,
    *,
    backend: str = "faiss",
    device: str = "cpu",
    memory_budget_mb: float | None = None,
    progress: bool = True,
) -> Run:
    """Exact inner-product top-`depth` of every query over the corpus embeddings, as a Run.

    Args:
        query_emb: query vectors, one row each.
        query_ids: their ids.
        corpus_prefixes, depth, backend, device, memory_budget_mb, progress: as for `search_arrays`.

    Returns:
        {query id: [(docid, score), ...]}, best first.
    """
    if len(query_ids) != query_emb.shape[0]:
        raise ValueError(f"{query_emb.shape[0]} query vectors for {len(query_ids)} query ids")
    prefixes = expand_prefixes(corpus_prefixes)
    scores, index = search_arrays(query_emb, prefixes, depth, backend=backend, device=device,
                                  memory_budget_mb=memory_budget_mb, progress=progress)
    names = _ids_for(prefixes, index.ravel())
    run: Run = {}
    for qid, srow, irow in zip(query_ids, scores, index):
        run[qid] = [(names[int(i)], float(s)) for s, i in zip(srow, irow) if i >= 0]
    return run


def search_to_file(
    query_prefix: PathLike,
    corpus_prefix: PathLike | Sequence[PathLike],
    run_path: PathLike,
    depth: int,
    *,
    backend: str = "faiss",
    device: str = "cpu",
    memory_budget_mb: float | None = None,
    tag: str = "dense",
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Search with stored query (or positive-passage) embeddings and write a TREC run.

    Args:
        query_prefix: the queries' embeddings prefix.
        corpus_prefix, depth, backend, device, memory_budget_mb, progress: as for `search_arrays`.
        run_path: the run file; an existing one is kept unless `overwrite`.
        tag: the run's tag column.
        overwrite: search again.

    Returns:
        `run_path`.
    """
    run_path = Path(run_path)
    if run_path.exists() and not overwrite:
        logger.info("run %s exists; not searching again", run_path)
        return run_path
    queries, qids = [], []
    for p in expand_prefixes(query_prefix):
        emb, ids = load_embeddings(p, mmap=False)
        queries.append(emb)
        qids.extend(ids)
    started = time.perf_counter()
    run = search(np.concatenate(queries), qids, corpus_prefix, depth, backend=backend, device=device,
                 memory_budget_mb=memory_budget_mb, progress=progress)
    logger.info("searched %d queries in %.1f s; writing %s", len(qids), time.perf_counter() - started, run_path)
    write_run(run_path, run, tag=tag)
    return run_path

