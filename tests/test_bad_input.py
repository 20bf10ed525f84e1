"""Bad input to every loader and driver: each gives its documented one-line error naming file, line and field,
a counted drop, or is accepted (BOM, CRLF); never a traceback, never partial output under a final name.

The cases here are the rows of the "Reliability" table in BENCHMARKS.md.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tevatron_tele.data.collections import (
    CollectionError,
    check_split,
    collection_splits,
    load_collection,
    read_qrels,
)
from tevatron_tele.data.pools import PoolError, detect_pool_format, read_pool
from tevatron_tele.data.trec import RunFileError, read_run
from tevatron_tele.evaluation.metrics import evaluate_collection, evaluate_run
from tevatron_tele.runner.config import ConfigError, EpisodeArguments, load_config_file
from tevatron_tele.utils import InputFileError, read_json

CORPUS = [b'{"_id": "d1", "title": "Alpha", "text": "alpha text"}',
          b'{"_id": "d2", "title": "", "text": "beta text"}',
          b'{"_id": "d3", "text": "gamma text"}']
QUERIES = [b'{"_id": "q1", "text": "about alpha"}', b'{"_id": "q2", "text": "about beta"}']
QRELS = [b"query-id\tcorpus-id\tscore", b"q1\td1\t1", b"q2\td2\t2", b"q2\td3\t0"]


def _lines(rows: list[bytes], end: bytes = b"\n") -> bytes:
    return b"".join(r + end for r in rows)


def _beir(root: Path, corpus: bytes | None = None, queries: bytes | None = None, qrels: bytes | None = None) -> Path:
    """A 3-document BEIR collection with a test split; any file may be replaced by the given bytes."""
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_bytes(_lines(CORPUS) if corpus is None else corpus)
    (root / "queries.jsonl").write_bytes(_lines(QUERIES) if queries is None else queries)
    (root / "qrels" / "test.tsv").write_bytes(_lines(QRELS) if qrels is None else qrels)
    return root


def _raises(exc_type: type[BaseException], pattern: str, fn, *args, **kwargs) -> str:
    """Call fn, assert it raises exc_type whose one-line message matches `pattern`; return the message."""
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    assert re.search(pattern, message), f"{message!r} does not match {pattern!r}"
    return message


# ---------------------------------------------------------------- BEIR corpus, queries, qrels

BEIR_ERRORS = [
    # (case, which file, its bytes, expected message)
    ("truncated line", "corpus", _lines(CORPUS[:2]) + b'{"_id": "d3", "text": "gam',
     r"corpus\.jsonl:3: field '<json>': malformed JSON"),
    ("line not an object", "corpus", _lines([CORPUS[0], b'["d2", "beta"]']),
     r"corpus\.jsonl:2: field '<json>': expected an object, got list"),
    ("no _id", "corpus", _lines([CORPUS[0], b'{"title": "x", "text": "y"}']),
     r"corpus\.jsonl:2: field '_id': missing"),
    ("_id of wrong type", "corpus", _lines([CORPUS[0], b'{"_id": ["d2"], "text": "y"}']),
     r"corpus\.jsonl:2: field '_id': expected a string, got list"),
    ("text of wrong type", "corpus", _lines([CORPUS[0], b'{"_id": "d2", "text": {"a": 1}}']),
     r"corpus\.jsonl:2: field 'text': expected a string, got dict"),
    ("duplicate _id", "corpus", _lines(CORPUS + [b'{"_id": "d1", "text": "again"}']),
     r"corpus\.jsonl:4: field '_id': duplicate document id 'd1' \(first at .*corpus\.jsonl:1\)"),
    ("0-byte corpus", "corpus", b"", r"corpus\.jsonl: field '_id': empty: no documents"),
    ("blank-lines corpus", "corpus", b"\n\n  \n", r"corpus\.jsonl: field '_id': empty: no documents"),
    ("invalid UTF-8", "corpus", _lines([CORPUS[0], b'{"_id": "d2", "text": "caf\xe9"}']),
     r"corpus\.jsonl:2: field '<utf-8>': invalid UTF-8: byte 0xe9 at byte offset 80 of the file "
     r"\(byte 27 of the line\)"),
    ("empty query text", "queries", _lines([QUERIES[0], b'{"_id": "q2", "text": "  "}']),
     r"queries\.jsonl:2: field 'text': empty"),
    ("query text of wrong type", "queries", _lines([QUERIES[0], b'{"_id": "q2", "text": 3.5}']),
     r"queries\.jsonl:2: field 'text': expected a string, got float"),
    ("duplicate query id", "queries", _lines(QUERIES + [b'{"_id": "q1", "text": "again"}']),
     r"queries\.jsonl:3: field '_id': duplicate query id 'q1'"),
    ("0-byte queries", "queries", b"", r"queries\.jsonl: field '_id': empty: no queries"),
    ("non-numeric grade", "qrels", _lines(QRELS[:2] + [b"q2\td2\thigh"]),
     r"test\.tsv:3: field 'score': not a number: 'high'"),
    ("fractional grade", "qrels", _lines(QRELS[:2] + [b"q2\td2\t0.5"]),
     r"test\.tsv:3: field 'score': not an integer grade: '0\.5'"),
    ("NaN grade", "qrels", _lines(QRELS[:2] + [b"q2\td2\tnan"]), r"test\.tsv:3: field 'score': not an integer grade"),
    ("infinite grade", "qrels", _lines(QRELS[:2] + [b"q2\td2\tinf"]),
     r"test\.tsv:3: field 'score': not an integer grade"),
    ("duplicate judgement", "qrels", _lines(QRELS + [b"q1\td1\t2"]),
     r"test\.tsv:5: field 'corpus-id': duplicate judgement for query 'q1', document 'd1'"),
    ("wrong column count", "qrels", _lines(QRELS[:2] + [b"q2\td2"]),
     r"test\.tsv:3: field '<columns>': expected 3 \(query-id corpus-id score\) columns, got 2"),
    ("header only", "qrels", _lines(QRELS[:1]), r"test\.tsv: field 'query-id': empty: no judgements"),
    ("0-byte qrels", "qrels", b"", r"test\.tsv: field 'query-id': empty: no judgements"),
    ("qrels of another collection", "qrels", _lines(QRELS[:1] + [b"x1\td1\t1", b"x2\td2\t1"]),
     r"test\.tsv: no query is left: all 2 judged queries are unknown"),
]


@pytest.mark.parametrize("case,which,data,pattern", BEIR_ERRORS, ids=[c[0] for c in BEIR_ERRORS])
def test_beir_bad_file_is_a_one_line_error(tmp_path, case, which, data, pattern):
    root = _beir(tmp_path / "c", **{which: data})
    _raises(CollectionError, pattern, load_collection, root, "test")


def test_beir_corpus_is_a_directory(tmp_path):
    root = _beir(tmp_path / "c")
    (root / "corpus.jsonl").unlink()
    (root / "corpus.jsonl").mkdir()
    with pytest.raises(IsADirectoryError) as info:
        load_collection(root, "test")
    assert info.value.filename.endswith("corpus.jsonl")


def test_beir_missing_split_names_the_splits_there(tmp_path):
    _raises(FileNotFoundError, r"train\.tsv not found \(splits here: \['test'\]\)", load_collection,
            _beir(tmp_path / "c"), "train")


def test_beir_bom_and_crlf_are_read(tmp_path):
    bom = b"\xef\xbb\xbf"
    root = _beir(tmp_path / "c", corpus=bom + _lines(CORPUS, b"\r\n"), queries=bom + _lines(QUERIES, b"\r\n"),
                 qrels=bom + _lines(QRELS, b"\r\n"))
    c = load_collection(root, "test", strict=True)
    assert c.corpus.ids == ["d1", "d2", "d3"] and c.corpus.texts[2] == "gamma text"
    assert c.queries == {"q1": "about alpha", "q2": "about beta"}
    assert c.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 0}}


def test_beir_docid_instead_of_id_is_read(tmp_path):
    root = _beir(tmp_path / "c", corpus=_lines(CORPUS[:2] + [b'{"docid": "d3", "text": "gamma"}']))
    assert load_collection(root, "test").corpus.ids == ["d1", "d2", "d3"]


def test_unknown_ids_in_qrels_are_dropped_and_counted(tmp_path):
    root = _beir(tmp_path / "c", qrels=_lines(QRELS + [b"q9\td1\t1", b"q1\td9\t1", b"q2\td8\t1"]))
    c = load_collection(root, "test")
    assert c.stats["unknown_query_ids"] == 1 and c.stats["unknown_doc_ids"] == 2
    assert c.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 0}}
    _raises(CollectionError, r"test\.tsv: 1 qrels queries and 2 judged documents are unknown", load_collection,
            root, "test", strict=True)


def test_negative_grade_is_kept_as_not_relevant(tmp_path):
    """TREC's junk grade (-2): read, never a positive, and ir-measures treats it like trec_eval."""
    root = _beir(tmp_path / "c", qrels=_lines(QRELS[:2] + [b"q2\td2\t-2", b"q2\td3\t1"]))
    c = load_collection(root, "test", strict=True)
    assert c.qrels["q2"] == {"d2": -2, "d3": 1} and c.positives("q2") == ["d3"]
    scores = evaluate_run({"q1": [("d1", 2.0)], "q2": [("d2", 2.0), ("d3", 1.0)]}, c.qrels, ["MRR@10", "R@20"])
    assert scores == {"MRR@10": pytest.approx(0.75), "R@20": pytest.approx(1.0)}


