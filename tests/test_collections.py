"""Loaders for each format, on good input and on each kind of broken input."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from tevatron_tele.data.collections import CollectionError, detect_format, load_collection, load_corpus


def _jsonl(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")


def _beir(root: Path, corpus=None, queries=None, qrels=None) -> Path:
    corpus = corpus if corpus is not None else [
        {"_id": "d1", "title": "Alpha", "text": "alpha text"},
        {"_id": "d2", "title": "", "text": "beta text"},
        {"_id": "d3", "text": "gamma text"},
    ]
    queries = queries if queries is not None else [
        {"_id": "q1", "text": "about alpha"}, {"_id": "q2", "text": "about beta"}, {"_id": "q3", "text": "test q"},
    ]
    qrels = qrels if qrels is not None else ["q1\td1\t1", "q2\td2\t2", "q2\td3\t0"]
    _jsonl(root / "corpus.jsonl", corpus)
    _jsonl(root / "queries.jsonl", queries)
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq3\td3\t1\n")
    return root


# ---------------------------------------------------------------- BEIR

def test_beir_good(tmp_path):
    c = load_collection(_beir(tmp_path / "b"), "train")
    assert detect_format(tmp_path / "b") == "beir"
    assert c.corpus.ids == ["d1", "d2", "d3"] and c.corpus.titles == ["Alpha", "", ""]
    assert set(c.queries) == {"q1", "q2"}  # only the split's queries
    assert c.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 0}}
    assert c.positives("q2") == ["d2"] and c.positives("nope") == []
    assert c.corpus.position("d3") == 2
    assert c.corpus.passage_text(0, "[SEP]") == "Alpha [SEP] alpha text"
    assert c.corpus.passage_text(1, "[SEP]") == "beta text"
    with pytest.raises(KeyError, match="zzz"):
        c.corpus.position("zzz")
    test = load_collection(tmp_path / "b", "test")
    assert set(test.queries) == {"q3"} and test.positives("q3") == ["d3"]
    assert load_corpus(tmp_path / "b").ids == c.corpus.ids
    assert load_corpus(tmp_path / "b" / "corpus.jsonl").texts == c.corpus.texts


def test_beir_malformed_json_names_file_and_line(tmp_path):
    root = _beir(tmp_path / "b", corpus=[{"_id": "d1", "text": "x"}, '{"_id": "d2", "text": '])
    with pytest.raises(CollectionError, match=r"corpus\.jsonl:2: field '<json>': malformed JSON"):
        load_collection(root)


def test_beir_missing_field(tmp_path):
    root = _beir(tmp_path / "b", corpus=[{"_id": "d1", "text": "x"}, {"_id": "d2", "title": "t"}])
    with pytest.raises(CollectionError, match=r"corpus\.jsonl:2: field 'text': missing"):
        load_collection(root)
    root = _beir(tmp_path / "c", queries=[{"_id": "q1"}])
    with pytest.raises(CollectionError, match=r"queries\.jsonl:1: field 'text': missing"):
        load_collection(root)


def test_beir_duplicate_ids(tmp_path):
    docs = [{"_id": "d1", "text": "x"}, {"_id": "d2", "text": "y"}, {"_id": "d1", "text": "z"}]
    root = _beir(tmp_path / "b", corpus=docs)
    with pytest.raises(CollectionError, match=r"corpus\.jsonl:3: field '_id': duplicate document id 'd1'.*:1\)"):
        load_collection(root)
    root = _beir(tmp_path / "c", queries=[{"_id": "q1", "text": "a"}, {"_id": "q1", "text": "b"}])
    with pytest.raises(CollectionError, match=r"queries\.jsonl:2: field '_id': duplicate query id"):
        load_collection(root)


def test_beir_unknown_ids_counted_or_strict(tmp_path, caplog):
    root = _beir(tmp_path / "b", qrels=["q1\td1\t1", "q1\tmissing\t1", "qX\td2\t1", "q2\td2\t1"])
    with caplog.at_level(logging.WARNING):
        c = load_collection(root)
    assert c.stats["unknown_doc_ids"] == 1 and c.stats["unknown_query_ids"] == 1
    assert c.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    assert "1 qrels queries and 1 judged documents are unknown" in caplog.text
    with pytest.raises(CollectionError, match="unknown"):
        load_collection(root, strict=True)


def test_beir_queries_without_positives_counted(tmp_path):
    c = load_collection(_beir(tmp_path / "b", qrels=["q1\td1\t1", "q2\td2\t0"]))
    assert c.stats["queries_without_positives"] == 1 and c.positives("q2") == []


def test_beir_bad_qrels_line(tmp_path):
    root = _beir(tmp_path / "b", qrels=["q1\td1\t1", "q2\td2"])
    with pytest.raises(CollectionError, match=r"train\.tsv:3: field '<columns>'"):
        load_collection(root)
    root = _beir(tmp_path / "c", qrels=["q1\td1\thigh"])
    with pytest.raises(CollectionError, match=r"train\.tsv:2: field 'score': not a number"):
        load_collection(root)


def test_missing_split_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="dev.tsv"):
        load_collection(_beir(tmp_path / "b"), "dev")


# ---------------------------------------------------------------- MS MARCO

def _msmarco(root: Path, collection: str, qrels: str, queries: str = "1\tfirst query\n2\tsecond query\n") -> Path:
    root.mkdir(parents=True)
    (root / "collection.tsv").write_text(collection)
    (root / "queries.train.tsv").write_text(queries)
    (root / "qrels.train.tsv").write_text(qrels)
    return root


def test_msmarco_good_four_and_three_columns(tmp_path):
    root = _msmarco(tmp_path / "m4", "0\tpassage zero\n1\ttitled\tpassage one\n", "1\t0\t0\t1\n2 0 1 1\n")
    c = load_collection(root)
    assert detect_format(root) == "msmarco"
    assert c.corpus.ids == ["0", "1"] and c.corpus.titles == ["", "titled"] and c.corpus.texts[1] == "passage one"
    assert c.qrels == {"1": {"0": 1}, "2": {"1": 1}} and c.queries["2"] == "second query"
    root3 = _msmarco(tmp_path / "m3", "0\tpassage zero\n1\tpassage one\n", "1\t0\t1\n2\t1\t1\n")
    assert load_collection(root3).qrels == {"1": {"0": 1}, "2": {"1": 1}}
    assert load_corpus(root3).texts == ["passage zero", "passage one"]


def test_msmarco_errors(tmp_path):
    root = _msmarco(tmp_path / "a", "0\tok\n1\ta\tb\tc\n", "1\t0\t0\t1\n")
    with pytest.raises(CollectionError, match=r"collection\.tsv:2: field '<columns>'"):
        load_collection(root)
    root = _msmarco(tmp_path / "b", "0\tok\n0\tagain\n", "1\t0\t0\t1\n")
    with pytest.raises(CollectionError, match=r"collection\.tsv:2: field 'id': duplicate"):
        load_collection(root)
    root = _msmarco(tmp_path / "c", "0\tok\n", "1\t0\t0\t1\n", queries="1\tq\n1\tq again\n")
    with pytest.raises(CollectionError, match=r"queries\.train\.tsv:2: field 'qid': duplicate"):
        load_collection(root)
    root = _msmarco(tmp_path / "d", "0\tok\n", "1\t0\t0\t1\n1\t0\t7\t1\n")
    with pytest.raises(CollectionError, match="unknown"):
        load_collection(root, strict=True)
    c = load_collection(root)
    assert c.stats["unknown_doc_ids"] == 1 and c.stats["queries_without_positives"] == 1  # query "2"


# ---------------------------------------------------------------- DPR

def _dpr(tmp_path: Path, items) -> Path:
    path = tmp_path / "nq-train.json"
    path.write_text(json.dumps(items, indent=1))
    return path


def test_dpr_with_and_without_passages(tmp_path):
    items = [
        {"question": "who wrote x", "answers": ["Ann"],
         "positive_ctxs": [{"passage_id": "11", "title": "X", "text": "Ann wrote x"}],
         "hard_negative_ctxs": [{"psg_id": "12", "title": "Y", "text": "Bob wrote y"}]},
        {"question": "where is z", "answers": ["Zed", "Zet"],
         "positive_ctxs": [{"psg_id": 13, "title": "Z", "text": "Zed"}]},
    ]
    path = _dpr(tmp_path, items)
    c = load_collection(path)
    assert detect_format(path) == "dpr"
    assert c.queries == {"0": "who wrote x", "1": "where is z"}
    assert c.answers == {"0": ["Ann"], "1": ["Zed", "Zet"]}
    assert c.qrels == {"0": {"11": 1}, "1": {"13": 1}} and c.corpus.ids == ["11", "12", "13"]
    passages = tmp_path / "psgs.tsv"
    passages.write_text('id\ttext\ttitle\n11\t"Ann ""wrote"" x"\tX\n12\tBob wrote y\tY\n13\tZed\tZ\n14\tother\tO\n')
    c = load_collection(path, passages=passages)
    assert len(c.corpus) == 4 and c.corpus.texts[0] == 'Ann "wrote" x' and c.corpus.titles[3] == "O"
    assert load_corpus(passages).ids == ["11", "12", "13", "14"]


def test_dpr_errors(tmp_path):
    (tmp_path / "bad.json").write_text('[{"question": "q",\n "answers": [}]')
    with pytest.raises(CollectionError, match=r"bad\.json:2: field '<json>': malformed JSON"):
        load_collection(tmp_path / "bad.json")
    with pytest.raises(CollectionError, match=r"item 1: field 'answers'"):
        load_collection(_dpr(tmp_path, [{"question": "a", "answers": ["x"]}, {"question": "b"}]))
    with pytest.raises(CollectionError, match=r"item 0: field 'positive_ctxs.passage_id': missing"):
        load_collection(_dpr(tmp_path, [{"question": "a", "answers": ["x"], "positive_ctxs": [{"text": "t"}]}]))
    path = _dpr(tmp_path, [{"question": "a", "answers": ["x"], "positive_ctxs": [{"passage_id": "9", "text": "t"}]}])
    passages = tmp_path / "psgs.tsv"
    passages.write_text("id\ttext\ttitle\n1\tone\tT\n")
    with pytest.raises(CollectionError, match="unknown"):
        load_collection(path, passages=passages, strict=True)
    assert load_collection(path, passages=passages).stats["queries_without_positives"] == 1


# ---------------------------------------------------------------- Tevatron jsonl

def test_tevatron_good_and_errors(tmp_path):
    rows = [
        {"query_id": "1", "query": "q one", "positive_passages": [{"docid": "a", "title": "A", "text": "ta"}],
         "negative_passages": [{"docid": "b", "title": "", "text": "tb"}]},
        {"query_id": "2", "query": "q two", "positive_passages": [{"docid": "b", "title": "", "text": "tb"}],
         "negative_passages": []},
    ]
    path = tmp_path / "train.jsonl"
    _jsonl(path, rows)
    c = load_collection(path)
    assert detect_format(path) == "tevatron"
    assert c.corpus.ids == ["a", "b"] and c.qrels == {"1": {"a": 1}, "2": {"b": 1}}
    assert load_collection(tmp_path, "train", fmt="tevatron").queries == c.queries
    assert load_corpus(path).ids == ["a", "b"]

    _jsonl(path, [{"query_id": "1", "query": "q", "positive_passages": [{"title": "A", "text": "ta"}]}])
    with pytest.raises(CollectionError, match=r"train\.jsonl:1: field 'docid': missing"):
        load_collection(path)
    _jsonl(path, [rows[0], {"query_id": "1", "query": "again", "positive_passages": []}])
    with pytest.raises(CollectionError, match=r"train\.jsonl:2: field 'query_id': duplicate"):
        load_collection(path)
    _jsonl(path, [rows[0], {"query_id": "3", "query": "x", "positive_passages": [{"docid": "a", "text": "changed"}]}])
    with pytest.raises(CollectionError, match=r"train\.jsonl:2: field 'positive_passages.text'"):
        load_collection(path)
    _jsonl(path, [{"query_id": "1", "query": "q"}])
    with pytest.raises(CollectionError, match=r"train\.jsonl:1: field 'positive_passages': missing"):
        load_collection(path)


# ---------------------------------------------------------------- real and synthetic data

def test_synthetic_collection_loads(synthetic_dir):
    train = load_collection(synthetic_dir, "train", strict=True)
    test = load_collection(synthetic_dir, "test", strict=True)
    assert len(train.queries) == 120 and len(test.queries) == 40
    assert all(train.positives(q) for q in train.queries)


def test_scifact_loads_fast(scifact_dir):
    start = time.perf_counter()
    c = load_collection(scifact_dir, "train", strict=True)
    elapsed = time.perf_counter() - start
    assert len(c.corpus) == 5183 and len(c.queries) == 809
    assert c.stats["unknown_doc_ids"] == 0 and all(c.positives(q) for q in c.queries)
    assert elapsed < 2.0, f"SciFact took {elapsed:.2f}s"
