"""Forgetting measures on small hand-built score tables, checked against hand computation."""
from __future__ import annotations

import pytest

from tevatron_tele.evaluation.forgetting import (
    consecutive_overlap,
    convergence,
    forgetting_by_episode,
    learned_pairs,
    positive_score,
    source_contribution,
    top_k_negatives,
)

POSITIVES = {"q1": ["p1"], "q2": ["p2a", "p2b"]}
POOLS = {1: {"q1": ["a", "b", "c"], "q2": ["x", "y"]}, 2: {"q1": ["a", "d"], "q2": ["x", "z"]}}
# Episode 0 is the base model; its table only matters for probe learning if asked.
TABLES = {
    1: {"q1": {"p1": 1.0, "a": 0.5, "b": 2.0, "c": 0.9, "d": 3.0},
        "q2": {"p2a": 0.3, "p2b": 0.8, "x": 0.7, "y": 0.8, "z": 0.0}},
    2: {"q1": {"p1": 1.0, "a": 1.5, "b": 0.1, "c": 0.2, "d": 0.0},
        "q2": {"p2a": 1.0, "p2b": 0.2, "x": 0.5, "y": 3.0, "z": 2.0}},
    3: {"q1": {"p1": 0.0, "a": -1.0, "b": 5.0, "c": 1.0, "d": 0.5},
        "q2": {"p2a": 0.0, "p2b": 0.1, "x": 0.1, "y": 9.0, "z": 9.0}},
}


def test_positive_score_is_best_positive():
    assert positive_score(TABLES[1], POSITIVES, "q2") == 0.8
    with pytest.raises(KeyError, match="q3"):
        positive_score(TABLES[1], {"q3": ["nope"]}, "q3")


def test_learned_is_strictly_below_positive():
    # y ties the best positive of q2 (0.8): a tie is not learned; b is above.
    assert learned_pairs(POOLS[1], TABLES[1], POSITIVES) == {("q1", "a"), ("q1", "c"), ("q2", "x")}
    # a positive listed in a pool is never a negative
    assert learned_pairs({"q1": ["p1", "a"]}, TABLES[1], POSITIVES) == {("q1", "a")}


def test_own_pool_forgetting_rates_match_hand_computation():
    out = forgetting_by_episode(POOLS, TABLES, POSITIVES)
    assert out["learned"] == [{"episode": 1, "pairs": 5, "learned": 3}, {"episode": 2, "pairs": 4, "learned": 2}]
    # j=2: learned_1 = {q1a, q1c, q2x}; only a (1.5 > 1.0) is above the positive again.
    # j=3: union {q1a, q1c, q2x, q1d} (q2x learned twice, counted once); c (1.0 > 0) and d (0.5 > 0)
    # are above, x ties (0.1 = 0.1) and is not forgotten.
    assert out["rates"] == [
        {"episode": 2, "learned_before": 3, "forgotten": 1, "rate": pytest.approx(1 / 3)},
        {"episode": 3, "learned_before": 4, "forgotten": 2, "rate": 0.5},
    ]
    matrix = {(r["learned_in"], r["episode"]): (r["learned"], r["forgotten"]) for r in out["matrix"]}
    assert matrix == {(1, 2): (3, 1), (1, 3): (3, 1), (2, 3): (2, 1)}


def test_forgetting_counts_only_negatives_learned_first():
    # q2/y is above the positive after episodes 2 and 3 but was never learned (tie in 1, above in 2);
    # q1/b was never learned in episode 1 (above) -> neither may count as forgotten.
    out = forgetting_by_episode({1: POOLS[1]}, TABLES, POSITIVES)
    rates = {r["episode"]: (r["learned_before"], r["forgotten"]) for r in out["rates"]}
    assert rates == {2: (3, 1), 3: (3, 1)}  # at 3, only c of {a, c, x} is forgotten
    never_learned = {"q1": ["b"], "q2": ["y"]}
    out = forgetting_by_episode({1: never_learned}, TABLES, POSITIVES)
    assert [r["rate"] for r in out["rates"]] == [None, None]
    assert all(r["forgotten"] == 0 for r in out["rates"])


def test_probe_forgetting_uses_the_same_pairs_every_episode():
    probe = {"q1": ["b", "c"], "q2": ["y"]}
    out = forgetting_by_episode({i: probe for i in (1, 2, 3)}, TABLES, POSITIVES)
    # learned_1 = {q1c}; learned_2 = {q1b, q1c}; at 2: c (0.2) stays below -> 0/1;
    # at 3: b (5.0) and c (1.0) both above 0.0 -> 2/2.
    assert [(r["episode"], r["learned_before"], r["forgotten"], r["rate"]) for r in out["rates"]] == [
        (2, 1, 0, 0.0), (3, 2, 2, 1.0)]


def test_overlap_of_unchanged_pools_is_total():
    same = {i: POOLS[1] for i in (1, 2, 3)}
    rows = consecutive_overlap(same)
    assert [(r["from"], r["to"], r["jaccard"], r["change"]) for r in rows] == [(1, 2, 1.0, 0.0), (2, 3, 1.0, 0.0)]
    rows = consecutive_overlap(POOLS)
    # q1: {a,b,c} vs {a,d} = 1/4; q2: {x,y} vs {x,z} = 1/3
    assert rows[0]["jaccard"] == pytest.approx((1 / 4 + 1 / 3) / 2)
    assert rows[0]["change"] == pytest.approx(1 - (1 / 4 + 1 / 3) / 2)


