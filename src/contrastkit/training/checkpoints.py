"""Checkpoints and weights: safetensors files, written so a kill never leaves half of one.

A run's ``checkpoints/`` folder holds ``epoch-NNNN/`` (the last epoch's checkpoint) and,
when the trainer monitors a validation value, ``best/`` (the weights of the best epoch
and a ``record.json`` naming it). Each is written as a hidden temporary folder
(``.epoch-NNNN.tmp-PID``, ``.best.tmp-PID``) renamed into place; a run killed while
writing leaves such a folder behind, which :func:`remove_stale` clears.

:func:`save_weights` and :func:`save_state` serialise in memory and write the bytes with
Python's own ``open``, so that a failed write (a full disk) is an :class:`OSError` with
its ``errno``, not a serialiser's error.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "best_checkpoint",
    "latest_checkpoint",
    "load_weights",
    "remove_stale",
    "safetensors_bytes",
    "save_state",
    "save_weights",
]


def safetensors_bytes(tensors: Mapping[str, Tensor]) -> bytes:
    """``tensors`` serialised as a ``.safetensors`` file (CPU, contiguous copies), in memory.

    Serialising in memory lets the caller write the bytes with Python's own ``open``, so
    that a failed write is an :class:`OSError` with its ``errno`` and the file's name.
    """
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()})


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Write ``model``'s state dict to a ``.safetensors`` file (CPU, contiguous copies).

    Raises:
        OSError: the file cannot be written (a full disk: ``errno.ENOSPC``).
    """
    Path(path).write_bytes(safetensors_bytes(model.state_dict()))


def save_state(state: dict[str, Any], path: str | Path) -> None:
    """Write a checkpoint's training state (optimizer, scheduler, history…) with ``torch.save``.

    Raises:
        OSError: the file cannot be written (a full disk: ``errno.ENOSPC``).
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    Path(path).write_bytes(buffer.getvalue())


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder of a run, or ``None`` if there is none."""
    folder = Path(run_dir) / "checkpoints"
    found = sorted(
        (
            p
            for p in folder.glob("epoch-*")
            if p.name.removeprefix("epoch-").isdigit()
            and (p / "model.safetensors").is_file()
            and (p / "state.pt").is_file()
        ),
        key=lambda p: int(p.name.removeprefix("epoch-")),
    )
    return found[-1] if found else None


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a ``model.safetensors`` file into ``model`` (every key must match)."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path)))


def best_checkpoint(run_dir: str | Path) -> Path | None:
    """The run's ``checkpoints/best`` folder if it is complete, else ``None``."""
    folder = Path(run_dir) / "checkpoints" / "best"
    complete = (folder / "model.safetensors").is_file() and (folder / "record.json").is_file()
    return folder if complete else None


def remove_stale(run_dir: str | Path) -> list[Path]:
    """Clear what a killed write left in ``run_dir/checkpoints``; returns what was removed.

    Temporary folders (``.epoch-NNNN.tmp-PID``, ``.best.tmp-PID``) are removed. A best
    checkpoint set aside while its successor was renamed into place
    (``.best.old-PID``) is put back as ``best`` if there is no ``best``, else removed.
    Call it only when no other process writes to the run.
    """
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    removed = []
    best = folder / "best"
    for old in sorted(folder.glob(".best.old-*")):
        if old.is_dir() and not best.exists():
            os.replace(old, best)
        else:
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old)
    for pattern in (".epoch-*.tmp-*", ".best.tmp-*"):
        for tmp in sorted(folder.glob(pattern)):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
