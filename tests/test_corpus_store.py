"""The on-disk corpus: a store-backed Corpus reads as the in-memory one did, is reused while its files are unchanged,
is never left half-built, and gives the same token caches; the IdIndex finds ids through hash collisions."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import transformers

from tevatron_tele.data import collections, corpus_store, id_index
from tevatron_tele.data.collections import CollectionError, Corpus, load_collection, load_corpus
from tevatron_tele.data.corpus_export import write_corpus_jsonl
from tevatron_tele.data.corpus_store import ArrowStrings, store_folder
from tevatron_tele.data.id_index import IdIndex, hash_ids
from tevatron_tele.data.pools import PoolEntry, PoolError, read_pool, write_pool
from tevatron_tele.data.token_cache import corpus_token_cache

DOCS = [{"_id": f"d{i}", "title": f"Title {i}" if i % 3 else "", "text": f"text of passage {i} caf\u00e9 \u00fcber"}
        for i in range(11)]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """A cache root per test, and small batches so that every column spans several record batches."""
    root = tmp_path / "cache"
    monkeypatch.setenv("TEVATRON_TELE_CACHE", str(root))
    monkeypatch.setattr(corpus_store, "_BATCH_ROWS", 4)
    monkeypatch.setattr(corpus_store, "_READ_ROWS", 3)
    return root


@pytest.fixture
def settled(monkeypatch):
    """Trust stores of files written a moment ago (the test's files are not 2 s old)."""
    monkeypatch.setattr(corpus_store, "_SETTLE_NS", 0)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _beir(root: Path, docs: list[dict] = DOCS) -> Path:
    _write_jsonl(root / "corpus.jsonl", docs)
    _write_jsonl(root / "queries.jsonl", [{"_id": "q1", "text": "a question"}])
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td4\t0\n", encoding="utf-8")
    return root


def _parse_counter(monkeypatch, name: str) -> list[Path]:
    """Record each call of the loader's parse function `name` (it runs only when a store is built)."""
    calls: list[Path] = []
    real = getattr(collections, name)

    def counting(path, *args, **kwargs):
        calls.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(collections, name, counting)
    return calls


def _stores(root: Path) -> list[str]:
    """The entries under the cache's corpus folder, lock files aside."""
    folder = root / "corpus"
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) if folder.is_dir() else []


def _assert_same_corpus(store_backed: Corpus, ids: list[str], titles: list[str], texts: list[str]) -> None:
    assert isinstance(store_backed.ids, ArrowStrings) and isinstance(store_backed.texts, ArrowStrings)
    assert list(store_backed.ids) == ids and list(store_backed.titles) == titles and list(store_backed.texts) == texts
    assert store_backed.ids == ids and ids == store_backed.ids and store_backed.texts != texts[::-1]
    assert store_backed == Corpus(ids, titles, texts)
    assert len(store_backed) == len(store_backed.texts) == len(ids)
    assert [store_backed.texts[i] for i in range(len(texts))] == texts
    assert store_backed.texts[-1] == texts[-1] and store_backed.ids[np.int64(1)] == ids[1]
    assert store_backed.texts[2:7] == texts[2:7] and store_backed.ids[::4] == ids[::4] and store_backed.ids[5:2] == []
    with pytest.raises(IndexError):
        store_backed.texts[len(texts)]
    assert list(zip(store_backed.ids, store_backed.titles, store_backed.texts)) == list(zip(ids, titles, texts))
    assert set(store_backed.ids) == set(ids)
    in_memory = Corpus(ids, titles, texts)
    for i, docid in enumerate(ids):
        assert store_backed.position(docid) == in_memory.position(docid) == i and docid in store_backed
        assert store_backed.passage_text(i, "[SEP]") == in_memory.passage_text(i, "[SEP]")
    n = len(ids)
    assert store_backed.passage_texts(1, n, "[SEP]") == [in_memory.passage_text(i, "[SEP]") for i in range(1, n)]
    assert "nope" not in store_backed and 3 not in store_backed
    with pytest.raises(KeyError, match=r"document id 'nope' is not in the corpus \(\d+ documents\)"):
        store_backed.position("nope")


# ---------------------------------------------------------------- the store-backed corpus reads as before

