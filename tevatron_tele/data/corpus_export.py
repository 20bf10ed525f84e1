"""A corpus as current Tevatron's id-format training reads it: JSON lines of `{"docid", "text"}`.

Current Tevatron ignores titles in that format, so each passage's text is `title <sep> text` (just the
text when untitled), the template of this package's corpus token cache, with the model's separator token.
"""
from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from ..utils import PathLike, atomic_path
from .collections import Corpus


def write_corpus_jsonl(corpus: Corpus, path: PathLike, sep: str, *, progress: bool = True) -> Path:
    """Write `corpus` to `path` atomically, one `{"docid", "text"}` line per passage, in corpus order.

    Args:
        corpus: the passages (`load_corpus` or `Collection.corpus`).
        path: the .jsonl file to write.
        sep: the separator put between title and text (the tokenizer's `sep_token`, '' for none).
        progress: show a progress bar.

    Returns:
        `path`.
    """
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for i in tqdm(range(len(corpus)), desc="export corpus", unit="passage", disable=not progress):
            f.write(json.dumps({"docid": corpus.ids[i], "text": corpus.passage_text(i, sep)}, ensure_ascii=False))
            f.write("\n")
    return path
