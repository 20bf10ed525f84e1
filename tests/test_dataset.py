"""TeleTrainDataset: negative selection (concat / weighted), determinism, drops, examples, masking keys."""
from __future__ import annotations

import logging
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
from tevatron.data import TrainDataset
from transformers import AutoTokenizer

from tevatron_tele.backends.tevatron_v1.arguments import TeleDataArguments
from tevatron_tele.backends.tevatron_v1.dataset import TeleQPCollator, TeleTrainDataset
from tevatron_tele.data.examples import build_example
from tevatron_tele.data.pools import PoolEntry, detect_pool_format
from tevatron_tele.data.sampling import quotas, select_weighted
from tevatron_tele.data.synthetic import vocabulary
from tevatron_tele.data.token_cache import build_token_cache

N_DOCS = 60


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def caches(tokenizer, tmp_path_factory):
    words = vocabulary()
    root = tmp_path_factory.mktemp("caches")
    doc_ids = [f"d{i}" for i in range(N_DOCS)]
    doc_texts = [" ".join(words[(7 * i + k) % len(words)] for k in range(3 + i % 5)) for i in range(N_DOCS)]
    query_ids = [f"q{i}" for i in range(4)]
    query_texts = [" ".join(words[(11 * i + k) % len(words)] for k in range(4)) for i in range(4)]
    corpus = build_token_cache(root / "corpus", doc_ids, doc_texts, tokenizer, 16)
    queries = build_token_cache(root / "queries", query_ids, query_texts, tokenizer, 8)
    return SimpleNamespace(corpus=corpus, queries=queries, doc_texts=dict(zip(doc_ids, doc_texts)),
                           query_texts=dict(zip(query_ids, query_texts)))


def _args(n_passages=5, **kw):
    return TeleDataArguments(train_n_passages=n_passages, q_max_len=8, p_max_len=16, **kw)


def _entry(qid, positives, sources=None, negatives=None, text=""):
    sources = sources or {}
    if negatives is None:
        negatives = [d for docs in sources.values() for d in docs]
    return PoolEntry(query_id=qid, query_text=text, positive_document_ids=positives, negative_document_ids=negatives,
                     sources=sources)


def _docs(lo, hi):
    return [f"d{i}" for i in range(lo, hi)]


def _dataset(caches, tokenizer, entries, **kw):
    args = _args(**{k: v for k, v in kw.items() if k != "seed"})
    return TeleTrainDataset(args, entries, tokenizer, query_cache=caches.queries, corpus_cache=caches.corpus,
                            seed=kw.get("seed", 42))


def _ids(ds, keys):
    return [ds.corpus_cache.ids[k] for k in keys]


ENTRIES = [
    _entry("q0", ["d0", "d1"], {"ann": _docs(10, 20), "lookahead": _docs(20, 30), "momentum": _docs(30, 40)}),
    _entry("q1", ["d2"], {"ann": _docs(40, 50), "lookahead": _docs(45, 55)}),
    _entry("q2", ["d3"], {"ann": _docs(5, 30)}),
]


def test_selection_is_deterministic_per_seed_epoch_item(caches, tokenizer):
    a = _dataset(caches, tokenizer, ENTRIES)
    b = _dataset(caches, tokenizer, ENTRIES)
    for epoch in range(3):
        a.epoch = b.epoch = epoch
        assert [a.select(i) for i in range(3)] == [b.select(i) for i in range(3)]
    a.epoch, b.epoch = 0, 1
    assert a.select(0)[1] != b.select(0)[1]  # the window moves with the epoch
    c = _dataset(caches, tokenizer, ENTRIES, seed=7)
    assert [c.select(i)[1] for i in range(3)] != [a.select(i)[1] for i in range(3)]
    # positives alternate over epochs like Tevatron's (hashed seed + epoch) % n
    positives = set()
    for epoch in range(2):
        a.epoch = epoch
        positives.add(_ids(a, [a.select(0)[0]])[0])
    assert positives == {"d0", "d1"}


def test_trainer_supplies_epoch_and_seed(caches, tokenizer):
    ds = _dataset(caches, tokenizer, ENTRIES, seed=1)
    ds.trainer = SimpleNamespace(state=SimpleNamespace(epoch=2.7), args=SimpleNamespace(seed=42))
    twin = _dataset(caches, tokenizer, ENTRIES, seed=42)
    twin.epoch = 2
    assert ds.select(1) == twin.select(1)