def test_top_k_negatives_drop_positives_after_cutting():
    ranking = {"q1": [("p1", 3.0), ("a", 2.0), ("b", 1.0), ("c", 0.5)]}
    assert top_k_negatives(ranking, POSITIVES, 3) == {"q1": ["a", "b"]}


def test_source_contribution():
    sources = {"q1": {"ann": ["a", "b"], "lookahead": ["b", "c"]}, "q2": {"ann": ["x"], "momentum": ["y"]}}
    out = source_contribution(sources, TABLES[1], POSITIVES)
    # unique negatives a, b, c, x, y; only q1/b (2.0 > 1.0) is above (q2/y ties)
    assert out["total"] == {"pool": 5, "above_positive": 1}
    assert out["per_query"] == 2.5
    ann, la, mom = (out["sources"][s] for s in ("ann", "lookahead", "momentum"))
    assert (ann["pool"], ann["above_positive"], ann["above_rate"]) == (3, 1, pytest.approx(1 / 3))
    assert (la["pool"], la["above_positive"], la["above_rate"], la["above_fraction"]) == (2, 1, 0.5, 1.0)
    assert (mom["pool"], mom["above_positive"], mom["pool_fraction"]) == (1, 0, 0.2)


def test_convergence_reads_episodes_and_steps():
    evals = {
        0: {"metrics": {"nDCG@10": 0.5}},
        1: {"nDCG@10": 0.6, "steps": [{"step": 10, "nDCG@10": 0.55}]},
        2: {"nDCG@10": 0.605, "name": "not a number"},
    }
    out = convergence(evals, rel_tol=0.01)
    assert [r["nDCG@10"] for r in out["episodes"]] == [0.5, 0.6, 0.605]
    assert out["steps"] == [{"episode": 1, "step": 10, "nDCG@10": 0.55}]
    assert out["best"]["nDCG@10"] == {"best": 0.605, "best_episode": 2, "first_within_tol": 1}


def test_float_noise_is_a_tie():
    table = {"q1": {"p1": 10.0, "a": 10.0 + 1e-6, "b": 10.0 - 1e-6, "c": 9.9}}
    # within 1e-5 * |S+| of the positive: neither learned nor forgotten
    assert learned_pairs({"q1": ["a", "b", "c"]}, table, {"q1": ["p1"]}) == {("q1", "c")}
    out = forgetting_by_episode({1: {"q1": ["c"]}}, {1: table, 2: {"q1": {"p1": 1.0, "c": 1.0 + 1e-7}}},
                                {"q1": ["p1"]})
    assert out["rates"][0]["forgotten"] == 0


def test_score_table_from_stored_embeddings_round_trips(tmp_path):
    """Scores read from an episode's embeddings equal the dot products, survive save/load, and a table
    that lacks a pair does not cover it."""
    import numpy as np

    from tevatron_tele.retrieval.embeddings import save_embeddings
    from tevatron_tele.retrieval.scoring import (
        covers,
        load_score_table,
        save_score_table,
        score_pairs_from_embeddings,
    )

    rng = np.random.default_rng(0)
    q = rng.standard_normal((3, 8)).astype(np.float32)
    p = rng.standard_normal((10, 8)).astype(np.float32)
    save_embeddings(tmp_path / "queries", q, ["q0", "q1", "q2"])
    # the corpus in two shards, as sharded encoding leaves it
    save_embeddings(tmp_path / "corpus.shard-000-of-002", p[:6], [f"d{i}" for i in range(6)])
    save_embeddings(tmp_path / "corpus.shard-001-of-002", p[6:], [f"d{i}" for i in range(6, 10)])
    pairs = {"q0": ["d1", "d7"], "q2": ["d9", "d0", "d9"], "qx": ["d1"]}
    table = score_pairs_from_embeddings(tmp_path / "queries", tmp_path / "corpus", pairs)
    assert set(table) == {"q0", "q2"}  # qx has no vector
    assert table["q0"]["d7"] == pytest.approx(float(p[7] @ q[0]), rel=1e-6)
    assert table["q2"]["d0"] == pytest.approx(float(p[0] @ q[2]), rel=1e-6)
    save_score_table(tmp_path / "scores.npz", table)
    loaded = load_score_table(tmp_path / "scores.npz")
    assert loaded == table
    assert covers(loaded, {"q0": ["d1"], "q2": ["d9"]})
    assert not covers(loaded, {"q0": ["d2"]}) and not covers(loaded, pairs)


def test_runs_compared_together_share_one_query_sample():
    """A filtered run whose pools lack some queries draws no sample of its own: the others keep theirs."""
    from pathlib import Path

    from tevatron_tele.data.pools import PoolEntry
    from tevatron_tele.evaluation.analysis import RunWorkspace, sample_queries, shared_query_sample

    def run(name: str, qids: list[str]) -> RunWorkspace:
        entries = [PoolEntry(q, "text", [f"{q}-pos"], ["n1", "n2"]) for q in qids]
        return RunWorkspace(Path(name), {}, [0, 1], {1: {e.query_id: e for e in entries}})

    everything = [f"q{i}" for i in range(200)]
    filtered = [q for q in everything if int(q[1:]) % 3]  # a third of the queries lost their pools
    plain, lossy = run("plain", everything), run("lossy", filtered)
    positives, sample = shared_query_sample([lossy, plain], 50)
    assert sample == sample_queries(everything, 50)  # the sample of the unfiltered run alone
    assert sample != sample_queries(filtered, 50)  # what the lossy run would have drawn by itself
    assert positives["q3"] == ["q3-pos"] and len(positives) == 200
