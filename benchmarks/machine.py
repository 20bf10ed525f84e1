"""What every benchmark result records about where it ran: one description of the machine and the code."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("numpy", "torch", "transformers", "tokenizers", "datasets", "tevatron", "faiss-cpu")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        return platform.processor() or None


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout if done.returncode == 0 else ""

    return {"git_commit": git("rev-parse", "HEAD").strip() or None,
            "tevatron_tele_modified_files": git("status", "--porcelain", "tevatron_tele").split("\n")[:-1]}


def machine_info(device: str | None = None) -> dict[str, Any]:
    """The machine, the library versions and the commit a benchmark ran on.

    Args:
        device: the torch device the benchmark used ("cpu", "cuda", ...); a CUDA device adds its name, memory
            and the CUDA version.

    Returns:
        A JSON-ready dict: cpu, cpu_count, cpus_usable, memory_gb, platform, python, torch_threads, the
        versions of PACKAGES, TOKENIZERS_PARALLELISM, git_commit and the library's uncommitted files, device.
    """
    import torch

    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        **{name: _version(name) for name in PACKAGES},
        "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM"),
        **_git(),
        "device": device,
    }
    if (device or "").startswith("cuda") or (device is None and torch.cuda.is_available()):
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda)
    return info