def test_weighted_mode_per_source_counts(caches, tokenizer):
    ds = _dataset(caches, tokenizer, ENTRIES, n_passages=9, negative_mixing="weighted")
    for epoch in range(3):
        ds.epoch = epoch
        _, negs = ds.select(0)
        ids = _ids(ds, negs)
        counts = Counter("ann" if d in _docs(10, 20) else "lookahead" if d in _docs(20, 30) else "momentum"
                         for d in ids)
        assert counts == {"ann": 4, "lookahead": 2, "momentum": 2}
        assert len(set(ids)) == 8


def test_weighted_mode_dedupes_and_fills_short_sources():
    # lookahead overlaps ann: duplicates are taken once; a missing source's quota goes to the others
    sources = {"ann": [1, 2, 3, 4, 5, 6], "lookahead": [1, 2, 3], "momentum": []}
    chosen = select_weighted(sources, {"ann": 0.5, "lookahead": 0.25, "momentum": 0.25}, 6, hashed_seed=3, epoch=0)
    assert sorted(chosen) == [1, 2, 3, 4, 5, 6]
    chosen = select_weighted({"ann": [1, 2, 3, 4, 5, 6, 7, 8], "lookahead": [9]},
                             {"ann": 0.5, "lookahead": 0.5}, 4, hashed_seed=1, epoch=0)
    assert 9 in chosen and len(set(chosen)) == 4
    # custom weights from the argument string
    args = _args(negative_mixing="weighted", source_weights="ann=1,momentum=3")
    assert args.source_weight_map == {"ann": 1.0, "momentum": 3.0}
    assert quotas({"ann": 1.0, "momentum": 3.0}, 8) == {"ann": 2, "momentum": 6}
    # 3.5 / 1.75 / 1.75: the two larger remainders get the spare slots
    assert quotas({"ann": 0.5, "lookahead": 0.25, "momentum": 0.25}, 7) == {"ann": 3, "lookahead": 2, "momentum": 2}
    assert quotas({"ann": 1.0, "lookahead": 1.0}, 3) == {"ann": 2, "lookahead": 1}


def test_bad_source_weights_are_refused():
    with pytest.raises(ValueError, match="source=weight"):
        _args(source_weights="ann")
    with pytest.raises(ValueError, match="must be >= 0"):
        _args(source_weights="ann=-1")
    with pytest.raises(ValueError, match="negative_mixing"):
        _args(negative_mixing="mixed")


class _TevatronSelection(TrainDataset):
    """Tevatron's own TrainDataset, with examples left as the raw token lists (its encode_plus call is gone)."""

    def create_one_example(self, text_encoding, is_query=False):
        return list(text_encoding)


def test_concat_equals_tevatron_selection(tokenizer):
    def passage(i):
        return [100 + i, 200 + i]

    groups = [{"query": [5, 6, 7], "positives": [passage(p) for p in range(j, j + 2)],
               "negatives": [passage(10 + (j * 7 + k) % 40) for k in range(12 + j)]} for j in range(4)]
    groups[1]["negatives"] += groups[1]["negatives"][:3]  # duplicates are kept in concat mode
    args = _args(n_passages=6)
    ours = TeleTrainDataset(args, groups, tokenizer, seed=42)
    theirs = _TevatronSelection(args, groups, tokenizer)
    for epoch in range(3):
        trainer = SimpleNamespace(state=SimpleNamespace(epoch=float(epoch)), args=SimpleNamespace(seed=42))
        ours.trainer = theirs.trainer = trainer
        for item in range(len(groups)):
            positive, negatives = ours.select(item)
            query, passages = theirs[item]
            assert [ours.passage_tokens(k).tolist() for k in [positive, *negatives]] == passages
            assert ours.query_tokens(ours.train_data[item]).tolist() == query


def test_concat_uses_stored_negative_list_in_order(caches, tokenizer):
    entry = _entry("q0", ["d0"], {"ann": _docs(10, 13), "momentum": _docs(30, 33)},
                   negatives=_docs(30, 33) + _docs(10, 13) + ["d10"])
    ds = _dataset(caches, tokenizer, [entry], n_passages=8, negative_passage_no_shuffle=True)
    assert _ids(ds, ds.select(0)[1]) == _docs(30, 33) + _docs(10, 13) + ["d10"]
    # no stored list: the sources concatenated as ann, lookahead, momentum, bm25
    entry = _entry("q0", ["d0"], {"momentum": _docs(30, 33), "ann": _docs(10, 13)}, negatives=[])
    ds = _dataset(caches, tokenizer, [entry], n_passages=7, negative_passage_no_shuffle=True)
    assert _ids(ds, ds.select(0)[1]) == _docs(10, 13) + _docs(30, 33)


