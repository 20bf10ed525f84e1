"""The model card judge_run writes into the kept episode's model folder, on a small fake run folder."""
from __future__ import annotations

import json
import logging
import shlex

import pytest

from tevatron_tele.data.trec import read_run, write_run
from tevatron_tele.driver.episodes import parse_args
from tevatron_tele.evaluation.metrics import evaluate_run
from tevatron_tele.model_export import write_model_configs
from tevatron_tele.runner.config import EpisodeArguments
from tevatron_tele.runner.model_card import CARD_FILE, CARD_MARKER, reproduce_command, write_model_card
from tevatron_tele.runner.selection import judge_run
from tevatron_tele.runner.workspace import RunFolder
from tevatron_tele.utils import write_json

QRELS = {f"q{i}": {f"d{i}": 1} for i in range(6)}
DOCS = [f"d{i}" for i in range(8)]


def _ranking(hits: int) -> dict:
    """A run where the first `hits` queries find their positive first and the others third."""
    run = {}
    for i, qid in enumerate(QRELS):
        others = [d for d in DOCS if d != f"d{i}"]
        order = [f"d{i}", *others] if i < hits else [*others[:2], f"d{i}", *others[2:]]
        run[qid] = [(d, 10.0 - r) for r, d in enumerate(order)]
    return run


def _fake_run(tmp_path, *, tele_config=None, episodes=2) -> RunFolder:
    """manifest.json, episode 0..N with eval.json and rankings/test.trec, a BM25 run, and model folders holding
    only the config files (the card reads nothing else)."""
    folder = RunFolder(tmp_path / "run")
    args = EpisodeArguments(output_dir=str(folder.root), model_name_or_path="org/base-model",
                            collection=str(tmp_path / "data" / "nfcorpus"), num_episodes=episodes, refresh_steps=7,
                            pooling="mean", normalize=True, learning_rate=3e-5, p_max_len=200)
    folder.root.mkdir(parents=True)
    write_json(folder.manifest_path, {"config": args.result_config(), "versions": {"torch": "2.13.0"}})
    for i in range(episodes + 1):
        run = _ranking(hits=2 + 2 * i)
        write_run(folder.ranking(i, "test"), run)
        write_json(folder.eval(i), {"nfcorpus/test": {"collection": "nfcorpus/test", "num_queries": 6,
                                                      "num_judged_queries": 6,
                                                      **evaluate_run(run, QRELS, ["MRR@10", "nDCG@10", "R@100"])}})
        if i:
            folder.model(i).mkdir(parents=True)
            write_model_configs(folder.model(i), tele_config or {"pooling": "mean", "normalize": True,
                                                                 "temperature": 0.05, "backend": "v1"},
                                embedding_dimension=32, max_seq_length=200)
    write_run(folder.root / "bm25" / "test.trec", _ranking(hits=3))
    return folder


def test_judge_run_writes_the_card_of_the_kept_episode(tmp_path):
    folder = _fake_run(tmp_path)
    result = judge_run(folder, QRELS, "nDCG@10", None, folder.root / "bm25" / "test.trec")
    assert result["selected"] == 2
    card = (folder.model(2) / CARD_FILE).read_text()
    assert not (folder.model(1) / CARD_FILE).exists() and not (folder.episode(0) / "model").exists()
    assert CARD_MARKER in card and "base_model: org/base-model" in card
    assert "library_name: sentence-transformers" in card
    assert f"**Verdict:** {result['text']}" in card
    kept = json.loads(folder.eval(2).read_text())["nfcorpus/test"]
    start = json.loads(folder.eval(0).read_text())["nfcorpus/test"]
    bm25 = evaluate_run(read_run(folder.root / "bm25" / "test.trec"), QRELS, ["MRR@10", "nDCG@10", "R@100"])

    def row(figures: dict) -> str:
        return " | ".join(f"{figures[m]:.4f}" for m in ("MRR@10", "nDCG@10", "R@100"))

    assert f"| this model (episode 2) | {row(kept)} |" in card
    assert f"| start (episode 0, the base model) | {row(start)} |" in card
    assert f"| BM25 (Pyserini, RUN/bm25/test.trec) | {row(bm25)} |" in card
    assert "mean pooling, cosine" in card and "queries up to 32 tokens, passages up to 200" in card
    assert f"SentenceTransformer({str(folder.model(2))!r})" in card
    assert "--encoder-class auto --pooling mean --l2-norm" in card
    assert "--pooling mean --normalize" in card  # current Tevatron's encode driver
    assert [p.name for p in folder.model(2).iterdir() if p.name.startswith(".tmp")] == []
    # judged again (a resumed run): the card is ours, so it is rewritten, to the same text
    judge_run(folder, QRELS, "nDCG@10", None, folder.root / "bm25" / "test.trec")
    assert (folder.model(2) / CARD_FILE).read_text() == card


def test_reproduce_command_parses_back_to_the_run_config(tmp_path):
    folder = _fake_run(tmp_path)
    config = json.loads(folder.manifest_path.read_text())["config"]
    command = reproduce_command(config, tmp_path / "again")
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[:3] == ["python", "-m", "tevatron_tele.driver.episodes"]
    parsed = parse_args(argv[3:])
    assert parsed.output_dir == str(tmp_path / "again")
    assert parsed.result_config() == config
    assert "--refresh_steps 7" in command and "--negatives" not in command  # defaults are left out


def test_start_model_kept_gets_no_card(tmp_path, caplog):
    folder = _fake_run(tmp_path)
    with caplog.at_level(logging.INFO, logger="tevatron_tele.runner.model_card"):
        assert write_model_card(folder, {"selected": 0, "text": "the start is kept"}) is None
    assert "episode 0" in caplog.text and "no card" in caplog.text
    assert not list(tmp_path.rglob(CARD_FILE))


def test_someone_elses_readme_is_left_alone(tmp_path, caplog):
    folder = _fake_run(tmp_path)
    (folder.model(2) / CARD_FILE).write_text("my own notes\n")
    with caplog.at_level(logging.WARNING, logger="tevatron_tele.runner.model_card"):
        judge_run(folder, QRELS, "nDCG@10", None)
    assert (folder.model(2) / CARD_FILE).read_text() == "my own notes\n"
    assert "left as it is" in caplog.text


@pytest.mark.parametrize("option, says", [({"untie_encoder": True}, "query and passage encoders are untied"),
                                          ({"lora": True}, "LoRA adapter")])
def test_card_of_a_model_sentence_transformers_cannot_load(tmp_path, option, says):
    folder = _fake_run(tmp_path, tele_config={"pooling": "cls", "normalize": False, "backend": "v1", **option})
    judge_run(folder, QRELS, "nDCG@10", None)
    card = (folder.model(2) / CARD_FILE).read_text()
    assert "library_name: transformers" in card and "Not loadable as a sentence-transformers model: " in card
    assert says in card and "BM25" in card and "No BM25 baseline was run" in card
    if "untie_encoder" in option:
        assert f"--encoder {folder.model(2)}/query_model" in card
    assert "always pools CLS without normalising, which is this model's own encoding" in card
