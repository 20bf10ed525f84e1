"""The token cache matches direct tokenization, rebuilds only on key change, and survives concurrent builders."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import transformers

from tevatron_tele.data.collections import load_collection
from tevatron_tele.data.token_cache import TokenCache, build_token_cache, corpus_token_cache, query_token_cache


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return transformers.AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def collection(synthetic_dir):
    return load_collection(synthetic_dir, "train")


def test_corpus_cache_equals_direct_tokenization(tmp_path, tokenizer, collection):
    cache = corpus_token_cache(collection, tokenizer, 24, tmp_path)
    assert cache.built and cache.ids == collection.corpus.ids and len(cache) == len(collection.corpus)
    assert cache.path.parent == tmp_path and cache.path.name.startswith("collection-corpus-")
    assert isinstance(cache.tokens, np.memmap) and cache.tokens.dtype == np.uint16  # vocabulary < 65,536
    corpus = collection.corpus
    for i in range(len(corpus)):
        text = corpus.passage_text(i, tokenizer.sep_token)
        for L in (8, 26):
            direct = tokenizer(text, truncation=True, max_length=L)["input_ids"]
            expected = [tokenizer.cls_token_id] + cache[i][:L - 2].tolist() + [tokenizer.sep_token_id]
            assert direct == expected
    assert (cache.lengths <= 24).all() and cache.lengths.max() == 24
    docid = corpus.ids[5]
    assert np.array_equal(cache.get(docid), cache[5]) and cache.position(docid) == 5
    with pytest.raises(KeyError, match="nope"):
        cache.get("nope")
    with pytest.raises(IndexError):
        cache[len(cache)]


def test_query_cache_and_reuse(tmp_path, tokenizer, collection):
    first = query_token_cache(collection, tokenizer, 16, tmp_path)
    assert first.built and first.ids == list(collection.queries)
    for i, text in enumerate(collection.queries.values()):
        assert first[i].tolist() == tokenizer(text, add_special_tokens=False)["input_ids"][:16]
    stamp = (first.path / "tokens.npy").stat().st_mtime_ns
    second = query_token_cache(collection, tokenizer, 16, tmp_path)
    assert not second.built and second.path == first.path
    assert (second.path / "tokens.npy").stat().st_mtime_ns == stamp
    # A different max_len is a different key, hence a different folder.
    third = query_token_cache(collection, tokenizer, 4, tmp_path)
    assert third.built and third.path != first.path and third.lengths.max() == 4


def test_key_change_rebuilds_in_place(tmp_path, tokenizer):
    path = tmp_path / "c"
    a = build_token_cache(path, ["x", "y"], ["gala tovi", "vuni"], tokenizer, 8)
    assert a.built and a[1].tolist() == tokenizer("vuni", add_special_tokens=False)["input_ids"]
    assert not build_token_cache(path, ["x", "y"], ["gala tovi", "vuni"], tokenizer, 8).built
    b = build_token_cache(path, ["x", "y"], ["gala tovi", "vuni sulu"], tokenizer, 8)  # content changed
    assert b.built and len(b[1]) == 2
    c = build_token_cache(path, ["x", "y"], ["gala tovi", "vuni sulu"], tokenizer, 8, key_extra="other template")
    assert c.built and json.loads((path / "key.json").read_text())["template"] == "other template"
    assert TokenCache.open(path).ids == ["x", "y"]


def test_empty_text_and_bad_ids(tmp_path, tokenizer):
    cache = build_token_cache(tmp_path / "e", ["a", "b", "c"], ["gala", "", "tovi vuni"], tokenizer, 8)
    assert cache.lengths.tolist() == [1, 0, 2] and cache[1].size == 0
    empty = build_token_cache(tmp_path / "z", [], [], tokenizer, 8)
    assert empty.built and len(empty) == 0 and empty.ids == [] and empty.tokens.size == 0
    with pytest.raises(ValueError, match="not unique"):
        build_token_cache(tmp_path / "f", ["a", "a"], ["x", "y"], tokenizer, 8)
    with pytest.raises(ValueError, match="line break"):
        build_token_cache(tmp_path / "g", ["a\nb"], ["x"], tokenizer, 8)
    with pytest.raises(FileNotFoundError, match="not a complete token cache"):
        TokenCache.open(tmp_path)


def test_concurrent_builders_make_one_correct_cache(tmp_path, tiny_model_dir, synthetic_dir):
    script = textwrap.dedent(f"""
        import sys
        from transformers import AutoTokenizer
        from tevatron_tele.data.token_cache import build_token_cache
        from tevatron_tele.data.collections import load_collection
        tok = AutoTokenizer.from_pretrained({str(tiny_model_dir)!r})
        corpus = load_collection({str(synthetic_dir)!r}).corpus
        ids = [f"{{r}}-{{i}}" for r in range(20) for i in corpus.ids]
        texts = [corpus.passage_text(i, tok.sep_token) for _ in range(20) for i in range(len(corpus))]
        cache = build_token_cache({str(tmp_path / "shared")!r}, ids, texts, tok, 32)
        print("BUILT" if cache.built else "REUSED", len(cache))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    words = [out.split()[0] for out, _ in outs]
    assert sorted(words) == ["BUILT", "REUSED"]
    tok = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    corpus = load_collection(synthetic_dir).corpus
    cache = TokenCache.open(tmp_path / "shared")
    n = len(corpus)
    assert len(cache) == 20 * n
    for k in (0, n - 1, 7 * n + 3, 20 * n - 1):
        text = corpus.passage_text(k % n, tok.sep_token)
        assert cache[k].tolist() == tok(text, add_special_tokens=False, truncation=True, max_length=32)["input_ids"]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert not leftovers


