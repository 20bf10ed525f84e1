"""Train a dense retriever on a negative pool (Tevatron's flags plus the ANCE-Tele ones).

    python -m tevatron_tele.driver.train --model_name_or_path BASE --output_dir OUT \\
        --pool pool.jsonl --collection data/scifact --negative_mixing concat --early_stop_step 40
    torchrun --nproc_per_node 2 -m tevatron_tele.driver.train ... --negatives_x_device

A single argument ending in .json is read as a file of the same flags.
"""
from __future__ import annotations

import os
import sys

from transformers import HfArgumentParser

from ..arguments import TeleDataArguments, TeleModelArguments, TeleTrainingArguments
from ..training.trainer import train


def parse_args(argv: list[str] | None = None):
    parser = HfArgumentParser((TeleModelArguments, TeleDataArguments, TeleTrainingArguments),
                              description=__doc__.split("\n\n")[0])
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=argv)


def main(argv: list[str] | None = None) -> None:
    model_args, data_args, training_args = parse_args(argv)
    train(model_args, data_args, training_args)


if __name__ == "__main__":
    main()
