"""Pool files: round trip, stats beside, and an error naming file/line/field for each kind of bad line."""
from __future__ import annotations

import json

import pytest

from tevatron_tele.data.pools import (
    SOURCES,
    PoolEntry,
    PoolError,
    pool_stats_path,
    read_pool,
    read_pool_stats,
    read_reference_pool,
    write_pool,
)


def _entries() -> list[PoolEntry]:
    return [
        PoolEntry("q1", "first query", ["d1"], ["d2", "d3", "d4"],
                  {"ann": ["d2", "d3"], "lookahead": ["d3", "d4"]}),
        PoolEntry("q2", "second query", ["d2", "d5"], ["d1"], {"momentum": ["d1"]}),
        PoolEntry("q3", "no negatives", ["d4"], [], {}),
    ]


def _good_line(**change) -> dict:
    line = {"query_id": "q1", "query_text": "t", "positive_document_ids": ["d1"],
            "negative_document_ids": ["d2"], "sources": {"ann": ["d2"]}}
    line.update(change)
    return line


def _write_lines(path, lines) -> None:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")


def test_round_trip_and_stats(tmp_path):
    path = tmp_path / "pool.jsonl"
    write_pool(path, _entries(), stats={"dropped": {"no_positive": 2}})
    assert read_pool(path) == _entries()
    assert pool_stats_path(path) == tmp_path / "pool.stats.json"
    stats = read_pool_stats(path)
    assert stats["queries"] == 3 and stats["negatives"] == 4 and stats["positives"] == 4
    assert stats["queries_without_negatives"] == 1
    assert stats["source_negatives"] == {"ann": 2, "lookahead": 2, "momentum": 1}
    assert stats["source_overlap"] == {"ann&lookahead": 1}
    assert stats["dropped"] == {"no_positive": 2}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    # Upstream Tevatron reads the four id fields; they are all there, one object per line.
    first = json.loads(path.read_text().splitlines()[0])
    assert first["positive_document_ids"] == ["d1"] and first["negative_document_ids"] == ["d2", "d3", "d4"]
    assert "ann" in SOURCES


def test_a_pool_on_disk_always_has_its_stats(tmp_path, monkeypatch):
    """The stats are written before the pool: a process dying between the two leaves no pool, so the step
    that mines it runs again rather than keep a pool without stats."""
    import tevatron_tele.data.pools as pools

    def dies(*args, **kwargs):
        raise KeyboardInterrupt  # as if killed while writing

    path = tmp_path / "pool.jsonl"
    monkeypatch.setattr(pools, "atomic_path", lambda *a, **k: dies())
    with pytest.raises(KeyboardInterrupt):
        write_pool(path, _entries())
    assert not path.exists()  # the stats may be there; a pool is not
    monkeypatch.undo()
    monkeypatch.setattr(pools, "write_json", dies)
    with pytest.raises(KeyboardInterrupt):
        write_pool(path, _entries())
    assert not path.exists(), "a pool was left without its stats"
    monkeypatch.undo()
    write_pool(path, _entries())
    assert path.exists() and read_pool_stats(path)["queries"] == 3


def test_known_doc_ids(tmp_path):
    path = tmp_path / "pool.jsonl"
    write_pool(path, _entries())
    assert len(read_pool(path, known_doc_ids=["d1", "d2", "d3", "d4", "d5"])) == 3
    with pytest.raises(PoolError, match=r"pool\.jsonl:2: field 'positive_document_ids': unknown document id 'd5'"):
        read_pool(path, known_doc_ids={"d1", "d2", "d3", "d4"})
    with pytest.raises(PoolError, match=r"pool\.jsonl:1: field 'negative_document_ids': unknown document id 'd4'"):
        read_pool(path, known_doc_ids={"d1", "d2", "d3", "d5"})


@pytest.mark.parametrize(
    "bad, pattern",
    [
        ('{"query_id": "q2", ', r":2: field '<json>': malformed JSON"),
        ('["not", "an", "object"]', r":2: field '<json>': expected an object"),
        ({k: v for k, v in _good_line(query_id="q2").items() if k != "query_text"}, r":2: field 'query_text': missing"),
        (_good_line(query_id=7), r":2: field 'query_id': expected a string"),
        (_good_line(query_id="q2", positive_document_ids="d1"), r":2: field 'positive_document_ids': expected a list"),
        (_good_line(query_id="q2", negative_document_ids=["d2", 3]), r":2: field 'negative_document_ids': expected id"),
        (_good_line(query_id="q2", positive_document_ids=[]), r":2: field 'positive_document_ids': empty"),
        (_good_line(query_id="q2", positive_document_ids=["d1", "d1"]),
         r":2: field 'positive_document_ids': duplicate"),
        (_good_line(query_id="q2", negative_document_ids=["d1"]),
         r":2: field 'negative_document_ids': negative 'd1' is a positive of query 'q2'"),
        (_good_line(query_id="q2", sources={"bm25": ["d9", "d1"]}),
         r":2: field 'sources.bm25': negative 'd1' is a positive"),
        (_good_line(query_id="q2", sources=["d2"]), r":2: field 'sources': expected an object"),
        (_good_line(), r":2: field 'query_id': duplicate query id 'q1' \(first at line 1\)"),
    ],
)
def test_bad_lines(tmp_path, bad, pattern):
    path = tmp_path / "pool.jsonl"
    _write_lines(path, [_good_line(), bad])
    with pytest.raises(PoolError, match=r"pool\.jsonl" + pattern):
        read_pool(path)


def test_sources_optional_and_blank_lines_skipped(tmp_path):
    path = tmp_path / "pool.jsonl"
    line = _good_line()
    del line["sources"]
    _write_lines(path, [line, ""])
    (entry,) = read_pool(path)
    assert entry.sources == {} and entry.negative_document_ids == ["d2"]


def test_repeated_negatives_are_kept(tmp_path):
    path = tmp_path / "pool.jsonl"
    entry = PoolEntry("q", "t", ["d1"], ["d2", "d3", "d2"], {"ann": ["d2", "d3"], "lookahead": ["d2"]})
    write_pool(path, [entry])
    assert read_pool(path)[0].negative_document_ids == ["d2", "d3", "d2"]
    assert read_pool_stats(path)["negatives"] == 3


def test_reference_pool_file_and_folder(tmp_path):
    folder = tmp_path / "hn"
    folder.mkdir()
    rows = [{"query": [101, 7, 102], "positives": [[101, 8, 102]], "negatives": [[101, 9, 102], [101, 10, 102]]},
            {"query": [101, 11, 102], "positives": [[101, 12, 102]], "negatives": []}]
    _write_lines(folder / "split00.hn.json", rows[:1])
    _write_lines(folder / "split01.hn.json", rows[1:])
    (folder / "notes.txt").write_text("ignored")
    assert read_reference_pool(folder) == rows
    assert read_reference_pool(folder / "split01.hn.json") == rows[1:]
    _write_lines(folder / "split02.hn.json", [{"query": [1], "positives": [[2]], "negatives": [["x"]]}])
    with pytest.raises(PoolError, match=r"split02\.hn\.json:1: field 'negatives'"):
        read_reference_pool(folder)
    _write_lines(folder / "split02.hn.json", [{"query": [1], "negatives": []}])
    with pytest.raises(PoolError, match=r"split02\.hn\.json:1: field 'positives': missing"):
        read_reference_pool(folder)
    _write_lines(folder / "split02.hn.json", ['{"query": [1]'])
    with pytest.raises(PoolError, match=r"split02\.hn\.json:1: field '<json>': malformed"):
        read_reference_pool(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        read_reference_pool(tmp_path / "empty")
