"""Where each key's lines lie in a keyed text file (a TREC run, a pool), so the streaming readers of runs and pools
can read one query's lines from a file of millions without holding it.

One pass over the bytes records, for every maximal block of consecutive lines with the same key, its byte offset,
byte length and first line number; a key whose lines are not consecutive has several blocks. Memory is one dict
entry per key plus three integers per block, whatever the lines hold.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..utils import ErrorFactory, PathLike, input_error

KeyOf = Callable[[bytes, int], str | None]  # (line bytes, line number) -> key; None for a line without one
V = TypeVar("V")


class LineIndex:
    """The blocks of a keyed line file (see the module doc), looked up by key.

    Args:
        path: the file.
        key_of: a line's key from its bytes (ending included) and 1-based line number; None skips the line (blank
            lines); raises the reader's own error for a line it cannot key.
        unique: the field to name (e.g. "query_id") when every key must be on one line only; a repeat raises
            `error(path, line, unique, ...)` naming both lines.
        error: the reader's exception factory (path, line, field, problem).
    """

    def __init__(self, path: PathLike, key_of: KeyOf, *, unique: str | None = None,
                 error: ErrorFactory = input_error) -> None:
        self.path = Path(path)
        first: dict[str, int] = {}  # key -> its first block
        more: dict[str, list[int]] = {}  # key -> its later blocks (keys in several places only)
        offsets: list[int] = []
        lengths: list[int] = []
        lines: list[int] = []
        offset, current = 0, None
        with open(self.path, "rb") as f:
            for line_no, raw in enumerate(f, start=1):
                if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    offset += 3
                    raw = raw[3:]
                key = key_of(raw, line_no)
                if key is None:  # a skipped line ends the block: a block's lines are consecutive
                    offset += len(raw)
                    current = None
                    continue
                if key == current and unique is None:
                    lengths[-1] += len(raw)
                else:
                    block = len(offsets)
                    if key not in first:
                        first[key] = block
                    elif unique is not None:
                        raise error(path, line_no, unique,
                                    f"duplicate {unique} {key!r} (first at line {lines[first[key]]})")
                    else:
                        more.setdefault(key, []).append(block)
                    offsets.append(offset)
                    lengths.append(len(raw))
                    lines.append(line_no)
                    current = key
                offset += len(raw)
        self._first, self._more = first, more
        self._offsets = np.asarray(offsets, dtype=np.int64)
        self._lengths = np.asarray(lengths, dtype=np.int64)
        self._lines = np.asarray(lines, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._first)

    def __contains__(self, key: object) -> bool:
        return key in self._first

    def keys(self) -> Iterator[str]:
        """The keys in the order of their first line."""
        return iter(self._first)

    def blocks(self, key: str) -> list[int]:
        """The block numbers of `key`, in file order; KeyError if it has none."""
        return [self._first[key], *self._more.get(key, ())]

    def read(self, key: str) -> Iterator[tuple[int, bytes]]:
        """(line number, line bytes without the ending) for each line of `key`, in file order."""
        with open(self.path, "rb") as f:
            for b in self.blocks(key):
                f.seek(int(self._offsets[b]))
                data = f.read(int(self._lengths[b]))
                # split at "\n" only, as iterating over the file did (a lone "\r" stays in its line)
                lines = (data[:-1] if data.endswith(b"\n") else data).split(b"\n")
                yield from enumerate(lines, start=int(self._lines[b]))


class IndexedLines(Mapping[str, V]):
    """A read-only mapping over a keyed line file: keys, membership and size come from `self._index` (a
    `LineIndex` the subclass sets); the subclass parses a key's lines in `__getitem__`."""

    _index: LineIndex

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __iter__(self) -> Iterator[str]:
        return self._index.keys()

    def __len__(self) -> int:
        return len(self._index)


def decode_line(path: PathLike, line_no: int, raw: bytes, error: ErrorFactory) -> str:
    """A line's text (UTF-8, no line ending); undecodable bytes raise `error(path, line, "<utf-8>", ...)`."""
    try:
        return raw.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError as e:
        raise error(path, line_no, "<utf-8>", f"invalid UTF-8 byte 0x{raw[e.start]:02x} at column {e.start + 1}"
                    ) from None
