"""Train a dense retriever on a negative pool, with Tevatron's flags plus the ANCE-Tele ones.

    python -m tevatron_tele.driver.train --model_name_or_path BASE --output_dir OUT \\
        --pool pool.jsonl --collection data/scifact --negative_mixing concat --early_stop_step 40
    torchrun --nproc_per_node 2 -m tevatron_tele.driver.train ... --negatives_x_device

The flags are those of the installed Tevatron (`--backend v1|v2` to insist on one): with current Tevatron e.g.
--train_group_size, --query_max_len, --passage_max_len, --query_prefix, --lora, --grad_cache, --attn_implementation. A
single argument ending in .json is read as a file of the same flags.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..arguments import TeleArgumentParser
from ..backends import get_backend
from ..training.train import train
from ..utils import input_error, read_json


def _backend_name(argv: list[str]) -> str:
    """--backend from the command line (or the JSON file), before the backend's dataclasses are known."""
    if len(argv) == 1 and argv[0].endswith(".json"):
        data = read_json(argv[0])
        if not isinstance(data, dict):
            raise input_error(argv[0], 1, "<json>", f"expected an object of flag names to values, got "
                                                    f"{type(data).__name__}")
        return data.get("backend", "auto")
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--backend", default="auto")
    return pre.parse_known_args(argv)[0].backend


def parse_args(argv: list[str] | None = None):
    """(model_args, data_args, training_args) of the chosen backend, parsed from `argv` (default sys.argv)."""
    argv = sys.argv[1:] if argv is None else argv
    backend = get_backend(_backend_name(argv))
    parser = TeleArgumentParser((backend.TeleModelArguments, backend.TeleDataArguments, backend.TeleTrainingArguments),
                              description=__doc__.split("\n\n")[0])
    if len(argv) == 1 and argv[0].endswith(".json"):
        try:
            return parser.parse_json_file(json_file=os.path.abspath(argv[0]))
        except ValueError as e:  # e.g. "Some keys are not used by the HfArgumentParser: [...]"
            raise ValueError(f"{argv[0]}: {e}") from None
    return parser.parse_args_into_dataclasses(args=argv)


def run(model_args, data_args, training_args) -> Path:
    """Train on the pool with the installed Tevatron's trainer.

    Args:
        model_args: the backend's `TeleModelArguments`.
        data_args: its `TeleDataArguments` (pool, collection, lengths, mixing).
        training_args: its `TeleTrainingArguments` (HF Trainer's flags, early stop).

    Returns:
        The saved model folder.
    """
    return train(model_args, data_args, training_args)


def main(argv: list[str] | None = None) -> None:
    run(*parse_args(argv))


if __name__ == "__main__":
    from ..cli import run_cli

    run_cli(main, debug_flag_has_value=True)  # the Trainer has its own --debug VALUE