def test_beir_store_equals_the_lists(tmp_path):
    root = _beir(tmp_path / "b", DOCS[:10] + [{"docid": "d10", "text": "read by its docid field"}])
    collection = load_collection(root, "test", strict=True)
    ids = [d.get("_id", d.get("docid")) for d in DOCS]
    titles = [d.get("title", "") for d in DOCS[:10]] + [""]
    texts = [d["text"] for d in DOCS[:10]] + ["read by its docid field"]
    _assert_same_corpus(collection.corpus, ids, titles, texts)
    assert collection.qrels == {"q1": {"d1": 1, "d4": 0}}
    assert collection.corpus.source_reader == "beir" and collection.corpus.source_files[0][0].endswith("corpus.jsonl")
    assert load_corpus(root).ids == ids


def test_tsv_store_equals_the_lists(tmp_path):
    path = tmp_path / "m" / "collection.tsv"
    path.parent.mkdir()
    rows = [(str(i), f"T{i}" if i % 2 else "", f"passage {i}") for i in range(9)]
    path.write_text("".join(f"{i}\t{t}\t{x}\n" if t else f"{i}\t{x}\n" for i, t, x in rows), encoding="utf-8")
    corpus = load_corpus(path)
    _assert_same_corpus(corpus, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
    assert corpus.source_reader == "tsv"


def test_dpr_and_tevatron_corpora_are_stored_once_per_passage(tmp_path):
    items = [{"question": "q0", "answers": ["a"], "positive_ctxs": [{"passage_id": "1", "title": "T", "text": "one"}],
              "hard_negative_ctxs": [{"passage_id": "2", "text": "two"}, {"passage_id": "1", "text": "one"}]},
             {"question": "q1", "answers": ["b"], "positive_ctxs": [{"passage_id": "2", "text": "two"}]}]
    dpr = tmp_path / "nq.json"
    dpr.write_text(json.dumps(items), encoding="utf-8")
    _assert_same_corpus(load_collection(dpr).corpus, ["1", "2"], ["T", ""], ["one", "two"])
    rows = [{"query_id": "1", "query": "q", "positive_passages": [{"docid": "a", "text": "ta"}],
             "negative_passages": [{"docid": "b", "title": "B", "text": "tb"}]},
            {"query_id": "2", "query": "r", "positive_passages": [{"docid": "b", "title": "B", "text": "tb"}]}]
    collection = load_collection(_write_jsonl(tmp_path / "train.jsonl", rows))
    _assert_same_corpus(collection.corpus, ["a", "b"], ["", "B"], ["ta", "tb"])
    assert collection.qrels == {"1": {"a": 1}, "2": {"b": 1}}


def test_in_memory_corpus_is_unchanged():
    corpus = Corpus(["a", "b"], ["T", ""], ["x", "y"])
    assert isinstance(corpus.ids, list) and corpus.position("b") == 1 and "a" in corpus and "c" not in corpus
    assert corpus.passage_texts(0, 2, "|") == ["T | x", "y"] and corpus.source_files == ()
    derived = dataclasses.replace(corpus, ids=["c", "d"])
    assert derived.position("d") == 1 and "a" not in derived


# ---------------------------------------------------------------- reuse and rebuild

def test_second_load_reuses_the_store_and_a_changed_file_rebuilds(tmp_path, cache, monkeypatch, settled):
    root = _beir(tmp_path / "b")
    parses = _parse_counter(monkeypatch, "_read_beir_corpus")
    first = load_collection(root, "test")
    assert len(parses) == 1 and _stores(cache) == [store_folder(first.corpus.source_files, "beir").name]
    folder = cache / "corpus" / _stores(cache)[0]
    built = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = load_collection(root, "test")
    assert len(parses) == 1, "the unchanged file was parsed again"
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == built
    assert again.corpus.ids == first.corpus.ids and again.corpus.position("d7") == 7

    _beir(root, DOCS + [{"_id": "new", "text": "added"}])  # a changed file: another stamp, another store
    changed = load_collection(root, "test")
    assert len(parses) == 2 and changed.corpus.ids[-1] == "new" and changed.corpus.position("new") == len(DOCS)
    assert len(_stores(cache)) == 2  # the former file's store is left (the first corpus still maps it)
    assert first.corpus.texts[3] == DOCS[3]["text"] and "new" not in first.corpus


def test_store_of_a_file_changed_just_before_is_not_trusted(tmp_path, monkeypatch):
    """A file changed within _SETTLE_NS of the build could change again without a new stamp: not reused."""
    monkeypatch.setattr(corpus_store, "_SETTLE_NS", 60_000_000_000)
    root = _beir(tmp_path / "b")
    parses = _parse_counter(monkeypatch, "_read_beir_corpus")
    load_collection(root, "test")
    corpus = load_collection(root, "test").corpus
    assert len(parses) == 2 and corpus.ids == [d["_id"] for d in DOCS]


def test_concurrent_loads_of_a_fresh_file_build_once(tmp_path, monkeypatch):
    """Loaders that waited for another's build take its store, even of a file too fresh for a store built before."""
    root = _beir(tmp_path / "b")
    parses = _parse_counter(monkeypatch, "_read_beir_corpus")
    asked = threading.Semaphore(0)
    real_folder, real_build = corpus_store.store_folder, corpus_store._build

    def store_folder(*args):
        asked.release()
        return real_folder(*args)

    def build(*args):
        if not parses:  # the first build starts once every loader has asked (and waits for the lock)
            for _ in range(4):
                asked.acquire()
            time.sleep(0.05)
        real_build(*args)

    monkeypatch.setattr(corpus_store, "store_folder", store_folder)
    monkeypatch.setattr(corpus_store, "_build", build)
    with ThreadPoolExecutor(4) as pool:
        corpora = list(pool.map(lambda _: load_corpus(root), range(4)))
    assert len(parses) == 1
    assert all(c.ids == [d["_id"] for d in DOCS] for c in corpora)
    assert len({c._index.folder for c in corpora}) == 1
    load_corpus(root)  # a load that did not wait for that build: the file is too fresh to trust it
    assert len(parses) == 2


# ---------------------------------------------------------------- errors leave nothing behind

def test_duplicate_id_names_both_lines_and_leaves_no_store(tmp_path, cache):
    docs = DOCS[:5] + [{"docid": "d1", "text": "again"}] + DOCS[5:] + [{"_id": "d2", "text": "and again"}]
    root = _beir(tmp_path / "b", docs)
    with pytest.raises(CollectionError) as info:
        load_collection(root, "test")
    path = root / "corpus.jsonl"
    assert str(info.value) == f"{path}:6: field 'docid': duplicate document id 'd1' (first at {path}:2)"
    tsv = tmp_path / "c.tsv"
    tsv.write_text("1\tone\n2\ttwo\n3\tthree\n2\tdeux\n", encoding="utf-8")
    with pytest.raises(CollectionError) as info:
        load_corpus(tsv)
    assert str(info.value) == f"{tsv}:4: field 'id': duplicate document id '2' (first at {tsv}:2)"
    assert _stores(cache) == []


def test_failed_load_leaves_no_store(tmp_path, cache, settled):
    root = _beir(tmp_path / "b")
    good = (root / "corpus.jsonl").read_bytes()
    (root / "corpus.jsonl").write_bytes(good + b'{"_id": "x", "text": ')
    with pytest.raises(CollectionError, match=rf"corpus\.jsonl:{len(DOCS) + 1}: field '<json>': malformed JSON"):
        load_collection(root, "test")
    assert _stores(cache) == []  # neither a store nor a .partial
    with pytest.raises(CollectionError, match=r"field '_id': empty: no documents"):
        load_corpus(_write_jsonl(tmp_path / "empty" / "corpus.jsonl", []))
    assert _stores(cache) == []


def test_lone_surrogate_is_a_one_line_error(tmp_path, cache):
    """JSON can escape half a surrogate pair, which no UTF-8 column (nor a tokenizer) can hold."""
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "ab\\ud800c"}\n', encoding="utf-8")
    with pytest.raises(CollectionError) as info:
        load_corpus(path)
    assert str(info.value) == f"{path}:2: field 'text': not valid Unicode: lone surrogate '\\ud800' at character 2"
    assert _stores(cache) == []


