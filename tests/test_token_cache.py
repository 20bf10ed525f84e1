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
