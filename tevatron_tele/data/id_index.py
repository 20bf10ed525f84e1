"""Document id -> row look-up for corpora too large for a Python dict of every id.

The index holds each id's 64-bit hash, sorted (uint64), and the row each sorted hash came from: 12 bytes per id
instead of a dict entry and a string (about 100 bytes); both are `.npy` files, memory-mapped on open. Every answer
is checked against the real id column, so colliding ids are told apart by scanning the run of equal hashes. The hash
is XXH64 (seed 0) of the id's UTF-8 bytes: stable across runs, platforms and versions, unlike the salted `hash()`.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import xxhash

from ..utils import PathLike

HASHES_FILE = "id_hashes.npy"
ROWS_FILE = "id_rows.npy"


def _digest(docid: str) -> int:
    # surrogatepass: an id with a lone surrogate (a JSON "\\ud800" escape) still gets a hash instead of an error
    return xxhash.xxh64_intdigest(docid.encode("utf-8", "surrogatepass"))


def hash_ids(ids: Sequence[str]) -> np.ndarray:
    """The 64-bit hash of each id, as `IdIndex` stores them.

    Args:
        ids: the ids.

    Returns:
        A uint64 array, one hash per id.
    """
    return np.fromiter(map(_digest, ids), dtype=np.uint64, count=len(ids))


def _take(ids: Sequence[str], rows: np.ndarray) -> list[str]:
    """ids[rows] as a list: one vectorised call where the column offers `take` (an Arrow view), else a loop."""
    take = getattr(ids, "take", None)
    return take(rows) if take is not None else [ids[int(r)] for r in rows]


class IdIndex:
    """Row of each id of an id column, through sorted hashes checked against the column itself.

    Args:
        hashes: the ids' hashes, sorted ascending (equal hashes in row order).
        rows: rows[k] is the row whose id has hashes[k].
        ids: the id column the rows point into (a list, or a read-only view of an on-disk column).
        folder: where the arrays were loaded from, if anywhere.
    """

    def __init__(self, hashes: np.ndarray, rows: np.ndarray, ids: Sequence[str], folder: Path | None = None) -> None:
        if not len(hashes) == len(rows) == len(ids):
            raise ValueError(f"id index of {len(hashes)} hashes and {len(rows)} rows for {len(ids)} ids")
        self._hashes = hashes
        self._rows = rows
        self._ids = ids
        self.folder = folder

    @classmethod
    def build(cls, chunks: Iterable[Sequence[str]], ids: Sequence[str], folder: PathLike | None = None) -> IdIndex:
        """Index the ids given in chunks (only their hashes are kept: 8 bytes per id in memory).

        Args:
            chunks: the ids in row order, a chunk at a time (concatenated, they are `ids`).
            ids: the id column the index answers for (checks hits, finds duplicates).
            folder: if given, the arrays are saved there and the returned index memory-maps them.

        Returns:
            The index.
        """
        parts = [hash_ids(chunk) for chunk in chunks]
        hashes = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
        del parts
        # stable: among equal hashes the earlier row comes first, so a duplicate's first occurrence is met first
        order = np.argsort(hashes, kind="stable")
        rows = order.astype(np.uint32 if len(order) <= np.iinfo(np.uint32).max else np.int64)
        hashes = hashes[order]
        del order
        if folder is None:
            return cls(hashes, rows, ids)
        folder = Path(folder)
        np.save(folder / HASHES_FILE, hashes)
        np.save(folder / ROWS_FILE, rows)
        return cls.open(folder, ids)

    @classmethod
    def open(cls, folder: PathLike, ids: Sequence[str]) -> IdIndex:
        """Memory-map an index saved by `build`: O(1) in the number of ids.

        Args:
            folder: the folder holding `id_hashes.npy` and `id_rows.npy`.
            ids: the id column it was built from.

        Returns:
            The index.
        """
        folder = Path(folder)
        # plain ndarrays over the mappings: indexing an np.memmap costs a Python call per item
        hashes = np.load(folder / HASHES_FILE, mmap_mode="r").view(np.ndarray)
        rows = np.load(folder / ROWS_FILE, mmap_mode="r").view(np.ndarray)
        return cls(hashes, rows, ids, folder)

    def __len__(self) -> int:
        return len(self._rows)

    def position(self, docid: str) -> int:
        """The row of `docid`.

        Args:
            docid: the id.

        Returns:
            Its row in the id column (KeyError when absent).
        """
        if isinstance(docid, str):
            # a np.uint64 (a Python int makes numpy convert the whole array) and the method: ~1 µs a search
            h = np.uint64(_digest(docid))
            k = int(self._hashes.searchsorted(h))
            while k < len(self._hashes) and self._hashes[k] == h:  # a second step only where ids' hashes collide
                row = int(self._rows[k])
                if self._ids[row] == docid:
                    return row
                k += 1
        raise KeyError(f"id {docid!r} is not among the {len(self)} indexed ids")

    __getitem__ = position

    def __contains__(self, docid: object) -> bool:
        try:
            self.position(docid)  # type: ignore[arg-type]
        except KeyError:
            return False
        return True

    def positions(self, docids: Sequence[str], missing: int | None = None) -> np.ndarray:
        """The rows of many ids at once (hashing, search and check are vectorised).

        Args:
            docids: the ids.
            missing: the row given to an absent id; None raises KeyError instead.

        Returns:
            An int64 array, one row per id.
        """
        n = len(self._hashes)
        if n == 0 or len(docids) == 0:
            if len(docids) and missing is None:
                self.position(docids[0])
            return np.full(len(docids), -1 if missing is None else missing, dtype=np.int64)
        wanted = hash_ids(docids)
        k = np.minimum(np.searchsorted(self._hashes, wanted), n - 1)
        hit = self._hashes[k] == wanted
        rows = np.where(hit, self._rows[k], -1).astype(np.int64)
        candidates = np.flatnonzero(hit)
        stored = _take(self._ids, rows[candidates])
        hit[candidates] = [s == docids[int(j)] for j, s in zip(candidates, stored)]
        for j in np.flatnonzero(~hit):  # absent, or a collision whose first row holds another id: scan its run
            try:
                rows[j] = self.position(docids[int(j)])
            except KeyError:
                if missing is None:
                    raise
                rows[j] = missing
        return rows

    def duplicates(self) -> list[tuple[int, int]]:
        """Rows whose id already occurs at an earlier row.

        Returns:
            (row, row of the id's first occurrence) for each repeat, by row.
        """
        same = np.flatnonzero(self._hashes[1:] == self._hashes[:-1])
        if not same.size:
            return []
        ks = np.union1d(same, same + 1)  # every entry of a run of equal hashes, in sorted order
        first: dict[tuple[int, str], int] = {}
        repeats = []
        for h, row, docid in zip(self._hashes[ks].tolist(), self._rows[ks].tolist(), _take(self._ids, self._rows[ks])):
            if (h, docid) in first:
                repeats.append((row, first[(h, docid)]))
            else:
                first[(h, docid)] = row
        return sorted(repeats)
