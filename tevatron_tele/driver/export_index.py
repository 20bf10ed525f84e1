"""Write corpus embeddings as a Pyserini dense index folder (`index` + `docid`), for Pyserini's own dense search.

    python -m tevatron_tele.driver.encode --model_dir RUN/best/model --collection DATA --encode corpus \\
        --output EMB/corpus
    python -m tevatron_tele.driver.export_index --embeddings EMB/corpus --output INDEX
    python -m pyserini.search.faiss --index INDEX --topics queries.tsv --encoder RUN/best/model \\
        --encoder-class auto --pooling mean --l2-norm --output run.trec --hits 100

The output must be a new path (or an empty folder), or this step's own earlier output: kept when made from the same
embedding files, replaced with --overwrite when they changed. Anything else there is refused and left as it is.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..arguments import FieldGroup, TeleArgumentParser
from ..retrieval.pyserini_index import export_pyserini_index
from ..utils import setup_logging

logger = logging.getLogger(__name__)


@dataclass
class ExportIndexArguments(FieldGroup):
    embeddings: str = field(metadata={"help": "Corpus embeddings prefix: <prefix>.npy + <prefix>.ids, or its shards "
                                              "<prefix>.shard-i-of-n (e.g. RUN/episode-2/embeddings/corpus)."})
    output: str = field(metadata={"help": "The index folder to write (index, docid, tele_index.json)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace this step's earlier output made from other "
                                                             "embeddings (never anything else)."})


def run(args: ExportIndexArguments) -> Path:
    """Write (or keep) the index folder.

    Args:
        args: the driver's arguments.

    Returns:
        The index folder.
    """
    return export_pyserini_index(args.embeddings, args.output, overwrite=args.overwrite)


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    parser = TeleArgumentParser(ExportIndexArguments, description=__doc__.split("\n\n")[0])
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    run(args)


if __name__ == "__main__":
    from ..cli import run_cli

    run_cli(main)