def test_killed_build_leaves_a_partial_that_is_never_used(tmp_path, cache, settled):
    root = _beir(tmp_path / "b")
    script = textwrap.dedent(f"""
        import os
        from tevatron_tele.data import corpus_store
        from tevatron_tele.data.collections import load_collection
        corpus_store._BATCH_ROWS = 2
        real_add = corpus_store.CorpusWriter.add
        def add(self, *args):
            if len(self) == 5:
                os._exit(3)  # killed mid-build: no cleanup runs
            real_add(self, *args)
        corpus_store.CorpusWriter.add = add
        load_collection({str(root)!r}, "test")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TEVATRON_TELE_CACHE": str(cache)})
    assert proc.returncode == 3, proc.stderr[-2000:]
    left = _stores(cache)
    assert len(left) == 1 and left[0].endswith(".partial")
    assert (cache / "corpus" / left[0] / corpus_store.CORPUS_FILE).stat().st_size > 0
    corpus = load_collection(root, "test").corpus
    assert corpus.ids == [d["_id"] for d in DOCS] and corpus.texts[10] == DOCS[10]["text"]
    assert _stores(cache) == [left[0][: -len(".partial")]]


# ---------------------------------------------------------------- IdIndex

def test_hash_is_stable():
    """XXH64 of the UTF-8 bytes, seed 0: fixed values, unlike the salted hash()."""
    assert hash_ids(["doc1", "\u00e9"]).tolist() == [18095314553813826440, 1717938401253289848]
    assert hash_ids([]).dtype == np.uint64


def test_id_index_position_contains_positions(tmp_path):
    ids = [f"id-{i}" for i in range(50)]
    chunks = [ids[i:i + 7] for i in range(0, 50, 7)]
    for index in (IdIndex.build(chunks, ids), IdIndex.build(chunks, ids, tmp_path)):
        assert len(index) == 50 and [index.position(d) for d in ids] == list(range(50))
        assert "id-3" in index and "id-50" not in index and None not in index
        with pytest.raises(KeyError, match="'id-50' is not among the 50 indexed ids"):
            index.position("id-50")
        assert index.positions(["id-9", "id-0", "id-49"]).tolist() == [9, 0, 49]
        assert index.positions(["id-9", "gone", "id-1"], missing=-1).tolist() == [9, -1, 1]
        with pytest.raises(KeyError, match="'gone'"):
            index.positions(["id-9", "gone"])
        assert index.duplicates() == []
    assert isinstance(np.load(tmp_path / id_index.HASHES_FILE, mmap_mode="r"), np.memmap)
    assert IdIndex.open(tmp_path, ids).position("id-17") == 17
    empty = IdIndex.build([], [])
    assert "x" not in empty and empty.positions([]).tolist() == []
    assert empty.positions(["x"], missing=-2).tolist() == [-2]


def test_id_index_tells_colliding_ids_apart(monkeypatch):
    real = id_index._digest
    monkeypatch.setattr(id_index, "_digest", lambda s: 42 if s in ("b", "d", "absent") else real(s))
    ids = ["a", "b", "c", "d", "e"]
    index = IdIndex.build([ids], ids)
    assert hash_ids(["b", "d"]).tolist() == [42, 42]
    assert index.position("b") == 1 and index.position("d") == 3 and "absent" not in index
    with pytest.raises(KeyError):
        index.position("absent")
    assert index.positions(["d", "b", "e", "absent"], missing=-1).tolist() == [3, 1, 4, -1]
    assert index.duplicates() == []  # equal hashes, different ids
    repeated = ["b", "a", "d", "b", "a", "d"]
    assert IdIndex.build([repeated[:4], repeated[4:]], repeated).duplicates() == [(3, 0), (4, 1), (5, 2)]


# ---------------------------------------------------------------- consumers

@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return transformers.AutoTokenizer.from_pretrained(tiny_model_dir)


def _files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@pytest.mark.parametrize("from_files", [True, False], ids=["keyed-on-files", "keyed-on-content"])
def test_token_cache_of_a_store_is_byte_identical(tmp_path, tokenizer, settled, monkeypatch, from_files):
    from tevatron_tele.data import token_cache

    monkeypatch.setattr(token_cache, "_SETTLE_NS", 0)
    monkeypatch.setattr(token_cache, "_BATCH", 3)  # several batches, each a slice of the store
    stored = load_corpus(_beir(tmp_path / "b"))
    listed = Corpus(list(stored.ids), list(stored.titles), list(stored.texts))
    listed.source_files, listed.source_reader = stored.source_files, stored.source_reader
    if not from_files:
        stored.source_files = listed.source_files = ()
    a = corpus_token_cache(stored, tokenizer, 16, tmp_path / "ca")
    b = corpus_token_cache(listed, tokenizer, 16, tmp_path / "cb")
    assert a.built and b.built and a.key == b.key and a.path.name == b.path.name
    assert ("source" in a.key) == from_files and ("content" in a.key) != from_files
    assert _files(a.path) == _files(b.path)
    assert a[4].tolist() == tokenizer(stored.passage_text(4, tokenizer.sep_token), add_special_tokens=False,
                                      truncation=True, max_length=16)["input_ids"]


def test_export_and_pool_check_read_the_store(tmp_path, monkeypatch):
    stored = load_corpus(_beir(tmp_path / "b"))
    listed = Corpus(list(stored.ids), list(stored.titles), list(stored.texts))
    write_corpus_jsonl(stored, tmp_path / "a.jsonl", "[SEP]", progress=False)
    write_corpus_jsonl(listed, tmp_path / "b.jsonl", "[SEP]", progress=False)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    pool = tmp_path / "pool.jsonl"
    write_pool(pool, [PoolEntry("q1", "a question", ["d1"], ["d2", "d3"])])

    def no_scan(self):
        raise AssertionError("the pool check iterated over every corpus id")

    monkeypatch.setattr(ArrowStrings, "__iter__", no_scan)
    assert read_pool(pool, known_doc_ids=stored)[0].negative_document_ids == ["d2", "d3"]
    write_pool(pool, [PoolEntry("q1", "a question", ["d1"], ["d2", "zz"])])
    with pytest.raises(PoolError, match="unknown document id 'zz'"):
        read_pool(pool, known_doc_ids=stored)


@pytest.mark.parametrize("batch", [1, 2, 4096])
def test_pool_check_looks_ids_up_in_batches_and_names_the_first_unknown(tmp_path, monkeypatch, batch):
    """A corpus is asked once per batch of entries (never `in` per id), and the error is the per-line one."""
    from tevatron_tele.data import pools

    stored = load_corpus(_beir(tmp_path / "b"))
    calls = []
    real = Corpus.unknown_ids
    monkeypatch.setattr(Corpus, "unknown_ids", lambda self, ids: calls.append(len(ids)) or real(self, ids))
    monkeypatch.setattr(Corpus, "__contains__", lambda self, d: pytest.fail("an id was looked up alone"))
    monkeypatch.setattr(pools, "_CHECK_BATCH", batch)
    pool = tmp_path / "pool.jsonl"
    good = [PoolEntry(f"q{i}", "a question", [f"d{i}"], [f"d{i + 1}", "d9"]) for i in range(3)]
    write_pool(pool, good)
    assert [e.query_id for e in read_pool(pool, known_doc_ids=stored)] == ["q0", "q1", "q2"]
    assert len(calls) == -(-3 // batch)
    assert calls[0] == {1: 3, 2: 4, 4096: 5}[batch]  # the distinct ids of the first batch of entries
    bad = good + [PoolEntry("q3", "a question", ["zz-pos"], ["d4"], {"ann": ["d4"]}),
                  PoolEntry("q4", "a question", ["d1"], ["zz"])]
    write_pool(pool, bad)
    with pytest.raises(PoolError, match=r"pool.jsonl:4: field 'positive_document_ids': unknown document id 'zz-pos'"):
        read_pool(pool, known_doc_ids=stored)
    write_pool(pool, good + [PoolEntry("q3", "a question", ["d1"], ["d4", "zz"], {"ann": ["zz"]})])
    with pytest.raises(PoolError, match=r"pool.jsonl:4: field 'negative_document_ids': unknown document id 'zz'"):
        read_pool(pool, known_doc_ids=stored)
