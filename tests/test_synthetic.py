"""The synthetic collection is deterministic, self-consistent and fully covered by the tiny model's vocab."""
from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers

from tevatron_tele.data.synthetic import build_tiny_model, generate, make_synthetic_collection


def _read_qrels(path: Path) -> list[tuple[str, str, int]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "query-id\tcorpus-id\tscore"
    rows = []
    for line in lines[1:]:
        qid, docid, grade = line.split("\t")
        rows.append((qid, docid, int(grade)))
    return rows


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path, synthetic_dir):
    again = make_synthetic_collection(tmp_path / "again", seed=0)
    assert _files(again) == _files(synthetic_dir)
    other = make_synthetic_collection(tmp_path / "other", seed=1)
    assert _files(other)["corpus.jsonl"] != _files(synthetic_dir)["corpus.jsonl"]


def test_default_size_and_qrels_consistent(synthetic_dir):
    corpus = [json.loads(line) for line in (synthetic_dir / "corpus.jsonl").read_text().splitlines()]
    queries = [json.loads(line) for line in (synthetic_dir / "queries.jsonl").read_text().splitlines()]
    doc_ids = [d["_id"] for d in corpus]
    qids = [q["_id"] for q in queries]
    assert len(set(doc_ids)) == len(doc_ids) and len(set(qids)) == len(qids)
    assert 400 <= len(corpus) <= 800
    for d in corpus:
        assert 10 <= len(d["text"].split()) <= 30
    train = _read_qrels(synthetic_dir / "qrels" / "train.tsv")
    test = _read_qrels(synthetic_dir / "qrels" / "test.tsv")
    assert len({q for q, _, _ in train}) == 120 and len({q for q, _, _ in test}) == 40
    assert not {q for q, _, _ in train} & {q for q, _, _ in test}
    for qid, docid, grade in train + test:
        assert qid in qids and docid in doc_ids and grade > 0


def test_positive_holds_key_term_and_hard_negatives_do_not():
    data = generate(n_topics=5, seed=3)
    docs = {d["_id"]: d for d in data["corpus"]}
    queries = {q["_id"]: set(q["text"].split()) for q in data["queries"]}
    for qid, docid, _ in data["qrels"]["train"] + data["qrels"]["test"]:
        pos_words = set(docs[docid]["text"].split())
        assert queries[qid] <= pos_words
        # A near-duplicate shares all query words but one (the key term): a hard negative.
        near = [d for i, d in docs.items() if i != docid and len(queries[qid] - set(d["text"].split())) == 1
                and len(pos_words ^ set(d["text"].split())) <= 4]
        assert near, f"no near-duplicate for {qid}"


def test_reuses_complete_folder_and_regenerates_on_new_params(tmp_path):
    out = make_synthetic_collection(tmp_path / "c", n_topics=3, seed=0)
    stamp = (out / "corpus.jsonl").stat().st_mtime_ns
    assert make_synthetic_collection(out, n_topics=3, seed=0) == out
    assert (out / "corpus.jsonl").stat().st_mtime_ns == stamp
    make_synthetic_collection(out, n_topics=4, seed=0)
    assert len((out / "corpus.jsonl").read_text().splitlines()) > len(generate(n_topics=3)["corpus"])


def test_tiny_model_tokenizes_corpus_without_unk(tiny_model_dir, synthetic_dir):
    tok = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    model = transformers.AutoModel.from_pretrained(tiny_model_dir)
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 2
    words = set()
    for line in (synthetic_dir / "corpus.jsonl").read_text().splitlines():
        d = json.loads(line)
        words.update((d["title"] + " " + d["text"]).split())
    for line in (synthetic_dir / "queries.jsonl").read_text().splitlines():
        words.update(json.loads(line)["text"].split())
    ids = tok(sorted(words), add_special_tokens=False)["input_ids"]
    assert all(len(x) == 1 and x[0] != tok.unk_token_id for x in ids)
    enc = tok("[unseenword] " + sorted(words)[0])["input_ids"]
    assert enc[0] == tok.cls_token_id and enc[-1] == tok.sep_token_id and tok.unk_token_id in enc


def test_tiny_model_is_deterministic(tmp_path):
    a = build_tiny_model(tmp_path / "a", hidden_size=16, num_layers=1, seed=7)
    b = build_tiny_model(tmp_path / "b", hidden_size=16, num_layers=1, seed=7)
    assert (a / "vocab.txt").read_bytes() == (b / "vocab.txt").read_bytes()
    ma, mb = transformers.AutoModel.from_pretrained(a), transformers.AutoModel.from_pretrained(b)
    for (na, pa), (_, pb) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert torch.equal(pa, pb), na


def test_synonyms_are_deterministic_and_leave_the_plain_collection_alone(tmp_path, synthetic_dir):
    a = make_synthetic_collection(tmp_path / "a", seed=0, synonyms=True)
    b = make_synthetic_collection(tmp_path / "b", seed=0, synonyms=True)
    assert _files(a) == _files(b)
    assert _files(a)["queries.jsonl"] != _files(synthetic_dir)["queries.jsonl"]
    assert json.loads((a / "synthetic.json").read_text())["synonyms"] is True
    assert "synonyms" not in json.loads((synthetic_dir / "synthetic.json").read_text())
    plain = generate(n_topics=5, seed=3)
    assert generate(n_topics=5, seed=3, synonyms=False) == plain
    with_synonyms = generate(n_topics=5, seed=3, synonyms=True)
    assert len(with_synonyms["corpus"]) == len(plain["corpus"]) and with_synonyms["queries"] != plain["queries"]


def test_synonym_queries_say_their_key_term_in_other_words():
    data = generate(n_topics=40, seed=0, synonyms=True)
    docs = {d["_id"]: d for d in data["corpus"]}
    queries = {q["_id"]: set(q["text"].split()) for q in data["queries"]}
    corpus_words = {w for d in data["corpus"] for w in (d["title"] + " " + d["text"]).split()}
    lexically_tied = 0
    for qid, docid, _ in data["qrels"]["train"] + data["qrels"]["test"]:
        positive = set(docs[docid]["text"].split())
        assert not (queries[qid] - positive) & corpus_words, "a query word its positive lacks is in no passage"
        near = [set(d["text"].split()) for i, d in docs.items() if i != docid and d["title"] == docs[docid]["title"]
                and len(positive ^ set(d["text"].split())) <= 4]
        assert len(near) >= 2, f"no near-duplicates for {qid}"
        # the key term said in other words: the query's words match a near-duplicate as well as the positive
        lexically_tied += all(queries[qid] & positive <= dup for dup in near)
    assert 0.6 * len(queries) < lexically_tied < len(queries)