def test_queries_without_negatives_or_positives_are_dropped_and_counted(caches, tokenizer, caplog):
    entries = ENTRIES + [_entry("q3", ["d4"], {}), _entry("q1b", [], {"ann": _docs(10, 12)})]
    with caplog.at_level(logging.INFO, logger="tevatron_tele.data.pool_sampler"):
        ds = _dataset(caches, tokenizer, entries)
    assert len(ds) == 3
    assert ds.dropped == {"no_positives": 1, "no_negatives": 1}
    assert "1 dropped without positives, 1 dropped without negatives" in caplog.text
    with pytest.raises(ValueError, match="no training query"):
        _dataset(caches, tokenizer, [_entry("q3", ["d4"], {})])


@pytest.mark.parametrize("mixing", ["concat", "weighted"])
def test_too_small_pool_samples_with_replacement(caches, tokenizer, mixing):
    entry = _entry("q0", ["d0"], {"ann": ["d10", "d11"], "lookahead": ["d11", "d12"]})
    ds = _dataset(caches, tokenizer, [entry], n_passages=7, negative_mixing=mixing)
    negs = _ids(ds, ds.select(0)[1])
    assert len(negs) == 6 and set(negs) == {"d10", "d11", "d12"}
    assert negs == _ids(ds, ds.select(0)[1])  # seeded, not the global RNG


def test_large_enough_pool_has_no_repeats_in_weighted_mode(caches, tokenizer):
    entry = _entry("q0", ["d0"], {"ann": _docs(10, 14), "lookahead": _docs(12, 16)})  # 6 distinct
    ds = _dataset(caches, tokenizer, [entry], n_passages=7, negative_mixing="weighted")
    assert sorted(_ids(ds, ds.select(0)[1])) == sorted(_docs(10, 16))


def test_examples_equal_direct_tokenization(caches, tokenizer):
    ds = _dataset(caches, tokenizer, ENTRIES)
    query, passages = ds[0]
    assert query == {"input_ids": tokenizer(caches.query_texts["q0"], truncation=True, max_length=8)["input_ids"]}
    positive, negatives = ds.select(0)
    assert len(passages) == 5
    for key, example in zip([positive, *negatives], passages):
        text = caches.doc_texts[ds.corpus_cache.ids[key]]
        assert example["input_ids"] == tokenizer(text, truncation=True, max_length=16)["input_ids"]


def test_query_text_used_when_not_cached(caches, tokenizer):
    entry = _entry("new", ["d0"], {"ann": _docs(10, 20)}, text="some words")
    ds = _dataset(caches, tokenizer, [entry])
    assert ds[0][0] == build_example(tokenizer, tokenizer("some words", add_special_tokens=False)["input_ids"], 8)
    with pytest.raises(KeyError, match="'new'.*no query_text"):
        _dataset(caches, tokenizer, [_entry("new", ["d0"], {"ann": _docs(10, 20)})])


def test_unknown_document_names_query_and_document(caches, tokenizer):
    with pytest.raises(KeyError, match="'q0'.*'nope'"):
        _dataset(caches, tokenizer, [_entry("q0", ["nope"], {"ann": _docs(10, 20)})])


def test_mask_keys_and_collator(caches, tokenizer):
    ds = _dataset(caches, tokenizer, ENTRIES, n_passages=3, mask_batch_positives=True)
    features = [ds[0], ds[1]]
    assert features[0][2]["positive_keys"] == [0, 1]
    collator = TeleQPCollator(tokenizer, max_q_len=8, max_p_len=16)
    query, passage, keys = collator(features)
    assert query["input_ids"].shape == (2, 8) and passage["input_ids"].shape == (6, 16)
    assert keys["passage_keys"].tolist() == features[0][2]["passage_keys"] + features[1][2]["passage_keys"]
    assert keys["query_positive_keys"].tolist() == [[0, 1], [2, -1]]
    assert keys["query_positive_keys"].dtype == torch.long
    plain = TeleQPCollator(tokenizer, max_q_len=8, max_p_len=16)([(f[0], f[1]) for f in features])
    assert len(plain) == 2


def test_detect_pool_format(tmp_path):
    (tmp_path / "pool.jsonl").write_text('{"query_id": "1", "query_text": "x"}\n')
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / "split00.hn.json").write_text('{"query": [1], "positives": [[2]], "negatives": [[3]]}\n')
    assert detect_pool_format(tmp_path / "pool.jsonl") == "ids"
    assert detect_pool_format(tmp_path / "ref") == "reference"
