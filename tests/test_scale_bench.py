"""benchmarks/scale.py: the synthetic collections (prefixes, MS MARCO proportions, loadable) and the growth fit."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def scale():
    spec = importlib.util.spec_from_file_location("scale_bench", BENCH / "scale.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_collections_are_prefixes_in_msmarco_proportion(scale, tmp_path, monkeypatch):
    from tevatron_tele.data.collections import load_collection

    monkeypatch.setenv("TEVATRON_TELE_CACHE", str(tmp_path / "store"))
    sd = scale.sd
    folders = {n: tmp_path / f"n{n}" for n in (900, 2000)}
    info = sd.generate_collections(folders, scale._model_dir(), seed=3)
    assert 50 < info["mean_words"] < 62
    small, large = ((folders[n] / "corpus.jsonl").read_text().splitlines() for n in (900, 2000))
    assert len(small) == 900 and large[:900] == small
    assert all(sd.collection_ready(folders[n], n, 3) for n in folders) and not sd.collection_ready(folders[900], 900, 4)
    c = load_collection(folders[2000], "train")
    assert len(c.corpus) == 2000 and len(c.queries) == sd.train_queries(2000) == 114
    assert all(c.positives(q) for q in c.queries)
    words = [len(t.split()) for t in c.queries.values()]
    assert 4 < sum(words) / len(words) < 8
    assert json.loads(large[5])["_id"] == "5"


def test_fit_exponent_and_extrapolation(scale):
    linear = scale.fit([1000, 2000, 4000], [1.0, 2.0, 4.0])
    assert linear["exponent"] == pytest.approx(1.0) and linear["linear_or_better"]
    assert linear["at_full"]["power_law"] == pytest.approx(scale.FULL / 1000, rel=1e-3)
    assert linear["at_full"]["extrapolated"] is True
    square = scale.fit([1000, 2000], [1.0, 4.0], offset=10)
    assert square["exponent"] == pytest.approx(2.0) and not square["linear_or_better"]
    assert square["at_full"]["power_law"] == pytest.approx(10 + (scale.FULL / 1000) ** 2, rel=1e-3)
    assert scale.fit([1000], [1.0]) is None


@pytest.mark.slow
def test_every_stage_runs_end_to_end_at_a_tiny_size(tmp_path):
    """The whole benchmark at two tiny sizes: every stage (each a child process over the real code) finishes
    without an error, mines a pool for every training query and stores and looks up every pair's score."""
    import subprocess

    out = tmp_path / "scale.json"
    cmd = [sys.executable, str(BENCH / "scale.py"), "--sizes", "2000", "4000", "--work", str(tmp_path / "work"),
           "--out", str(out), "--search_queries", "20", "--examples", "16", "--tokenizer_sample", "200",
           "--depth", "20", "--analysis_queries", "40"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    for stage, by_size in result["stages"].items():
        for n, r in by_size.items():
            assert "error" not in r, (stage, n, r.get("error"))
    for n in ("2000", "4000"):
        st = result["stages"]
        stored = st["score_store"][n]["stored_pairs"]
        assert st["pool"][n]["kept"] > 50 and st["dataset"][n]["groups"] == st["pool"][n]["kept"]
        assert st["score_store"][n]["pairs"] == stored == st["score_lookup"][n]["stored_pairs"]
        assert st["score_lookup"][n]["queries"] == 40 < st["score_lookup"][n]["training_queries"]
        assert 0 < st["score_lookup"][n]["pairs"] < st["score_store"][n]["pairs"]
    assert set(result["fits"]) == set(result["stages"])
