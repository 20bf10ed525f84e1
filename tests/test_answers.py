"""QA collections: DPR's has-answer rule, answer passages excluded from negatives, promoted positives."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from tevatron_tele.mining.answers import answer_positives_and_exclusions, has_answer, normalized_tokens

CASES = [
    (["Barack Obama"], "In 2008, barack  obama won the election.", True),
    (["Obama"], "Obamacare was signed in 2010.", False),
    (["1,000"], "about 1,000 people", True),
    (["Café"], "the cafe\u0301 on the corner", True),
    (["Zürich"], "Zurich is large", False),
    (["U.S."], "the u.s. army", True),
    (["New York"], "York, New England", False),
    ([""], "anything", False),
]


@pytest.mark.parametrize("answers,text,expected", CASES)
def test_has_answer(answers, text, expected):
    assert has_answer(answers, text) is expected


def test_tokens_are_nfd_lowercased_words_and_symbols():
    assert normalized_tokens("Hello, World-2!") == ["hello", ",", "world", "-", "2", "!"]


def test_agrees_with_pyserini_rule(pyserini):
    from pyserini.eval import evaluate_dpr_retrieval as dpr

    tokenizer = dpr.SimpleTokenizer()
    for answers, text, _ in CASES:
        if answers == [""]:
            continue  # DPR's rule matches an empty answer everywhere; ours deliberately never does
        assert has_answer(answers, text) == dpr.has_answers(text, answers, tokenizer, regex=False), (answers, text)


def _qa_collection():
    ids = ["p1", "p2", "p3", "p4"]
    texts = ["the capital is Paris.", "Lyon is big", "paris in spring", "nothing here"]
    corpus = SimpleNamespace(ids=ids, titles=[""] * 4, texts=texts, position=ids.index)
    return SimpleNamespace(corpus=corpus, answers={"q1": ["Paris"], "q2": ["Lyon"]})


def test_answer_passages_excluded_and_promoted():
    collection = _qa_collection()
    run = {"q1": [("p4", 9.0), ("p3", 8.0), ("p1", 7.0), ("p2", 6.0)], "q2": [("p1", 5.0), ("p2", 4.0)]}
    positives, exclude = answer_positives_and_exclusions(collection, [run], {"q1": [], "q2": ["p2"]}, depth=10)
    assert positives == {"q1": ["p3"], "q2": ["p2"]}  # best-ranked answer passage becomes q1's positive
    assert exclude == {"q1": {"p3", "p1"}, "q2": {"p2"}}
    # depth limits what is looked at
    positives, exclude = answer_positives_and_exclusions(collection, [run], {"q1": [], "q2": ["p2"]}, depth=1)
    assert positives["q1"] == [] and "q1" not in exclude
    # a lookahead run keyed by the positive's docid excludes answer passages of that query too
    positives, exclude = answer_positives_and_exclusions(collection, [], {"q1": ["p1"]}, depth=10,
                                                         positive_run={"p1": [("p1", 1.0), ("p3", 0.5)]})
    assert exclude == {"q1": {"p1", "p3"}}
