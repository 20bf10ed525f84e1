"""Training one episode: the run's settings as the backend's model, data and training arguments (by Tevatron/HF flag
name, `train_settings`), checked before anything is written, and trained in this process or under torchrun."""
from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from transformers import AutoConfig, TrainerCallback

from ..arguments import check_mining_counts
from ..backends import get_backend, resolve_backend
from ..data.run_folder import RunLayout
from ..training.train import train
from .config import EpisodeArguments

logger = logging.getLogger(__name__)


def input_options(args: EpisodeArguments) -> dict:
    """Current Tevatron's input options, so that every episode (the base model too) encodes as it trains.

    Args:
        args: the run's settings.

    Returns:
        {"query_prefix", "passage_prefix", "append_eos_token"}.
    """
    return {"query_prefix": args.query_prefix, "passage_prefix": args.passage_prefix,
            "append_eos_token": args.append_eos_token}


def train_settings(args: EpisodeArguments, folder: RunLayout, i: int, token_cache_dir: Path, device: str
                   ) -> tuple[dict, dict, dict]:
    """Model, data and training settings of episode i, by Tevatron/HF flag name.

    Args:
        args: the run's settings.
        folder: the run folder (episode i's pool and model).
        i: the episode (>= 1).
        token_cache_dir: where the token caches live.
        device: 'cpu' trains on the CPU.

    Returns:
        (model settings, data settings, training settings); current Tevatron's options only when set, since Tevatron
        0.1.0's dataclasses do not have them.
    """
    a = args
    start = folder.model(i - 1) if a.continue_training and i > 1 else Path(a.model_name_or_path)
    model_kw = dict(model_name_or_path=str(start), pooling=a.pooling, normalize=a.normalize,
                    temperature=a.temperature, untie_encoder=a.untie_encoder)
    data_kw = dict(pool=str(folder.pool(i)), collection=a.collection, split=a.train_split,
                   token_cache_dir=str(token_cache_dir), train_n_passages=a.n_passages_by_episode()[i - 1],
                   q_max_len=a.q_max_len, p_max_len=a.p_max_len, negative_mixing=a.negative_mixing,
                   source_weights=a.source_weights, mask_batch_positives=a.mask_batch_positives)
    if a.passages:
        data_kw["passages"] = a.passages
    train_kw = dict(output_dir=str(folder.model(i)), per_device_train_batch_size=a.per_device_train_batch_size,
                    learning_rate=a.learning_rate, num_train_epochs=a.num_train_epochs,
                    warmup_ratio=a.warmup_ratio, early_stop_step=0 if i == a.num_episodes else a.refresh_steps,
                    seed=a.seed, data_seed=a.seed, bf16=a.bf16, fp16=a.fp16, logging_steps=a.logging_steps,
                    save_strategy="no", report_to="none", dataloader_num_workers=0,
                    # full batches only, in both backends (Tevatron 0.1.0's trainer always drops the last one)
                    dataloader_drop_last=True,
                    disable_tqdm=not a.progress, use_cpu=device == "cpu")
    if a.train_nproc > 1:
        train_kw["negatives_x_device"] = True
    train_kw["backend"] = a.backend
    v2_model = dict(attn_implementation=a.attn_implementation, lora=a.lora,
                    lora_r=a.lora_r if a.lora else None, lora_target_modules=a.lora_target_modules)
    # Tevatron 0.1.0 always pads to the maximum length and has no such flag
    v2_data = {**input_options(a), "pad_to_max_length": a.pad_to_max_length and resolve_backend(a.backend) == "v2"}
    v2_train = dict(grad_cache=a.grad_cache, gc_q_chunk_size=a.gc_q_chunk_size if a.grad_cache else None,
                    gc_p_chunk_size=a.gc_p_chunk_size if a.grad_cache else None)
    for kw, extra in ((model_kw, v2_model), (data_kw, v2_data), (train_kw, v2_train)):
        kw.update({k: v for k, v in extra.items() if v})
    return model_kw, data_kw, train_kw


def check_settings(args: EpisodeArguments, folder: RunLayout, token_cache_dir: Path, device: str) -> None:
    """Every check a later step would make of the settings and the model, made before the run folder is written: a
    refused flag then leaves no manifest, and the corrected command works in the same folder.

    Episode 1's training arguments are built as training builds them (mixing, source weights, passages per query,
    pooling, precision), the mining counts checked, and the model folder's config read.

    Args:
        args, folder, token_cache_dir, device: as for `train_settings`.

    Raises:
        ValueError: a setting a step would refuse.
        FileNotFoundError: the model is neither a folder nor a model in the Hugging Face cache.
    """
    check_mining_counts(args.depth, args.sample)
    try:
        AutoConfig.from_pretrained(args.model_name_or_path)
    except OSError as e:
        if e.errno is not None:
            raise
        raise FileNotFoundError(errno.ENOENT, "no model here (neither a model folder nor a model in the Hugging "
                                              "Face cache)", args.model_name_or_path) from None
    backend = get_backend(args.backend)
    model_kw, data_kw, train_kw = train_settings(args, folder, 1, token_cache_dir, device)
    backend.TeleModelArguments(**model_kw)
    backend.TeleDataArguments(**data_kw)
    backend.TeleTrainingArguments(**train_kw)


def train_episode(args: EpisodeArguments, folder: RunLayout, i: int, token_cache_dir: Path, device: str) -> Path:
    """Train episode i's model on its pool, in this process or, with `--train_nproc` above 1, under torchrun (negatives
    shared across devices). A killed run's leftover `model.partial` is removed first.

    Args:
        args, folder, i, token_cache_dir, device: as for `train_settings`.

    Returns:
        The model folder.
    """
    shutil.rmtree(folder.episode(i) / "model.partial", ignore_errors=True)
    model_kw, data_kw, train_kw = train_settings(args, folder, i, token_cache_dir, device)
    if args.train_nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={args.train_nproc}", "-m", "tevatron_tele.driver.train"]
        for key, value in {**model_kw, **data_kw, **train_kw}.items():
            cmd += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
        logger.info("episode %d: %s", i, " ".join(cmd))
        subprocess.run(cmd, check=True)
        return folder.model(i)
    backend = get_backend(args.backend)
    return train(backend.TeleModelArguments(**model_kw), backend.TeleDataArguments(**data_kw),
                 backend.TeleTrainingArguments(**train_kw), callbacks=training_kill_callbacks(f"episode-{i}/train"))


def training_kill_callbacks(step: str) -> list[TrainerCallback]:
    """Testing aid: `TELE_KILL_AT=<step>@<n>` kills the process (SIGKILL) after optimizer step n of that training.

    Args:
        step: the training step's name, e.g. 'episode-2/train'.

    Returns:
        The callback that kills, or none when `TELE_KILL_AT` names another step.
    """
    name, _, at = os.environ.get("TELE_KILL_AT", "").partition("@")
    if name != step or not at:
        return []

    class _Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= int(at):
                os.kill(os.getpid(), signal.SIGKILL)

    return [_Kill()]
