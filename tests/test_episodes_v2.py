"""The episode runner on current Tevatron (--backend v2): three episodes, kill and resume, and a decoder with
last-token pooling trained, encoded and searched through the runner."""
from __future__ import annotations

import json

import pytest
from test_episodes import _args, _run_cli

from tevatron_tele.backends import installed_backend
from tevatron_tele.data.pools import read_pool
from tevatron_tele.data.synthetic import build_tiny_decoder
from tevatron_tele.runner.workspace import RunFolder

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(installed_backend() != "v2", reason="needs current Tevatron (make install-v2)")]


@pytest.fixture(scope="module")
def finished_v2_run(tmp_path_factory, synthetic_dir, tiny_model_dir):
    out = tmp_path_factory.mktemp("episodes-v2") / "run"
    proc = _run_cli(_args(synthetic_dir, tiny_model_dir, out, backend="v2", analyze=False))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_three_episodes_on_current_tevatron(finished_v2_run):
    folder = RunFolder(finished_v2_run)
    for i in range(4):
        assert folder.done(i).exists() and folder.eval(i).exists()
    for i in (1, 2, 3):
        config = json.loads((folder.model(i) / "tele_config.json").read_text())
        assert config["backend"] == "v2" and config["pooling"] == "mean"
        assert json.loads((folder.model(i) / "train_log.json").read_text())["backend"] == "v2"
    assert {s for e in read_pool(folder.pool(3)) for s in e.sources} == {"ann", "lookahead", "momentum"}
    metrics = [json.loads(folder.eval(i).read_text()) for i in range(4)]
    assert metrics[0] != metrics[1], "training on current Tevatron changed nothing"


def test_killed_v2_run_resumes_to_the_same_result(finished_v2_run, synthetic_dir, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    args = _args(synthetic_dir, tiny_model_dir, out, backend="v2", analyze=False)
    for kill_at in ("episode-2/mine", "episode-3/train@2"):
        proc = _run_cli(args, TELE_KILL_AT=kill_at)
        assert proc.returncode == -9, f"expected SIGKILL at {kill_at}, got {proc.returncode}: {proc.stderr[-2000:]}"
    proc = _run_cli(args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder, reference = RunFolder(out), RunFolder(finished_v2_run)
    for i in (1, 2, 3):
        assert folder.pool(i).read_bytes() == reference.pool(i).read_bytes(), f"pool of episode {i} differs"
        assert json.loads(folder.eval(i).read_text()) == json.loads(reference.eval(i).read_text())


def test_decoder_with_last_token_pooling_through_the_runner(synthetic_dir, tmp_path):
    decoder = build_tiny_decoder(tmp_path / "decoder", vocab_source=synthetic_dir)
    out = tmp_path / "run"
    proc = _run_cli(_args(synthetic_dir, decoder, out, backend="v2", num_episodes=1, pooling="last",
                          append_eos_token=True, analyze=False))
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = RunFolder(out)
    assert folder.done(1).exists() and folder.ranking(1, "test").exists()
    assert json.loads((folder.model(1) / "tele_config.json").read_text())["pooling"] == "last"
    assert read_pool(folder.pool(1))
    # the base model (episode 0) was encoded with the EOS appended too, as episode 1 trains and encodes
    from tevatron_tele.backends import load_encoder

    base, _ = load_encoder(decoder, pooling="last", input_options={"append_eos_token": True}, backend="v2")
    assert base.input_format.eos_token_id is not None
    assert json.loads(folder.eval(1).read_text()) != json.loads(folder.eval(0).read_text())