def test_large_vocabulary_keeps_int32(tmp_path):
    from tevatron_tele.data.token_cache import token_dtype

    class Big:
        def __len__(self):
            return 70_000

    class Small:
        def __len__(self):
            return 30_522

    assert token_dtype(Big()) == np.int32
    assert token_dtype(Small()) == np.uint16


# ---------------------------------------------------------------- reopening keyed on the source files


def _counting(monkeypatch, name):
    """Count the calls of token_cache.<name> (and still call it)."""
    from tevatron_tele.data import token_cache

    calls = []
    real = getattr(token_cache, name)

    def wrapper(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(token_cache, name, wrapper)
    return calls


def _files(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_reopen_hashes_neither_texts_nor_files(tmp_path, tokenizer, synthetic_dir, monkeypatch):
    """A cache of a collection read from files is keyed on the files: reopening it (a new load, as a new process
    does) hashes no text, and no file whose stored hash still holds."""
    from tevatron_tele.data import token_cache

    monkeypatch.setattr(token_cache, "_SETTLE_NS", 0)  # the fixture's files are seconds old (see the next test)
    first = load_collection(synthetic_dir, "train")
    assert first.corpus.source_files and first.corpus.source_reader == "beir" and len(first.source_files) == 2
    corpus = corpus_token_cache(first, tokenizer, 24, tmp_path)
    queries = query_token_cache(first, tokenizer, 16, tmp_path)
    assert corpus.built and queries.built
    assert "source" in corpus.key and "content" not in corpus.key and "source" in queries.key
    texts_hashed = _counting(monkeypatch, "content_fingerprint")
    files_hashed = _counting(monkeypatch, "file_content_hash")
    again = load_collection(synthetic_dir, "train")
    reopened = corpus_token_cache(again, transformers.AutoTokenizer.from_pretrained(tokenizer.name_or_path), 24,
                                  tmp_path)
    assert not reopened.built and reopened.path == corpus.path
    assert not query_token_cache(again, tokenizer, 16, tmp_path).built
    assert texts_hashed == [] and files_hashed == []
    assert reopened.ids == again.corpus.ids and len(reopened) == len(again.corpus)
    # max_len and the template are still part of the key
    assert corpus_token_cache(again, tokenizer, 20, tmp_path).path != corpus.path
    assert (tmp_path / ".sources").is_dir()


def test_changed_source_file_rebuilds(tmp_path, tokenizer, synthetic_dir, monkeypatch):
    """Rule: a file whose size, mtime, ctime or inode differ from the stored ones is hashed again; equal
    content keeps the cache, other content rebuilds it. A rewrite of the same size with the mtime set back is
    caught by the ctime, which os.utime cannot set back."""
    import os
    import shutil
    import time

    from tevatron_tele.data import token_cache

    monkeypatch.setattr(token_cache, "_SETTLE_NS", 50_000_000)  # 50 ms instead of 2 s, to keep the test short
    folder = tmp_path / "coll"
    shutil.copytree(synthetic_dir, folder)
    time.sleep(0.1)
    first = corpus_token_cache(load_collection(folder, "train"), tokenizer, 24, tmp_path / "cache")
    assert first.built
    files_hashed = _counting(monkeypatch, "file_content_hash")
    assert not corpus_token_cache(load_collection(folder, "train"), tokenizer, 24, tmp_path / "cache").built
    assert files_hashed == []  # the stored hash holds: nothing is read
    # touched, same content: hashed again, same key, the cache is kept
    path = folder / "corpus.jsonl"
    os.utime(path)
    touched = corpus_token_cache(load_collection(folder, "train"), tokenizer, 24, tmp_path / "cache")
    assert not touched.built and touched.path == first.path and len(files_hashed) == 1
    # same size, one letter changed in place, mtime set back: rebuilt
    before = os.stat(path)
    data = path.read_bytes()
    at = data.index(b'"text": "') + len(b'"text": "')
    changed = data[:at] + (b"q" if data[at:at + 1] != b"q" else b"z") + data[at + 1:]
    with open(path, "r+b") as f:
        f.write(changed)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    collection = load_collection(folder, "train")
    rebuilt = corpus_token_cache(collection, tokenizer, 24, tmp_path / "cache")
    assert rebuilt.built and rebuilt.path != first.path
    text = collection.corpus.passage_text(0, tokenizer.sep_token)
    assert rebuilt[0].tolist() == tokenizer(text, add_special_tokens=False, truncation=True, max_length=24)["input_ids"]
    assert rebuilt[0].tolist() != first[0].tolist()
    # a file changed after the collection was loaded: the texts in memory are hashed instead
    path.write_bytes(data)
    texts_hashed = _counting(monkeypatch, "content_fingerprint")
    stale = corpus_token_cache(collection, tokenizer, 24, tmp_path / "cache")
    assert stale.built and "content" in stale.key and "source" not in stale.key and len(texts_hashed) == 1
    assert stale[0].tolist() == rebuilt[0].tolist()


def test_changed_tokenizer_rebuilds(tmp_path, tiny_model_dir, collection):
    tok = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    first = corpus_token_cache(collection, tok, 24, tmp_path)
    assert not corpus_token_cache(collection, tok, 24, tmp_path).built
    tok.add_tokens(["zzqxv"])  # the same object, changed: its fingerprint is computed again
    second = corpus_token_cache(collection, tok, 24, tmp_path)
    assert second.built and second.path != first.path and second.key["tokenizer"] != first.key["tokenizer"]


def test_derived_query_set_is_keyed_on_its_texts(tmp_path, tokenizer, collection):
    """dataclasses.replace (as the runner's held-out dev queries) does not carry the source files over."""
    import dataclasses

    part = dataclasses.replace(collection, queries=dict(list(collection.queries.items())[::2]))
    assert part.source_files == () and collection.source_files
    cache = query_token_cache(part, tokenizer, 16, tmp_path)
    assert "content" in cache.key and cache.ids == list(part.queries)


# ---------------------------------------------------------------- resumable builds


def test_interrupted_build_resumes_to_identical_bytes(tmp_path, tokenizer, monkeypatch):
    from tevatron_tele.data import token_cache

    monkeypatch.setattr(token_cache, "_CHUNK", 7)
    monkeypatch.setattr(token_cache, "_BATCH", 3)  # chunks of 3 + 3 + 1 texts
    ids = [f"t{i}" for i in range(40)]
    texts = [" ".join(["gala", "tovi", "vuni", "sulu"][: 1 + i % 4]) * (1 + i % 3) for i in range(40)]
    whole = build_token_cache(tmp_path / "whole" / "c", ids, texts, tokenizer, 8)
    real = token_cache._encode
    tokenized = []

    def failing(tok, batch, max_len):
        if len(tokenized) == 4:  # the second batch of the second chunk: its first batch is written, not committed
            raise KeyboardInterrupt
        tokenized.append(len(batch))
        return real(tok, batch, max_len)

    monkeypatch.setattr(token_cache, "_encode", failing)
    path = tmp_path / "part" / "c"
    with pytest.raises(KeyboardInterrupt):
        build_token_cache(path, ids, texts, tokenizer, 8)
    build = path.parent / ".build-c"
    assert not path.exists() and json.loads((build / "progress.json").read_text())["texts"] == 7
    tokenized.clear()
    monkeypatch.setattr(token_cache, "_encode", lambda tok, b, m: tokenized.append(len(b)) or real(tok, b, m))
    resumed = build_token_cache(path, ids, texts, tokenizer, 8)
    assert resumed.built and sum(tokenized) == 40 - 7  # only what was not committed
    assert _files(path) == _files(whole.path) and not build.exists()
    # an interrupted build of another key is not continued
    with pytest.raises(KeyboardInterrupt):
        monkeypatch.setattr(token_cache, "_encode", failing)
        tokenized.clear()
        build_token_cache(tmp_path / "other" / "c", ids, texts, tokenizer, 8)
    monkeypatch.setattr(token_cache, "_encode", real)
    other = build_token_cache(tmp_path / "other" / "c", ids, texts[::-1], tokenizer, 8)
    assert [other[i].tolist() for i in range(40)] == [whole[39 - i].tolist() for i in range(40)]


def test_killed_build_resumes_to_identical_bytes(tmp_path, tiny_model_dir, synthetic_dir):
    """A process killed outright (os._exit: no clean-up runs) mid-chunk; a rerun continues it."""
    script = textwrap.dedent(f"""
        import os
        from transformers import AutoTokenizer
        from tevatron_tele.data import token_cache
        from tevatron_tele.data.collections import load_collection
        token_cache._CHUNK, token_cache._BATCH = 16, 5
        real, calls = token_cache._encode, []
        def dying(tok, batch, max_len):
            calls.append(1)
            if len(calls) == 10:  # the third batch of the third chunk
                os._exit(137)
            return real(tok, batch, max_len)
        token_cache._encode = dying
        tok = AutoTokenizer.from_pretrained({str(tiny_model_dir)!r})
        token_cache.corpus_token_cache(load_collection({str(synthetic_dir)!r}), tok, 24, {str(tmp_path / "a")!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 137, proc.stderr
    builds = list((tmp_path / "a").glob(".build-*"))
    assert len(builds) == 1 and json.loads((builds[0] / "progress.json").read_text())["texts"] == 32
    tok = transformers.AutoTokenizer.from_pretrained(tiny_model_dir)
    collection = load_collection(synthetic_dir)
    resumed = corpus_token_cache(collection, tok, 24, tmp_path / "a")
    whole = corpus_token_cache(collection, tok, 24, tmp_path / "b")
    assert resumed.built and resumed.path.name == whole.path.name and _files(resumed.path) == _files(whole.path)
    assert not list((tmp_path / "a").glob(".build-*"))
