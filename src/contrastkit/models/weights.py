"""Weights the user has: a state dict from a local file, checked against the model first.

:func:`load_pretrained` reads a ``.safetensors`` file or a PyTorch ``.pt``/``.pth``/``.bin``
state dict (with ``weights_only=True``: no code in the file runs), optionally takes the
part under a prefix (``"module."`` from DistributedDataParallel, ``"encoder."`` from a
:class:`~contrastkit.models.SiameseNetwork` or a run's ``model.safetensors``), and
compares keys and shapes with the model before anything is copied. A mismatch is one
line naming the file, with counts and the first few keys of each kind.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["LoadReport", "WeightsError", "load_pretrained"]

_SHOWN = 3  # keys named per kind in a message


class WeightsError(ValueError):
    """Weights that cannot be loaded into a model, with a message naming the file."""


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_pretrained` copied into the model and what it left out.

    Attributes:
        loaded: the model's keys whose values came from the file.
        missing: the model's keys the file has no value for (they keep their values).
        unexpected: the file's keys (after the prefix) the model has no place for.
        mismatched: ``(key, shape in the file, shape in the model)`` for each key both
            have with different shapes (not copied).
        ignored: the file's keys outside ``prefix`` (never compared).
    """

    loaded: tuple[str, ...]
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()
    ignored: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Every key of the model was loaded and every key of the file was used."""
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        """One line: the number loaded, then each kind of mismatch with its first keys."""
        parts = [f"{len(self.loaded)} loaded"]
        for what, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                parts.append(f"{len(keys)} {what} ({_first(keys)})")
        if self.mismatched:
            shown = [
                f"{k} {_shape(a)} in the file, {_shape(b)} in the model"
                for k, a, b in self.mismatched[:_SHOWN]
            ]
            more = len(self.mismatched) - _SHOWN
            tail = f", and {more} more" if more > 0 else ""
            parts.append(f"{len(self.mismatched)} of another shape ({', '.join(shown)}{tail})")
        return "; ".join(parts)


def _first(keys: tuple[str, ...]) -> str:
    more = len(keys) - _SHOWN
    return ", ".join(keys[:_SHOWN]) + (f", and {more} more" if more > 0 else "")


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


def load_pretrained(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    strict: bool = True,
    prefix: str | None = None,
    key: str | None = None,
) -> LoadReport:
    """Load a state dict from a local file into ``model``, checking it first.

    Keys and shapes are compared with ``model.state_dict()`` before anything is copied:
    with ``strict=True`` any missing key, unexpected key or shape mismatch raises and
    leaves the model untouched; with ``strict=False`` the keys present in both with the
    same shape are loaded and the rest is reported. A batch-norm layer's
    ``num_batches_tracked``, absent from files written by older PyTorch (torchvision's
    ResNet weights among them), is not counted as missing: the model keeps its own.

    Args:
        model: the module to load into (an encoder, a :class:`SiameseNetwork`, …).
        path: a ``.safetensors`` file or a file written by ``torch.save`` (``.pt``,
            ``.pth``, ``.bin``), told apart by their first bytes, not their names.
        strict: raise unless the file and the model have the same keys and shapes.
        prefix: use only the file's keys under this prefix, with it removed: ``"module."``
            for DistributedDataParallel, ``"encoder."`` for the encoder of a
            :class:`SiameseNetwork` or an :class:`Autoencoder` (a trailing dot is added
            when missing). The other keys are listed in ``LoadReport.ignored``.
        key: the state dict is the value under this key of the file's dictionary (a
            training checkpoint such as ``{"state_dict": ..., "epoch": 90}``).

    Returns:
        A :class:`LoadReport` of what was loaded and what was left out.

    Raises:
        WeightsError: (a ``ValueError``) the file does not exist or cannot be read as a
            state dict, ``key`` or ``prefix`` selects nothing, or with ``strict=True``
            the keys or shapes do not match; the message is one line naming the file.
        TypeError: an argument of the wrong type.
        ValueError: an empty ``prefix`` or ``key``.

    Example:
        >>> import tempfile, torch
        >>> from contrastkit.models import SiameseNetwork
        >>> from safetensors.torch import save_file
        >>> trained = SiameseNetwork(torch.nn.Linear(4, 2))
        >>> fresh = torch.nn.Linear(4, 2)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     save_file(trained.state_dict(), f"{folder}/model.safetensors")
        ...     report = load_pretrained(fresh, f"{folder}/model.safetensors", prefix="encoder")
        >>> report.loaded, torch.equal(fresh.weight, trained.encoder.weight)
        (('weight', 'bias'), True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or a path, got {type(path).__name__}")
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be a bool, got {type(strict).__name__} {strict!r}")
    for name, value in (("prefix", prefix), ("key", key)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a str or None, got {type(value).__name__} {value!r}")
        if value == "":
            raise ValueError(f"{name} must be a non-empty str or None, got ''")
    if prefix is not None and not prefix.endswith("."):
        prefix += "."
    file = Path(path)
    state = _read_state_dict(file, key)

    ignored: tuple[str, ...] = ()
    if prefix is not None:
        inside = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not inside:
            raise WeightsError(
                f"{file}: no key starts with prefix {prefix!r} (its keys start "
                f"{_first(tuple(state))})"
            )
        ignored = tuple(k for k in state if not k.startswith(prefix))
        state = inside

    own = model.state_dict()
    mismatched = tuple(  # in the model's order, whatever the file's
        (k, tuple(state[k].shape), tuple(v.shape))
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    )
    unexpected = tuple(k for k in state if k not in own)
    missing = tuple(k for k in own if k not in state and not _filled_by_torch(k, state))
    bad = {k for k, _, _ in mismatched} | set(unexpected)
    usable = {k: v for k, v in state.items() if k not in bad}
    report = LoadReport(
        loaded=tuple(k for k in own if k in usable),
        missing=missing,
        unexpected=unexpected,
        mismatched=mismatched,
        ignored=ignored,
    )
    if strict and not report.complete:
        hint = _prefix_hint(unexpected, missing)
        raise WeightsError(
            f"{file}: the weights do not match the model: {report.summary()}"
            f"{hint}; pass strict=False to load the {len(report.loaded)} that match"
        )
    try:
        model.load_state_dict(usable, strict=False)
    except RuntimeError as error:  # a module's own loading refused a value
        raise WeightsError(f"{file}: {_one_line(error)}") from None
    return report


def _read_state_dict(file: Path, key: str | None) -> dict[str, Tensor]:
    """The file's tensors by name, or a :class:`WeightsError` naming the file."""
    if not file.exists():
        raise WeightsError(f"weights file {file} does not exist")
    if not file.is_file():
        raise WeightsError(f"weights file {file} is not a file")
    try:
        with file.open("rb") as handle:
            head = handle.read(9)
    except OSError as error:
        raise WeightsError(f"weights file {file} cannot be read: {error.strerror}") from None
    loaded: object
    try:
        if len(head) == 9 and head[8:9] == b"{" and not head.startswith(b"PK"):
            from safetensors.torch import load_file

            loaded = load_file(str(file), device="cpu")
        else:
            loaded = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # each reader has its own errors; all mean "not weights"
        raise WeightsError(
            f"weights file {file} is neither a safetensors file nor a PyTorch state dict "
            f"({type(error).__name__}: {_one_line(error)})"
        ) from None
    where = ""
    if key is not None:
        if not isinstance(loaded, Mapping) or key not in loaded:
            keys = _first(tuple(map(str, loaded))) if isinstance(loaded, Mapping) else "none"
            raise WeightsError(f"{file} has no key {key!r} (its keys: {keys})")
        loaded, where = loaded[key], f"[{key!r}]"
    if not isinstance(loaded, Mapping):
        raise WeightsError(f"{file}{where} holds a {type(loaded).__name__}, not a state dict")
    others = [k for k, v in loaded.items() if not (isinstance(k, str) and isinstance(v, Tensor))]
    if others:
        nested = [str(k) for k in others if isinstance(loaded[k], Mapping)]
        hint = f"; pass key={nested[0]!r} if the weights are under it" if nested else ""
        raise WeightsError(
            f"{file}{where} is not a state dict: {len(others)} of its {len(loaded)} entries "
            f"are not named tensors ({_first(tuple(map(str, others)))}){hint}"
        )
    return dict(loaded)


def _filled_by_torch(name: str, state: Mapping[str, Tensor]) -> bool:
    """A batch norm's step count that PyTorch sets itself when the file lacks it."""
    stem, _, leaf = name.rpartition(".")
    return leaf == "num_batches_tracked" and f"{stem}.running_mean" in state


def _prefix_hint(unexpected: tuple[str, ...], missing: tuple[str, ...]) -> str:
    """``prefix='…'`` when the file's unexpected keys are the missing ones under a prefix."""
    if not unexpected or not missing:
        return ""
    wanted = set(missing)
    found: Counter[str] = Counter()
    for k in unexpected:
        parts = k.split(".")
        for i in range(1, len(parts)):
            if ".".join(parts[i:]) in wanted:
                found[".".join(parts[:i]) + "."] += 1
                break
    if not found:
        return ""
    prefix, _ = found.most_common(1)[0]
    return f" (the file's keys look like the model's under prefix={prefix!r})"


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
