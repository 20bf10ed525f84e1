"""The data-loading benchmark runs end to end at tiny sizes and reports consistent figures."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "dataloader.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("dataloader_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_decimal_ids_bytes(bench):
    for n in (1, 9, 10, 11, 999, 1000, 12345):
        assert bench.decimal_ids_bytes(n) == sum(len(str(i)) + 1 for i in range(n))


def test_batches_are_full_shuffled_and_repeatable(bench):
    batches = bench.make_batches(20, 8, 5, seed=1)
    assert len(batches) == 5 and all(len(b) == 8 for b in batches)
    assert batches[0] != list(range(8))  # shuffled
    assert len(set(batches[0] + batches[1])) == 16  # one epoch: no index twice
    assert batches == bench.make_batches(20, 8, 5, seed=1)


def test_benchmark_on_synthetic_collection(bench, synthetic_dir, tiny_model_dir, tmp_path):
    output = tmp_path / "result.json"
    work = tmp_path / "work"
    result = bench.main([
        "--data", str(synthetic_dir), "--tokenizer", str(tiny_model_dir), "--output", str(output),
        "--work", str(work), "--ann", "3", "--lookahead", "3", "--batches", "3", "--rounds", "2", "--repeats", "2",
        "--cold_repeats", "1", "--check_batches", "2", "--msmarco_sample", str(synthetic_dir),
    ])
    assert json.loads(output.read_text()) == json.loads(json.dumps(result))
    for key in ("machine", "settings", "check", "throughput", "startup_s", "disk", "msmarco_computed", "targets"):
        assert key in result
    assert result["machine"]["cpu_count"] >= 1 and result["machine"]["tevatron"] == "0.1.0"
    assert result["check"] == {"batches_compared": 2, "identical": True}
    assert result["settings"]["negatives_per_query"] == 12  # 3 + 3 now, 6 momentum from the previous episode

    for side in ("tele", "tevatron"):
        for key in ("examples_per_s_wall", "examples_per_s_cpu", "collate_ms_per_batch"):
            assert result["throughput"][side][key]["median"] > 0
            assert len(result["throughput"][side][key]["runs"]) == 2
        assert result["startup_s"]["warm"][side]["median"] > 0
        assert result["throughput"][side]["examples"] == 2 * 3 * 8
    speedup = result["throughput"]["speedup_wall"]
    assert speedup["ratio_of_totals"] > 0 and 0 <= speedup["pairs_faster"] <= 2

    disk = result["disk"]
    files = disk["files"]
    reference = work / "reference" / "split00.hn.json"
    assert files["reference_json"]["bytes"] == reference.stat().st_size
    assert files["pool_jsonl"]["bytes"] == (work / "episode-2" / "pool.jsonl").stat().st_size
    assert disk["pool_bytes_per_episode"] == files["pool_jsonl"]["bytes"] + files["pool_stats_json"]["bytes"]
    assert 0 < disk["ratio_pool_only"] < disk["ratio_pool_plus_cache"]
    assert disk["ratio_pool_only"] < 1  # ids are smaller than token copies even at these sizes

    lines = [json.loads(x) for x in reference.read_text().splitlines()]
    assert len(lines) == result["settings"]["training_queries"]
    assert all(set(x) == {"query", "positives", "negatives"} and len(x["negatives"]) == 12 for x in lines)
    assert max(len(p) for x in lines for p in x["negatives"]) <= 128

    msmarco = result["msmarco_computed"]
    assert [e["negatives_per_query"] for e in msmarco["episodes"]] == [6, 12, 18]
    sizes = [e["reference_json_bytes_per_query"] for e in msmarco["episodes"]]
    assert sizes == sorted(sizes) and msmarco["episode_2"]["ratio_pool_plus_cache"] > 0
