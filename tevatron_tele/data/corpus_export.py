"""A corpus as current Tevatron's id-format training reads it: JSON lines of `{"docid", "text"}`.

Tevatron ignores titles in that format, so each text is `title <sep> text` (just the text when untitled), the
template of this package's corpus token cache, with the model's separator token.
"""
from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from ..utils import PathLike, atomic_path
from .collections import Corpus

_BATCH = 10_000  # passages read at a time


def write_corpus_jsonl(corpus: Corpus, path: PathLike, sep: str, *, progress: bool = True) -> Path:
    """Write `corpus` to `path` atomically, one `{"docid", "text"}` line per passage, in corpus order.

    Args:
        corpus: the passages (`load_corpus` or `Collection.corpus`).
        path: the .jsonl file.
        sep: put between title and text (the tokenizer's `sep_token`, '' for none).
        progress: show a progress bar.

    Returns:
        `path`.
    """
    path = Path(path)
    n = len(corpus)
    with (atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f,
          tqdm(total=n, desc="export corpus", unit="passage", disable=not progress) as bar):
        for start in range(0, n, _BATCH):  # a slice at a time: a store-backed corpus is read in batches
            stop = min(start + _BATCH, n)
            for docid, text in zip(corpus.ids[start:stop], corpus.passage_texts(start, stop, sep)):
                f.write(json.dumps({"docid": docid, "text": text}, ensure_ascii=False))
                f.write("\n")
            bar.update(stop - start)
    return path
