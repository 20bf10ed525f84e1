"""The episode a run keeps, chosen on a dev split, and the verdict against the start model and BM25.

`judge_run` reads the finished episodes' dev figures and test rankings, writes `RUN/best.json`, points `RUN/best` at the
selected episode and writes the model card into its model folder (`runner.model_card`).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from ..data.trec import read_run
from ..evaluation.metrics import per_query_values
from ..evaluation.verdict import (
    SELECTION_RULES,
    SelectionRule,
    select_episode,
    select_episode_guarded,
    verdict,
)
from ..utils import read_json, write_json
from .model_card import write_model_card
from .workspace import RunFolder

logger = logging.getLogger(__name__)


def episode_values(folder: RunFolder, episode: int, ranking: str, qrels, metric: str) -> dict[str, float]:
    """Per-query `metric` of one of an episode's rankings."""
    return per_query_values(read_run(folder.ranking(episode, ranking)), qrels, metric)


def judge_run(folder: RunFolder, test_qrels, metric: str, dev_name: str | None, bm25_run: Path | None = None,
              seed: int = 0, *, dev_qrels=None, rule: SelectionRule = "guarded") -> dict:
    """Select the episode on dev, compare it with the start and BM25 on test, and record the choice.

    Args:
        folder: the run folder (episodes with eval.json and rankings/test.trec, and rankings/dev.trec with a dev split).
        test_qrels: qrels of the test split.
        metric: the selection metric, e.g. 'nDCG@10'.
        dev_name: the dev collection's key in eval.json (None: no dev split; the last episode is reported).
        bm25_run: a BM25 TREC run of the test queries, for the baseline.
        seed: bootstrap seed.
        dev_qrels: qrels of the dev split (the guarded rule compares episodes query by query on it).
        rule: 'guarded' (an episode replaces the kept one only with a dev gain beyond noise) or 'best' (the best dev
            figure); see `evaluation.verdict`.

    Returns:
        The verdict dict (also written to RUN/best.json).
    """
    if rule not in SELECTION_RULES:
        raise ValueError(f"--selection_rule must be one of {', '.join(SELECTION_RULES)}; got '{rule}'")
    episodes = [i for i in folder.episodes() if folder.eval(i).exists() and folder.ranking(i, "test").exists()]
    if not episodes or episodes[0] != 0:
        raise ValueError(f"{folder.root}: no evaluated start model (episode 0) to judge against")
    dev, selection = None, None
    if dev_name:
        dev = {i: read_json(folder.eval(i))[dev_name][metric] for i in episodes}
        if rule == "guarded":
            if dev_qrels is None:
                raise ValueError("the guarded episode choice needs the dev split's qrels (dev_qrels)")
            values = {i: episode_values(folder, i, "dev", dev_qrels, metric) for i in episodes}
            selected, tests = select_episode_guarded(values, seed)
            selection = {"rule": rule, "tests": tests}
        else:
            selected = select_episode(dev)
            selection = {"rule": rule}
    else:
        selected = episodes[-1]
    test = {i: episode_values(folder, i, "test", test_qrels, metric) for i in {0, selected}}
    baselines = {"BM25": per_query_values(read_run(bm25_run), test_qrels, metric)} if bm25_run else {}
    result = verdict(selected, dev, test, baselines, metric, seed, selection)
    # per-query values, so that runs can be compared later without their collections
    result["per_query"] = {"selected": test[selected], "start": test[0], **baselines}
    write_json(folder.best_json, result)
    link = folder.best_link
    tmp = link.with_name(link.name + ".tmp-link")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(folder.episode(selected).name, tmp)
    os.replace(tmp, link)
    logger.info("verdict: %s", result["text"])
    write_model_card(folder, result, test_qrels=test_qrels, bm25_run=bm25_run)  # RUN/best/model/README.md
    return result
