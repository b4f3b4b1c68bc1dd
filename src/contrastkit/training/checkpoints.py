"""Checkpoints and weights: safetensors files, written so a kill never leaves half of one."""

from __future__ import annotations

from pathlib import Path

from torch import nn

__all__ = ["latest_checkpoint", "load_weights", "save_weights"]


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Write ``model``'s state dict to a ``.safetensors`` file (CPU, contiguous copies)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path))


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