# ---------------------------------------------------------------- TREC qrels, MS MARCO, DPR, Tevatron

def test_trec_qrels_errors_use_trec_column_names(tmp_path):
    path = tmp_path / "qrels.txt"
    path.write_text("q1 0 d1 x\n")  # line 1 is no header: its grade is checked, not skipped
    _raises(CollectionError, r"qrels\.txt:1: field 'grade': not a number: 'x'", read_qrels, path)
    path.write_text("q1 0 d1 1\nq1 0 d1 0\n")
    _raises(CollectionError, r"qrels\.txt:2: field 'docid': duplicate judgement", read_qrels, path)
    path.write_text("q1 d1\nq2 d2\n")  # a headerless 2-column list of relevant pairs keeps its first line
    assert read_qrels(path) == {"q1": {"d1": 1}, "q2": {"d2": 1}}


def _msmarco(root: Path, collection: bytes, queries: bytes = b"1\tfirst q\n2\tsecond q\n",
             qrels: bytes = b"1\t0\t0\t1\n2\t0\t1\t1\n") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "collection.tsv").write_bytes(collection)
    (root / "queries.train.tsv").write_bytes(queries)
    (root / "qrels.train.tsv").write_bytes(qrels)
    return root


def test_msmarco_bad_lines(tmp_path):
    _raises(CollectionError, r"collection\.tsv:2: field '<columns>': expected 2 \(id, text\) or 3",
            load_collection, _msmarco(tmp_path / "a", b"0\tzero\n1\tone\ttwo\tthree\n"))
    _raises(CollectionError, r"collection\.tsv:2: field '<utf-8>': invalid UTF-8: byte 0xff at byte offset 10 ",
            load_collection, _msmarco(tmp_path / "b", b"0\tzero\n1\to\xffne\n"))
    _raises(CollectionError, r"queries\.train\.tsv:2: field 'text': empty", load_collection,
            _msmarco(tmp_path / "c", b"0\tzero\n1\tone\n", queries=b"1\tfirst q\n2\t \n"))
    _raises(CollectionError, r"collection\.tsv: field 'id': empty: no passages", load_collection,
            _msmarco(tmp_path / "d", b""))


