"""One backend per Tevatron; the only package that imports Tevatron.

- `v1`: tevatron 0.1.0 (PyPI), with what it needs to run on transformers 5;
- `v2`: current Tevatron (`tevatron.retriever`, installed from its repository).
Both install as the `tevatron` package, so one environment has at most one of them; `auto` picks it.

Each backend module provides the same names: `NAME`, `TeleModelArguments`, `TeleDataArguments`, `TeleTrainingArguments`,
`TeleTrainDataset`, `make_dataset`, `make_collator`, `build_model`, `make_trainer`, `save_model` and `load_encoder`.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType
from typing import Any, get_args

from ..arguments import BackendChoice

BACKENDS: tuple[str, ...] = tuple(b for b in get_args(BackendChoice) if b != "auto")
_MODULES = {"v1": "tevatron_tele.backends.tevatron_v1", "v2": "tevatron_tele.backends.tevatron_v2"}
_INSTALL_HINT = {
    "v1": 'pip install "tevatron-tele[tevatron-v1]" (tevatron 0.1.0 from PyPI)',
    "v2": 'pip install "tevatron @ git+https://github.com/texttron/tevatron@dd06310" (current Tevatron)',
}


class BackendUnavailableError(ImportError):
    """The asked-for Tevatron is not installed."""


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a missing parent package
        return False


def installed_backend() -> str:
    """Which Tevatron this environment has: 'v2' when `tevatron.retriever` is importable, else 'v1'.

    Returns:
        'v1' or 'v2'. Raises BackendUnavailableError when no Tevatron is installed.
    """
    if not _importable("tevatron"):
        raise BackendUnavailableError(
            f"no Tevatron is installed: {_INSTALL_HINT['v1']}, or {_INSTALL_HINT['v2']}")
    return "v2" if _importable("tevatron.retriever") else "v1"


def resolve_backend(name: BackendChoice | None = "auto") -> str:
    """The backend a name stands for.

    Args:
        name: 'v1', 'v2', 'auto' (the installed Tevatron) or None ($TELE_BACKEND, else 'auto').

    Returns:
        'v1' or 'v2'.
    """
    name = name or os.environ.get("TELE_BACKEND", "auto")
    if name == "auto":
        return installed_backend()
    if name not in BACKENDS:
        raise ValueError(f"--backend must be one of auto, {', '.join(BACKENDS)}; got '{name}'")
    return name


def get_backend(name: BackendChoice | None = "auto") -> ModuleType:
    """The backend module for `name`.

    Args:
        name: 'v1', 'v2' or 'auto' (the installed Tevatron).

    Returns:
        The module `tevatron_tele.backends.tevatron_v1` or `...tevatron_v2`.
    """
    resolved = resolve_backend(name)
    installed = installed_backend()
    if resolved != installed:
        raise BackendUnavailableError(
            f"--backend {resolved} needs {'tevatron 0.1.0' if resolved == 'v1' else 'current Tevatron'}, but this "
            f"environment has the other one: {_INSTALL_HINT[resolved]} (in its own environment)")
    return importlib.import_module(_MODULES[resolved])


def load_encoder(path: str | os.PathLike, device: str = "cpu", *, pooling: str | None = None,
                 normalize: bool | None = None, backend: BackendChoice | None = "auto",
                 input_options: dict | None = None) -> tuple[Any, Any]:
    """Load a saved model for encoding, and its tokenizer.

    Args:
        path: a model folder saved by either backend, or a plain Hugging Face model folder.
        device: where to put the model.
        pooling, normalize: override the saved ones (e.g. pooling 'mean' for a sentence-transformers checkpoint).
        backend: which Tevatron loads it (default: the installed one).
        input_options: overrides of the saved input format: `query_prefix`, `passage_prefix`, `append_eos_token`
            (current Tevatron only), e.g. to encode a base model as it will be trained.

    Returns:
        (model in eval mode, tokenizer). The model is called as Tevatron's are (`model(query=batch).q_reps`,
        `model(passage=batch).p_reps`) and carries `input_format` (prefix ids, end-of-sequence id) for building its
        inputs from token ids.
    """
    options = {k: v for k, v in (input_options or {}).items() if v}
    return get_backend(backend).load_encoder(path, device, pooling=pooling, normalize=normalize, **options)
