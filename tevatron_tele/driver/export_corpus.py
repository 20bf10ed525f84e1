"""Write a collection's corpus as `{"docid", "text"}` JSON lines, for current Tevatron's own training driver.

    python -m tevatron_tele.driver.export_corpus --collection ../shared/data/scifact \\
        --tokenizer MODEL --output corpus.jsonl
    python -m tevatron.retriever.driver.train --dataset_name json --dataset_path RUN/episode-1/pool.jsonl \\
        --corpus_name json --corpus_path corpus.jsonl ...

Titles go into `text` as `title <sep> text` with the tokenizer's separator token, the template of the token cache, so
Tevatron's text path and this package's token cache see the same passages.
"""
from __future__ import annotations

import errno
import logging
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoTokenizer

from ..arguments import FieldGroup, TeleArgumentParser
from ..data.collections import load_corpus
from ..data.corpus_export import write_corpus_jsonl
from ..data.outputs import StepOutput
from ..utils import setup_logging

logger = logging.getLogger(__name__)


@dataclass
class ExportCorpusArguments(FieldGroup):
    collection: str = field(metadata={"help": "Collection (BEIR dir, MS MARCO dir, DPR json, Tevatron jsonl)."})
    output: str = field(metadata={"help": "The corpus .jsonl to write."})
    tokenizer: str = field(default=None, metadata={"help": "Model or tokenizer folder whose separator token joins "
                                                           "title and text (default: --sep)."})
    sep: str = field(default="", metadata={"help": "Separator between title and text when no --tokenizer is given."})
    passages: str = field(default=None, metadata={"help": "Passages TSV of a DPR json collection."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an earlier export of this step made from other "
                                                             "settings or inputs (never anything else)."})


def _separator(tokenizer: str) -> str:
    """The separator token of a tokenizer folder (or Hub name); one that cannot be loaded is named in one line."""
    try:
        return AutoTokenizer.from_pretrained(tokenizer).sep_token or ""
    except OSError as e:
        if e.errno is not None:  # the file system's own answer (no permission, ...), naming its file
            raise
        where = "no such folder, and no model of that name in the Hugging Face cache" if not Path(tokenizer).exists() \
            else "no tokenizer files in it"
        raise FileNotFoundError(errno.ENOENT, f"cannot load a tokenizer: {where}", tokenizer) from None
    except ValueError as e:  # files there, but not a tokenizer transformers can build
        raise ValueError(f"{tokenizer}: cannot load a tokenizer: {e}") from None


def run(args: ExportCorpusArguments) -> Path:
    """Write the corpus as `{"docid", "text"}` lines (or keep this step's earlier export of the same inputs).

    Args:
        args: the parsed flags.

    Returns:
        The corpus file.
    """
    sep = args.sep
    if args.tokenizer:
        sep = _separator(args.tokenizer)
    corpus = load_corpus(args.passages or args.collection)  # a DPR collection's passages live in their TSV
    output = StepOutput("export_corpus", [Path(args.output)], settings={"sep": sep},
                        inputs={"corpus": [s[0] for s in corpus.source_files] or args.passages or args.collection})
    if output.reusable(overwrite=args.overwrite):
        return Path(args.output)
    output.begin()
    write_corpus_jsonl(corpus, args.output, sep, progress=args.progress)
    output.commit(counts={"passages": len(corpus)})
    logger.info("wrote %d passages to %s (title %r text)", len(corpus), args.output, sep)
    return Path(args.output)


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    parser = TeleArgumentParser(ExportCorpusArguments, description=__doc__.split("\n\n")[0])
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    run(args)


if __name__ == "__main__":
    from ..cli import run_cli

    run_cli(main)