def test_msmarco_bom_and_crlf_are_read(tmp_path):
    root = _msmarco(tmp_path / "a", b"\xef\xbb\xbf0\tzero\r\n1\tone\r\n", queries=b"\xef\xbb\xbf1\tfirst q\r\n",
                    qrels=b"1\t0\t0\t1\r\n")
    c = load_collection(root, strict=True)
    assert c.corpus.ids == ["0", "1"] and c.corpus.texts == ["zero", "one"] and c.queries == {"1": "first q"}


def _dpr(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


DPR_ITEM = {"question": "who wrote x", "answers": ["Ann"],
            "positive_ctxs": [{"passage_id": "11", "title": "X", "text": "Ann wrote x"}]}


def test_dpr_bad_files(tmp_path):
    good = json.dumps([DPR_ITEM], indent=1).encode()
    _raises(CollectionError, r"nq\.json:\d+: field '<json>': malformed JSON", load_collection,
            _dpr(tmp_path / "nq.json", good[:-10]))
    _raises(CollectionError, r"nq\.json: field '<json>': empty: no questions", load_collection,
            _dpr(tmp_path / "nq.json", b""))
    _raises(CollectionError, r"nq\.json:1: field '<json>': expected a list of questions, got dict", load_collection,
            _dpr(tmp_path / "nq.json", b'{"question": "q"}'))
    _raises(CollectionError, r"nq\.json:item 0: field 'answers': missing or not a list of strings", load_collection,
            _dpr(tmp_path / "nq.json", json.dumps([{**DPR_ITEM, "answers": "Ann"}]).encode()))
    _raises(CollectionError, r"nq\.json:3: field '<utf-8>': invalid UTF-8: byte 0xff", load_collection,
            _dpr(tmp_path / "nq.json", good.replace(b"who", b"wh\xff")))
    bom = load_collection(_dpr(tmp_path / "nq.json", b"\xef\xbb\xbf" + good.replace(b"\n", b"\r\n")))
    assert bom.queries == {"0": "who wrote x"} and bom.corpus.ids == ["11"]


def test_tevatron_bad_lines(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"query_id": "1", "query": "q", "positive_passages": {"docid": "a", "text": "t"}}\n')
    _raises(CollectionError, r"train\.jsonl:1: field 'positive_passages': not a list", load_collection, path)
    path.write_text('{"query_id": "1", "query": "", "positive_passages": []}\n')
    _raises(CollectionError, r"train\.jsonl:1: field 'query': empty", load_collection, path)
    path.write_bytes(b"")
    _raises(CollectionError, r"train\.jsonl: field 'query_id': empty: no queries", load_collection, path)


# ---------------------------------------------------------------- collections without splits

def test_collections_without_splits_refuse_another_split(tmp_path):
    dpr = _dpr(tmp_path / "nq-train.json", json.dumps([DPR_ITEM]).encode())
    tev = tmp_path / "train.jsonl"
    tev.write_text('{"query_id": "1", "query": "q", "positive_passages": [{"docid": "a", "text": "t"}]}\n')
    assert collection_splits(dpr) is None and collection_splits(tev) is None
    assert collection_splits(_beir(tmp_path / "c")) == ["test"]
    for path, kind in ((dpr, "DPR json"), (tev, "Tevatron jsonl")):
        _raises(CollectionError, rf"{path.name}: field 'split': a {kind} file has no splits .* pass --split '' to "
                                 "read all its queries", load_collection, path, "test")
        assert load_collection(path, "").queries == load_collection(path).queries == load_collection(path, None).queries
    _raises(CollectionError, r"nq-train\.json: field 'eval_split': a DPR json file has no splits: --eval_split 'test' "
                             r"would evaluate on the training queries; pass --eval_split '' and give held-out",
            check_split, dpr, "test", flag="--eval_split")
    # evaluating a file without splits reads all of it
    assert evaluate_collection({"0": [("11", 1.0)]}, dpr, ["MRR@10"], [1])["MRR@10"] == 1.0


def test_runner_refuses_the_default_eval_split_on_a_dpr_file(tmp_path):
    """`--eval_split` defaults to test; on a DPR file that would be the training queries, silently."""
    from tevatron_tele.runner.episodes import EpisodeRunner

    dpr = _dpr(tmp_path / "nq-train.json", json.dumps([DPR_ITEM]).encode())
    args = EpisodeArguments(output_dir=str(tmp_path / "run"), model_name_or_path="unused", collection=str(dpr),
                            device="cpu")
    _raises(CollectionError, r"field 'eval_split'.*pass --eval_split ''", EpisodeRunner, args)
    assert not (tmp_path / "run").exists()
    args.eval_split = ""
    runner = EpisodeRunner(args)
    assert runner.collections.evals == {} and list(runner.collections.train.queries) == ["0"]


# ---------------------------------------------------------------- run files

RUN_ERRORS = [
    ("NaN score", b"q1 Q0 d1 1 2.0 t\nq1 Q0 d2 2 nan t\n", r"run\.trec:2: field 'score': not a finite number: 'nan'"),
    ("infinite score", b"q1 Q0 d1 1 inf t\n", r"run\.trec:1: field 'score': not a finite number: 'inf'"),
    ("non-numeric score", b"q1 Q0 d1 1 high t\n", r"run\.trec:1: field 'score': not a number: 'high'"),
    ("non-integer rank", b"q1 Q0 d1 first 1.0 t\n", r"run\.trec:1: field 'rank': not an integer: 'first'"),
    ("wrong column count", b"q1 Q0 d1 1 1.0\n", r"run\.trec:1: field '<columns>': expected 6 columns .*got 5"),
    ("document twice for a query", b"q1 Q0 d1 1 2.0 t\nq2 Q0 d1 1 2.0 t\nq1 Q0 d1 2 1.0 t\n",
     r"run\.trec:3: field 'docid': document 'd1' listed twice for query 'q1' \(first at line 1\)"),
    ("0-byte run", b"", r"run\.trec: field '<file>': empty: no ranked documents"),
    ("invalid UTF-8", b"q1 Q0 d1 1 2.0 t\nq1 Q0 d\x80 2 1.0 t\n",
     r"run\.trec:2: field '<utf-8>': invalid UTF-8: byte 0x80 at byte offset 24 "),
]


@pytest.mark.parametrize("case,data,pattern", RUN_ERRORS, ids=[c[0] for c in RUN_ERRORS])
def test_bad_run_file_is_a_one_line_error(tmp_path, case, data, pattern):
    (tmp_path / "run.trec").write_bytes(data)
    _raises(RunFileError, pattern, read_run, tmp_path / "run.trec")


def test_run_bom_crlf_and_unknown_ids_are_accepted(tmp_path):
    """Ids a collection lacks are not relevant (as in trec_eval); queries without judgements are not scored."""
    path = tmp_path / "run.trec"
    path.write_bytes(b"\xef\xbb\xbfq1 Q0 dX 1 3.0 t\r\nq1 Q0 d1 2 2.0 t\r\nqX Q0 d1 1 1.0 t\r\n")
    run = read_run(path)
    assert run == {"q1": [("dX", 3.0), ("d1", 2.0)], "qX": [("d1", 1.0)]}
    assert evaluate_run(run, {"q1": {"d1": 1}}, ["MRR@10"]) == {"MRR@10": pytest.approx(0.5)}


def test_qa_run_naming_a_passage_the_corpus_lacks_is_refused(tmp_path):
    dpr = load_collection(_dpr(tmp_path / "nq.json", json.dumps([DPR_ITEM]).encode()))
    _raises(ValueError, r"ranks document 'd404' for question '0', but the corpus \(1 passages\) has no such",
            evaluate_collection, {"0": [("d404", 1.0)]}, dpr, ["MRR@10"], [1])


# ---------------------------------------------------------------- pools

def _pool_line(**change) -> str:
    line = {"query_id": "q1", "query_text": "about alpha", "positive_document_ids": ["d1"],
            "negative_document_ids": ["d2"], "sources": {"ann": ["d2"]}}
    return json.dumps({**line, **change})


POOL_ERRORS = [
    ("names a missing passage", [_pool_line(negative_document_ids=["d2", "d404"])],
     r"pool\.jsonl:1: field 'negative_document_ids': unknown document id 'd404'"),
    ("missing positive passage", [_pool_line(positive_document_ids=["d404"])],
     r"pool\.jsonl:1: field 'positive_document_ids': unknown document id 'd404'"),
    ("empty query text", [_pool_line(), _pool_line(query_id="q2", query_text=" ")],
     r"pool\.jsonl:2: field 'query_text': empty"),
    ("truncated line", [_pool_line(), _pool_line()[:-5]], r"pool\.jsonl:2: field '<json>': malformed JSON"),
    ("ids of wrong type", [_pool_line(negative_document_ids="d2")],
     r"pool\.jsonl:1: field 'negative_document_ids': expected a list of id strings, got str"),
    ("duplicate query id", [_pool_line(), _pool_line()],
     r"pool\.jsonl:2: field 'query_id': duplicate query id 'q1' \(first at line 1\)"),
]


@pytest.mark.parametrize("case,lines,pattern", POOL_ERRORS, ids=[c[0] for c in POOL_ERRORS])
def test_bad_pool_is_a_one_line_error(tmp_path, case, lines, pattern):
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    _raises(PoolError, pattern, read_pool, path, known_doc_ids={"d1", "d2", "d3"})


def test_pool_file_level_problems(tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_bytes(b"")
    _raises(PoolError, r"pool\.jsonl: field '<file>': empty: no training queries", detect_pool_format, path)
    path.write_text('{"query_id": "q1", "query_text": \n')
    _raises(PoolError, r"pool\.jsonl:1: field '<json>': malformed JSON", detect_pool_format, path)
    path.write_text('{"qid": "q1"}\n')
    _raises(PoolError, r"pool\.jsonl:1: field 'query_id': missing", detect_pool_format, path)
    bad = _pool_line(query_id="q2").encode().replace(b"q2", b"q\xff")
    path.write_bytes(_pool_line().encode() + b"\n" + bad + b"\n")
    _raises(PoolError, r"pool\.jsonl:2: field '<utf-8>': invalid UTF-8: byte 0xff", read_pool, path)


def test_pool_query_unknown_to_the_collection_is_accepted(tmp_path):
    """A pool line carries its query text, so a query id the collection lacks still trains."""
    path = tmp_path / "pool.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + _pool_line(query_id="q-new").encode() + b"\r\n")
    (entry,) = read_pool(path, known_doc_ids={"d1", "d2"})
    assert entry.query_id == "q-new" and entry.query_text == "about alpha"


# ---------------------------------------------------------------- settings files and other JSON

def test_config_file_problems(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("num_episodes: 2\nlerning_rate: 1e-5\n")
    _raises(ConfigError, r"run\.yaml:2: field 'lerning_rate': unknown setting; did you mean 'learning_rate'\?",
            load_config_file, path)
    path.write_text("num_episodes: 2\nnegatives: [ann\n")
    _raises(ConfigError, r"run\.yaml:3: field '<yaml>': malformed YAML", load_config_file, path)
    path.write_text("- num_episodes\n")
    _raises(ConfigError, r"run\.yaml:1: field '<yaml>': expected a mapping of setting names to values, got list",
            load_config_file, path)
    path = tmp_path / "run.json"
    path.write_text('{"num_episodes": 2,\n "seed": }\n')
    _raises(ConfigError, r"run\.json:2: field '<json>': malformed JSON", load_config_file, path)
    path.write_bytes(b'\xef\xbb\xbf{"num_episodes": 2}\r\n')
    assert load_config_file(path) == {"num_episodes": 2}
    with pytest.raises(FileNotFoundError):
        load_config_file(tmp_path / "missing.yaml")


def test_json_file_problems(tmp_path):
    from tevatron_tele.driver.analyze import read_probe

    path = tmp_path / "probe.json"
    path.write_bytes(b"")
    _raises(InputFileError, r"probe\.json:1: field '<json>': empty file", read_json, path)
    path.write_text('{"q1": ["d1"],\n "q2": [}')
    _raises(InputFileError, r"probe\.json:2: field '<json>': malformed JSON", read_json, path)
    path.write_text('{"q1": ["d1"], "q2": 5}')
    _raises(InputFileError, r"probe\.json: field 'q2': expected a list of document ids", read_probe, str(path))


def test_invalid_flag_value_is_a_value_error():
    with pytest.raises(ValueError, match=r"--negatives must be one of"):
        EpisodeArguments(output_dir="x", model_name_or_path="m", collection="c", negatives="random")


# ---------------------------------------------------------------- the drivers, as a user runs them

def _driver(name: str, *args: str, cwd: Path, debug: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TELE_DEBUG"}
    if debug:
        env["TELE_DEBUG"] = "1"
    return subprocess.run([sys.executable, "-m", f"tevatron_tele.driver.{name}", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


_LOG_LINE = re.compile(r"^\d\d/\d\d/\d{4} \d\d:\d\d:\d\d - (INFO|WARNING) - tevatron_tele\.")


def _one_line_error(proc: subprocess.CompletedProcess, pattern: str, *, after_log: bool = False) -> str:
    """Exit status 2 and one `error:` line on stderr; with `after_log`, the driver's own log lines may come first
    (a step that logged progress before it met the bad input)."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 or (after_log and all(_LOG_LINE.match(line) for line in lines[:-1])), proc.stderr
    assert re.search(pattern, lines[-1]), lines[-1]
    return lines[-1]


def _no_output(folder: Path, *names: str) -> None:
    """Nothing under a final name, and no temporary leftovers."""
    for name in names:
        assert not (folder / name).exists(), name
    assert not list(folder.glob(".tmp-*")), list(folder.glob(".tmp-*"))


def test_evaluate_driver_errors_are_one_line(tmp_path):
    (tmp_path / "run.trec").write_text("q1 Q0 d1 1 2.0 t\nq2 Q0 d2 1 1.0 t\n")
    cases = [
        ("corpus.jsonl", _lines(CORPUS[:2]) + b'{"_id": "d3", "text": "gam',
         r"^error: c/corpus\.jsonl:3: field '<json>': malformed JSON \(.*\)$"),
        ("corpus.jsonl", _lines([CORPUS[0], b'{"title": "x", "text": "y"}']),
         r"^error: c/corpus\.jsonl:2: field '_id': missing"),
        ("corpus.jsonl", _lines([CORPUS[0], b'{"_id": "d2", "text": "caf\xe9"}']),
         r"^error: c/corpus\.jsonl:2: field '<utf-8>': invalid UTF-8: byte 0xe9 at byte offset 80 "),
    ]
    for name, data, pattern in cases:
        root = _beir(tmp_path / "c")
        (root / name).write_bytes(data)
        _one_line_error(_driver("evaluate", "--run", "run.trec", "--collection", "c", cwd=tmp_path), pattern)
        _no_output(tmp_path, "run.eval.json")
    (tmp_path / "nan.trec").write_text("q1 Q0 d1 1 nan t\n")
    _one_line_error(_driver("evaluate", "--run", "nan.trec", "--qrels", "c/qrels/test.tsv", cwd=tmp_path),
                    r"^error: nan\.trec:1: field 'score': not a finite number: 'nan'$")
    _no_output(tmp_path, "nan.eval.json")
    (tmp_path / "rundir").mkdir()
    _one_line_error(_driver("evaluate", "--run", "rundir", "--qrels", "c/qrels/test.tsv", cwd=tmp_path),
                    r"^error: rundir: Is a directory$")
    _one_line_error(_driver("evaluate", "--run", "run.trec", cwd=tmp_path),
                    r"^error: give exactly one of --qrels or --collection$")


def test_evaluate_driver_debug_shows_the_traceback(tmp_path):
    root = _beir(tmp_path / "c", corpus=_lines([CORPUS[0], b'{"title": "x", "text": "y"}']))
    (tmp_path / "run.trec").write_text("q1 Q0 d1 1 2.0 t\n")
    for proc in (_driver("evaluate", "--debug", "--run", "run.trec", "--collection", "c", cwd=tmp_path),
                 _driver("evaluate", "--run", "run.trec", "--collection", "c", cwd=tmp_path, debug=True)):
        assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr, proc.stderr
        assert proc.stderr.rstrip().splitlines()[-1].startswith("tevatron_tele.data.collections.CollectionError: "
                                                                "c/corpus.jsonl:2: field '_id': missing")
    assert root.exists()
    _one_line_error(_driver("evaluate", "--run", "run.trec", "--no_such_flag", "1", cwd=tmp_path),
                    r"^error: Some specified arguments are not used by the HfArgumentParser: \['--no_such_flag', "
                    r"'1'\]$")
    usage = _driver("evaluate", "--run", "run.trec", "--trec_eval", "maybe", cwd=tmp_path)  # argparse's own error
    assert usage.returncode == 2 and usage.stderr.startswith("usage: ") and "Traceback" not in usage.stderr
    assert re.match(r"^evaluate\.py: error: argument --trec_eval.*: Truthy value expected: got maybe",
                    usage.stderr.splitlines()[-1]), usage.stderr


def test_episodes_driver_errors_are_one_line(tmp_path):
    (tmp_path / "run.yaml").write_text("num_episodes: 2\nlerning_rate: 1e-5\n")
    _one_line_error(_driver("episodes", "--config", "run.yaml", cwd=tmp_path),
                    r"^error: run\.yaml:2: field 'lerning_rate': unknown setting; did you mean 'learning_rate'\?$")
    _dpr(tmp_path / "nq-train.json", json.dumps([DPR_ITEM]).encode())
    flags = ["--output_dir", "run", "--model_name_or_path", "m", "--collection", "nq-train.json", "--device", "cpu"]
    _one_line_error(_driver("episodes", *flags, cwd=tmp_path),
                    r"^error: nq-train\.json: field 'eval_split': .* pass --eval_split ''")
    _one_line_error(_driver("episodes", *flags, "--negatives", "random", cwd=tmp_path),
                    r"^error: --negatives must be one of")
    _no_output(tmp_path, "run")


def test_export_and_mine_drivers_leave_no_output(tmp_path):
    root = _beir(tmp_path / "c", corpus=_lines([CORPUS[0], b'{"_id": "d2", "text": "beta"}', CORPUS[0]]))
    _one_line_error(_driver("export_corpus", "--collection", "c", "--output", "out/corpus.jsonl", cwd=tmp_path),
                    r"^error: c/corpus\.jsonl:3: field '_id': duplicate document id 'd1'")
    _no_output(tmp_path / "out", "corpus.jsonl")
    _beir(root)
    (tmp_path / "q.trec").write_text("q1 Q0 d2 1 1.0 t\nq1 Q0 d3 2 -inf t\n")
    _one_line_error(_driver("mine", "--collection", "c", "--split", "test", "--output", "out/pool.jsonl",
                            "--query_run", "q.trec", cwd=tmp_path),
                    r"^error: q\.trec:2: field 'score': not a finite number: '-inf'$", after_log=True)
    _no_output(tmp_path / "out", "pool.jsonl", "pool.stats.json")


def test_cli_folds_multiline_messages_and_keeps_other_errors():
    from tevatron_tele.cli import format_error, is_input_error, strip_debug_flag
    from tevatron_tele.runner.workspace import ConfigMismatchError

    err = ConfigMismatchError("runs/x holds a run made with other settings. Differences (stored -> given):\n"
                              "  seed: 1 -> 2\n  depth: 200 -> 100")
    assert format_error(err) == ("error: runs/x holds a run made with other settings. Differences (stored -> given): "
                                 "seed: 1 -> 2; depth: 200 -> 100")
    assert is_input_error(err) and is_input_error(FileNotFoundError("x"))
    assert not is_input_error(RuntimeError("a bug")) and not is_input_error(KeyError("k"))
    assert is_input_error(OSError(28, "No space left on device"))  # the file system's answer: one line
    assert not is_input_error(OSError(5, "Input/output error"))  # a broken device keeps its traceback
    assert strip_debug_flag(["--a", "1", "--debug"]) == ["--a", "1"]
    assert strip_debug_flag(["--debug", "underflow_overflow", "--debug"], keep_with_value=True) == [
        "--debug", "underflow_overflow"]


DRIVER_ERRORS = [
    # (driver, arguments, files to write first, expected error line)
    ("analyze", ["--out", "report", "--probe", "probe.json", "runs/x"], {"probe.json": b"[1, 2]"},
     r"^error: probe\.json:1: field '<json>': expected an object of query id -> document ids, got list$"),
    ("demo", ["--output_dir", "demo", "--collection", "no-such-dir", "--model", "m"], {},
     r"^error: no-such-dir not found$"),
    ("encode", ["--model_dir", "m", "--collection", "c", "--output", "e", "--encode", "passages"], {},
     r"^error: --encode must be one of corpus, queries, positives; got 'passages'$"),
    ("search", ["--output", "bm25.trec", "--method", "bm25"], {},
     r"^error: --method bm25 needs --collection and --index_dir$"),
    ("train", ["train.json"], {"train.json": b'{"output_dir": "out",\n "pool": }'},
     r"^error: train\.json:2: field '<json>': malformed JSON"),
]


@pytest.mark.parametrize("driver,args,files,pattern", DRIVER_ERRORS, ids=[c[0] for c in DRIVER_ERRORS])
def test_every_driver_reports_a_bad_input_in_one_line(tmp_path, driver, args, files, pattern):
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    _one_line_error(_driver(driver, *args, cwd=tmp_path), pattern)
    _no_output(tmp_path, "report", "demo", "e.npy", "bm25.trec", "out")
