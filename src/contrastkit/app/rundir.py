"""The run folder on disk: made safely, checked before use, loaded without tracebacks.

A run folder (see :mod:`contrastkit.app.run`) holds ``config.toml``, ``model.json``,
``model.safetensors``, ``reference.safetensors``, ``checkpoints/epoch-NNNN/{model.safetensors,
state.pt}``, ``metrics.json``, ``figures/`` and ``report.html``. This module holds what the
command line does with one, as small functions:

* making one: :func:`create_run_folder` (a folder the user named) and
  :func:`take_default_run_folder` (the first free ``PARENT/STEM-N``, taken with
  ``os.mkdir`` so that two runs started together never take the same one) write
  ``config.toml`` first, so that a run killed at any later moment can be resumed;
  :func:`discard_untrained_run_folder` removes one again when the run fails before
  anything was trained;
* writing into one: :func:`write_text_atomic`, :func:`write_bytes_atomic` and
  :func:`save_tensors` write to a temporary file renamed into place (a kill never
  leaves half a file), and :func:`naming_write_errors` turns an ``OSError`` (a full
  disk) into a :class:`WriteError` that names the file;
* cleaning one: :func:`remove_stale_temporaries` removes what killed writers left;
* checking one: :func:`check_run_folder` (before ``evaluate``, ``embed``, ``score`` or
  ``train --resume``), :func:`read_model_json` and :func:`read_safetensors_header` look
  at the files without torch and raise :class:`RunFolderError` naming the file and what
  is wrong with it;
* loading from one: :func:`load_safetensors`, :func:`load_state`,
  :func:`load_weights_into` and :func:`read_reference` turn whatever a damaged file
  makes torch or safetensors raise into a :class:`RunFolderError`.

Importing this module does not import torch (the command line imports it before it knows
whether torch is needed); the loaders import it when called.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import struct
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contrastkit.app.config import RECONSTRUCTION_LOSSES

if TYPE_CHECKING:
    from torch import Tensor, nn

__all__ = [
    "CHECKPOINTS",
    "CONFIG",
    "MODEL_JSON",
    "REFERENCE",
    "STATE",
    "TEXT_MODEL",
    "WEIGHTS",
    "RunFolderError",
    "WriteError",
    "check_model_spec",
    "check_run_folder",
    "create_run_folder",
    "discard_untrained_run_folder",
    "load_safetensors",
    "load_state",
    "load_weights_into",
    "naming_write_errors",
    "read_model_json",
    "read_reference",
    "read_safetensors_header",
    "remove_stale_temporaries",
    "save_tensors",
    "take_default_run_folder",
    "write_bytes_atomic",
    "write_text_atomic",
]

CONFIG = "config.toml"
MODEL_JSON = "model.json"
WEIGHTS = "model.safetensors"
REFERENCE = "reference.safetensors"
CHECKPOINTS = "checkpoints"
STATE = "state.pt"
TEXT_MODEL = "text-model"  # a text run's encoder and tokenizer (contrastkit.app.text)

# ``.NAME.tmp-PID`` (the trainer's checkpoint folders) or ``.NAME.tmp-PID-TOKEN`` (ours)
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)(?:-[0-9a-f]+)?$")
_CHECKPOINT = re.compile(r"^epoch-(\d+)$")
_MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header, in bytes
_DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
_INT_DTYPES = ("I8", "I16", "I32", "I64", "U8", "U16", "U32", "U64")


class RunFolderError(ValueError):
    """A run folder, or a file in it, that cannot be used; the message names it."""


class WriteError(OSError):
    """A file that could not be written (a full disk, no permission); the message names it.

    ``errno`` is that of the original error (``errno.ENOSPC`` for a full disk).
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno

    def __str__(self) -> str:
        return str(self.args[0])


# ----------------------------------------------------------------------------- writing


def _write_error(path: Path, error: OSError, verb: str = "write") -> WriteError:
    if isinstance(error, WriteError):
        return error
    where = error.filename if isinstance(error.filename, str) and error.filename else path
    reason = error.strerror or str(error) or type(error).__name__
    return WriteError(f"cannot {verb} {where}: {reason}", error.errno)


@contextmanager
def naming_write_errors(path: str | Path) -> Iterator[None]:
    """Turn an ``OSError`` raised inside into a :class:`WriteError` naming ``path``.

    For writers that report a full disk as ``[Errno 28] No space left on device`` with no
    file name (``plots.save_figure``, ``report.write_report``, ``Path.write_text``). The
    error's own file name is kept when it has one.
    """
    try:
        yield
    except OSError as error:
        raise _write_error(Path(path), error) from None


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file renamed into place.

    A reader (or a kill) sees the old file or the new one, never half of one; an existing
    file is replaced. A failed write removes the temporary file and raises a
    :class:`WriteError` naming ``path``.

    Returns:
        ``path``, as a :class:`~pathlib.Path`.
    """
    target = Path(path)
    temporary = _temporary(target)
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise _write_error(target, error) from None
        raise
    return target


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, as :func:`write_bytes_atomic`."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def save_tensors(path: str | Path, tensors: Mapping[str, Tensor]) -> Path:
    """Write tensors to a ``.safetensors`` file atomically, naming it if that fails.

    The file is serialised in memory first
    (:func:`contrastkit.training.checkpoints.safetensors_bytes`): safetensors reports a
    full disk without the file's name (and not as an ``OSError``), Python's own writes do
    not.
    """
    from contrastkit.training.checkpoints import safetensors_bytes

    return write_bytes_atomic(path, safetensors_bytes(tensors))


# ----------------------------------------------------------------------------- making


def _make_parent(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _write_error(folder, error, "create the folder") from None


def _claim(folder: Path) -> bool:
    """Create ``folder``; ``False`` if it exists already (``os.mkdir`` is atomic)."""
    try:
        os.mkdir(folder)
    except FileExistsError:
        return False
    except OSError as error:
        raise _write_error(folder, error, "create the run folder") from None
    return True


def _write_config(run: Path, config_toml: str) -> None:
    try:
        write_text_atomic(run / CONFIG, config_toml)
    except BaseException:
        shutil.rmtree(run, ignore_errors=True)  # just made by us: nothing else in it
        raise


def create_run_folder(path: str | Path, config_toml: str) -> Path:
    """Create the run folder ``path`` and write its ``config.toml`` in it first.

    The folder must not exist (a user's folder is never written into). The config is
    written atomically right after the folder is made, so a run killed at any later
    moment leaves a folder that ``--resume`` accepts (from epoch 0 if no checkpoint was
    written). Missing parent folders are created.

    Raises:
        RunFolderError: ``path`` exists.
        WriteError: the folder or the config cannot be written (the folder is removed).
    """
    run = Path(path)
    _make_parent(run.parent)
    if not _claim(run):
        raise RunFolderError(
            f"run folder {run} already exists; choose another --out or --resume it"
        )
    _write_config(run, config_toml)
    return run


def take_default_run_folder(
    parent: str | Path, stem: str, config_toml: str | None = None, *, limit: int = 10_000
) -> Path:
    """Create and return the first free ``parent/stem-N`` (N = 1, 2, …).

    Each name is taken with ``os.mkdir``, which fails if another process made it first,
    so runs started together get different folders. With ``config_toml``, the config is
    written in the folder at once, as by :func:`create_run_folder`.

    Raises:
        ValueError: ``stem`` is empty or holds a path separator.
        RunFolderError: ``stem-1`` … ``stem-{limit - 1}`` all exist.
        WriteError: a folder or the config cannot be written.
    """
    if not isinstance(stem, str) or not stem or Path(stem).name != stem or "/" in stem:
        raise ValueError(f"stem must be a folder name without a path, got {stem!r}")
    base = Path(parent)
    _make_parent(base)
    for n in range(1, limit):
        candidate = base / f"{stem}-{n}"
        if _claim(candidate):
            if config_toml is not None:
                _write_config(candidate, config_toml)
            return candidate
    raise RunFolderError(f"no free run folder name {stem}-N under {base} (N < {limit}); pass --out")


# ----------------------------------------------------------------------------- cleaning


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if sys.platform == "win32":  # os.kill would end the process there: assume it lives
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's process
        return True
    return True


def _temporaries(run: Path) -> Iterator[tuple[Path, int]]:
    for folder in (run, run / CHECKPOINTS, run / "figures"):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            found = _TEMPORARY.match(entry.name)
            if found:
                yield entry, int(found["pid"])


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Remove what killed writers left in a run folder; returns what was removed.

    The trainer writes a checkpoint to ``checkpoints/.epoch-NNNN.tmp-PID`` and renames it
    into place, and :func:`write_bytes_atomic` writes ``.NAME.tmp-PID-TOKEN``: a kill in
    between leaves the temporary behind. Those whose process ``PID`` is no longer alive
    are removed (in the run folder, ``checkpoints/`` and ``figures/``); those of a live
    process (a run still writing, or an unrelated process that was given the same PID
    later) are kept. On Windows none is removed.
    """
    removed = []
    for entry, pid in list(_temporaries(Path(run_dir))):
        if _pid_alive(pid):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        if not entry.exists():
            removed.append(entry)
    return removed


def discard_untrained_run_folder(run_dir: str | Path) -> bool:
    """Remove a new run folder that holds nothing trained yet; ``True`` if removed.

    For a run that fails with an error (bad data found late, a full disk) before its
    first checkpoint, so that a failed command leaves nothing behind. The folder is
    removed only if it holds nothing but ``config.toml``, ``model.json``, a text run's
    ``text-model/`` (its encoder as it started), temporary files
    and an empty ``checkpoints/`` (or one holding only temporaries); anything else (a
    checkpoint, a file of the user's) keeps it.
    """
    run = Path(run_dir)
    if not run.is_dir() or run.is_symlink():
        return False
    for entry in run.iterdir():
        if entry.name in (CONFIG, MODEL_JSON) and entry.is_file():
            continue
        if entry.name == TEXT_MODEL and entry.is_dir() and not entry.is_symlink():
            continue  # a text run's encoder as it started: rebuilt alike by a new run
        if _TEMPORARY.match(entry.name):
            continue
        if entry.name == CHECKPOINTS and entry.is_dir() and not entry.is_symlink():
            if all(_TEMPORARY.match(e.name) for e in entry.iterdir()):
                continue
        return False
    shutil.rmtree(run)
    return True


# ----------------------------------------------------------------------------- checking


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_model_spec(spec: Any, where: str) -> dict[str, Any]:
    """Check a model spec (the content of ``model.json``); returns it.

    A text run's spec (``kind`` ``"text"``) needs ``embedding_dim`` and a ``text`` table
    with ``pooling``, ``max_length`` and ``folder`` (the saved text model in the run
    folder). Any other needs ``kind`` (``"vectors"`` or ``"images"``), ``embedding_dim``
    and ``hidden``,
    then ``in_features`` (vectors) or ``channels`` and ``image_size`` (images); a
    ``batch_norm`` (true when absent) must be a bool; an image network's ``encoder``
    (``"conv"`` when absent) must be ``"conv"`` or ``"resnet"``, the latter with
    ``blocks`` (one per width of ``hidden``) and ``norm``; an autoencoder's ``autoencoder``
    table needs ``noise_std``, ``reconstruction_loss`` and
    ``input_range``, and its ``feature_scaling``, when present, a ``kind`` and a
    ``center`` and positive ``scale`` per feature. Other keys are allowed.

    Raises:
        RunFolderError: naming ``where`` and the key that is missing or wrong.
    """
    if not isinstance(spec, dict):
        raise RunFolderError(f"{where} must hold a JSON object, got {type(spec).__name__}")

    def need(table: dict[str, Any], key: str, ok: Any, expected: str, prefix: str = "") -> None:
        if key not in table:
            raise RunFolderError(f"{where} has no '{prefix}{key}' ({expected})")
        if not ok(table[key]):
            raise RunFolderError(f"{where}: '{prefix}{key}' must be {expected}, got {table[key]!r}")

    need(
        spec, "kind", lambda v: v in ("vectors", "images", "text"), '"vectors", "images" or "text"'
    )
    need(spec, "embedding_dim", _positive_int, "a positive integer")
    if spec["kind"] == "text":
        need(spec, "text", lambda v: isinstance(v, dict), "a JSON object")
        table = spec["text"]
        need(
            table,
            "pooling",
            lambda v: v in ("mean", "cls", "max"),
            '"mean", "cls" or "max"',
            "text.",
        )
        need(table, "max_length", lambda v: _positive_int(v) and v >= 2, "an integer >= 2", "text.")
        need(table, "folder", lambda v: isinstance(v, str) and bool(v), "a folder name", "text.")
        return spec
    need(
        spec,
        "hidden",
        lambda v: isinstance(v, list) and all(_positive_int(h) for h in v),
        "a list of positive integers",
    )
    if spec["kind"] == "vectors":
        need(spec, "in_features", _positive_int, "a positive integer")
    else:
        need(spec, "channels", _positive_int, "a positive integer")
        need(spec, "image_size", _positive_int, "a positive integer")
    if "batch_norm" in spec:
        need(spec, "batch_norm", lambda v: isinstance(v, bool), "true or false")
    if spec["kind"] == "images" and "encoder" in spec:
        need(spec, "encoder", lambda v: v in ("conv", "resnet"), '"conv" or "resnet"')
        if spec["encoder"] == "resnet":
            stages = len(spec["hidden"])
            need(
                spec,
                "blocks",
                lambda v: (
                    isinstance(v, list) and len(v) == stages and all(_positive_int(n) for n in v)
                ),
                f"a list of {stages} positive integers (one per width of hidden)",
            )
            need(
                spec,
                "norm",
                lambda v: v in ("batch", "group", "none"),
                '"batch", "group" or "none"',
            )
    if "autoencoder" in spec:
        need(spec, "autoencoder", lambda v: isinstance(v, dict), "a JSON object")
        table = spec["autoencoder"]
        need(table, "noise_std", lambda v: _finite(v) and v >= 0, "a number >= 0", "autoencoder.")
        need(
            table,
            "reconstruction_loss",
            lambda v: v in RECONSTRUCTION_LOSSES,
            " or ".join(f'"{k}"' for k in RECONSTRUCTION_LOSSES),
            "autoencoder.",
        )
        need(
            table,
            "input_range",
            lambda v: isinstance(v, list) and len(v) == 2 and all(map(_finite, v)) and v[0] <= v[1],
            "[low, high], two numbers with low <= high",
            "autoencoder.",
        )
        if "feature_scaling" in table:
            _check_feature_scaling(table["feature_scaling"], spec, need)
    return spec


def _check_feature_scaling(scaling: Any, spec: dict[str, Any], need: Any) -> None:
    """An autoencoder's per-feature scaling: a kind, and a centre and scale per feature."""
    prefix = "autoencoder.feature_scaling."
    need(
        {"feature_scaling": scaling},
        "feature_scaling",
        lambda v: isinstance(v, dict),
        "a JSON object",
        "autoencoder.",
    )
    need(
        scaling,
        "kind",
        lambda v: v in ("standardize", "min_max"),
        '"standardize" or "min_max"',
        prefix,
    )
    n = spec.get("in_features")

    def numbers(positive: bool) -> Any:
        return lambda v: (
            isinstance(v, list)
            and len(v) == n
            and all(map(_finite, v))
            and (not positive or all(x > 0 for x in v))
        )

    need(scaling, "center", numbers(False), f"a list of {n} numbers", prefix)
    need(scaling, "scale", numbers(True), f"a list of {n} positive numbers", prefix)


def read_model_json(run_dir: str | Path) -> dict[str, Any]:
    """The checked model spec of a run folder (``model.json``), without torch.

    Raises:
        RunFolderError: the file is missing, not UTF-8 JSON, or misses a key (see
            :func:`check_model_spec`).
    """
    run = Path(run_dir)
    path = run / MODEL_JSON
    if not path.is_file():
        raise RunFolderError(
            f"run folder {run} has no {MODEL_JSON} (how to rebuild the network); train it again"
        )
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise RunFolderError(f"cannot read {path}: {error.strerror or error}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunFolderError(f"{path} is not valid JSON ({error})") from None
    return check_model_spec(spec, str(path))


def read_safetensors_header(path: str | Path, what: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The tensors a ``.safetensors`` file holds, ``{name: (dtype, shape)}``, checked.

    Reads only the header, without torch, and checks that it is well formed and that
    the file holds exactly the bytes it describes, so that a truncated or padded file
    is found before anything is loaded.

    Args:
        path: the file.
        what: what the file is, for the message (``"the weights"``).

    Raises:
        RunFolderError: naming ``what``, the file and what is wrong.
    """
    file = Path(path)
    if not file.is_file():
        raise RunFolderError(f"{what} {file} does not exist")

    def damaged(why: str) -> RunFolderError:
        return RunFolderError(f"{what} {file} is damaged: {why}")

    try:
        size = file.stat().st_size
        with file.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise damaged(f"{size} bytes, too short for a safetensors file")
            (length,) = struct.unpack("<Q", head)
            if length > min(size - 8, _MAX_HEADER):
                raise damaged(f"its header claims {length} bytes, the file holds {size}")
            raw = handle.read(length)
    except OSError as error:
        raise RunFolderError(f"cannot read {what} {file}: {error.strerror or error}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise damaged("its header is not JSON (not a safetensors file?)") from None
    if not isinstance(header, dict):
        raise damaged("its header is not a JSON object")
    data_size = size - 8 - length
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape = str(info["dtype"]), tuple(int(n) for n in info["shape"])
            begin, stop = (int(n) for n in info["data_offsets"])
        except (TypeError, KeyError, ValueError):
            raise damaged(f"the entry of tensor '{name}' is malformed") from None
        count = math.prod(shape)
        if min(shape, default=0) < 0 or not 0 <= begin <= stop:
            raise damaged(f"the entry of tensor '{name}' is malformed")
        if dtype in _DTYPE_BYTES and stop - begin != count * _DTYPE_BYTES[dtype]:
            raise damaged(f"tensor '{name}' has {stop - begin} bytes for shape {list(shape)}")
        tensors[name] = (dtype, shape)
        end = max(end, stop)
    if end != data_size:
        cut = "truncated" if end > data_size else "padded"
        raise damaged(f"{cut}: its tensors need {end} bytes of data, it holds {data_size}")
    return tensors


def _checkpoints(run: Path) -> list[tuple[int, Path]]:
    folder = run / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = [
        (int(m[1]), p) for p in folder.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir()
    ]
    return sorted(found)


def _check_reference(path: Path, embedding_dim: int | None) -> tuple[int, bool]:
    """Check a reference file's header; returns its number of rows and whether it has labels."""
    tensors = read_safetensors_header(path, "the reference embeddings")
    if "embeddings" not in tensors:
        names = ", ".join(tensors) or "none"
        raise RunFolderError(
            f"reference embeddings {path} have no tensor 'embeddings' (tensors: {names})"
        )
    dtype, shape = tensors["embeddings"]
    if dtype not in _FLOAT_DTYPES or len(shape) != 2 or shape[0] < 1:
        raise RunFolderError(
            f"reference embeddings {path}: 'embeddings' must be a non-empty (N, D) float "
            f"table, got {dtype} of shape {list(shape)}"
        )
    if embedding_dim is not None and shape[1] != embedding_dim:
        raise RunFolderError(
            f"reference embeddings {path} have size {shape[1]}, but model.json says "
            f"embedding_dim {embedding_dim}"
        )
    if "labels" in tensors:
        label_dtype, label_shape = tensors["labels"]
        if label_dtype not in _INT_DTYPES or label_shape != shape[:1]:
            raise RunFolderError(
                f"reference embeddings {path}: 'labels' must be {shape[0]} integers, "
                f"got {label_dtype} of shape {list(label_shape)}"
            )
    return shape[0], "labels" in tensors


def check_run_folder(
    path: str | Path, *, for_resume: bool = False, need_reference: bool = False
) -> None:
    """Check a run folder before it is used; raise a :class:`RunFolderError` if it cannot be.

    Every folder needs ``config.toml`` (its content is for
    :func:`~contrastkit.app.config.read_config_file` to check). Then:

    * to use a trained run (``for_resume=False``: evaluate, embed, score):
      ``model.json`` must be complete, and the weights (``model.safetensors``, or the
      latest checkpoint's while the run is unfinished) must be a whole safetensors file;
      ``reference.safetensors``, if there (or required by ``need_reference``, for
      score), must hold a 2-D ``embeddings`` of the model's size and optional ``labels``.
      Only file headers are read; torch is not imported.
    * to resume it (``for_resume=True``): ``model.json``, if written, must be complete;
      the newest checkpoint folder must hold both files, its weights must be whole and
      its ``state.pt`` must load (:func:`load_state`, which imports torch) and be the
      state of that epoch. A folder with only ``config.toml`` (killed in its first epoch)
      passes: the run restarts from epoch 0.

    Temporary files of killed writers are ignored (see :func:`remove_stale_temporaries`).
    """
    run = Path(path)
    if not run.exists():
        raise RunFolderError(f"run folder {run} does not exist")
    if not run.is_dir():
        raise RunFolderError(
            f"{run} is not a folder (a run folder holds {CONFIG}, {MODEL_JSON}, …)"
        )
    if not (run / CONFIG).is_file():
        leftovers = [e for e in run.iterdir() if not _TEMPORARY.match(e.name)]
        if not leftovers:
            raise RunFolderError(
                f"run folder {run} has no {CONFIG}: it was stopped before its configuration "
                "was written, so nothing was trained; remove it and train again"
            )
        raise RunFolderError(f"{run} is not a contrastkit run folder (no {CONFIG})")
    if for_resume:
        _check_resumable(run)
        return
    spec = read_model_json(run)
    weights = run / WEIGHTS
    if not weights.exists():
        complete = [
            p for _, p in _checkpoints(run) if (p / WEIGHTS).is_file() and (p / STATE).is_file()
        ]
        if not complete:
            raise RunFolderError(f"run folder {run} has no trained weights yet ({WEIGHTS})")
        weights = complete[-1] / WEIGHTS
    read_safetensors_header(weights, "the weights")
    reference = run / REFERENCE
    if need_reference and not reference.exists():
        raise RunFolderError(
            f"run folder {run} has no {REFERENCE} (the training embeddings); "
            "train it again with this version to score inputs"
        )
    if reference.exists():
        _check_reference(reference, int(spec["embedding_dim"]))


def _check_resumable(run: Path) -> None:
    if (run / MODEL_JSON).exists():
        read_model_json(run)
    checkpoints = _checkpoints(run)
    if not checkpoints:
        return
    epoch, newest = checkpoints[-1]
    for name in (WEIGHTS, STATE):
        if not (newest / name).is_file():
            raise RunFolderError(
                f"checkpoint {newest} is incomplete (no {name}); remove that folder to "
                "resume from the checkpoint before it, or from epoch 0"
            )
    read_safetensors_header(newest / WEIGHTS, "the checkpoint weights")
    state = load_state(newest / STATE)
    if state["epoch"] != epoch:
        raise RunFolderError(
            f"checkpoint state {newest / STATE} is of epoch {state['epoch']}, "
            f"but its folder is epoch {epoch}"
        )


# ----------------------------------------------------------------------------- loading


def _first_line(error: BaseException, limit: int = 300) -> str:
    text = str(error).strip().splitlines()
    line = text[0].strip() if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


def load_safetensors(path: str | Path, what: str) -> dict[str, Tensor]:
    """The tensors of a ``.safetensors`` file, on the CPU.

    Args:
        path: the file.
        what: what it is, for the message (``"the weights"``).

    Raises:
        RunFolderError: the file is missing, truncated or not a safetensors file.
    """
    from safetensors.torch import load_file

    file = Path(path)
    read_safetensors_header(file, what)
    try:
        return load_file(str(file))
    except Exception as error:  # safetensors raises its own SafetensorError, OSError, …
        raise RunFolderError(f"cannot load {what} {file}: {_first_line(error)}") from None


def load_state(path: str | Path) -> dict[str, Any]:
    """A checkpoint's ``state.pt`` (optimizer, scheduler, epoch, step, history), checked.

    Loaded with ``torch.load(weights_only=True)`` on the CPU.

    Raises:
        RunFolderError: the file is missing, empty, damaged, not a torch file, or lacks
            one of ``epoch``, ``step`` (integers >= 0), ``history`` (a list),
            ``optimizer`` (a dict) and ``scheduler`` (a dict or ``None``).
    """
    import torch

    file = Path(path)
    if not file.is_file():
        raise RunFolderError(f"checkpoint state {file} does not exist")
    if file.stat().st_size == 0:
        raise RunFolderError(f"checkpoint state {file} is empty")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and torch errors of every kind
        raise RunFolderError(
            f"checkpoint state {file} is damaged or not a torch file ({_first_line(error)})"
        ) from None
    expected = {
        "epoch": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
        "step": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
        "history": (lambda v: isinstance(v, list)),
        "optimizer": (lambda v: isinstance(v, dict)),
        "scheduler": (lambda v: v is None or isinstance(v, dict)),
    }
    if not isinstance(state, dict):
        raise RunFolderError(
            f"checkpoint state {file} holds a value of type {type(state).__name__}, not a dict"
        )
    for key, ok in expected.items():
        if key not in state:
            raise RunFolderError(f"checkpoint state {file} has no '{key}'")
        if not ok(state[key]):
            raise RunFolderError(
                f"checkpoint state {file}: '{key}' has a wrong value ({type(state[key]).__name__})"
            )
    return state


def load_weights_into(model: nn.Module, path: str | Path, what: str = "the weights") -> None:
    """Load a ``.safetensors`` file into ``model``; every tensor must match.

    Raises:
        RunFolderError: the file cannot be loaded (see :func:`load_safetensors`), or its
            tensors do not fit the network built from ``model.json`` (the message lists
            the missing, unexpected and mis-shaped ones).
    """
    file = Path(path)
    tensors = load_safetensors(file, what)
    own = model.state_dict()
    problems = [f"no '{k}'" for k in own if k not in tensors]
    problems += [f"an unexpected '{k}'" for k in tensors if k not in own]
    problems += [
        f"'{k}' of shape {list(tensors[k].shape)} for {list(own[k].shape)}"
        for k in own
        if k in tensors and tuple(tensors[k].shape) != tuple(own[k].shape)
    ]
    if problems:
        shown = ", ".join(problems[:4]) + (
            f", … ({len(problems)} in all)" if len(problems) > 4 else ""
        )
        raise RunFolderError(f"{what} {file} do not fit the network of model.json: {shown}")
    try:
        model.load_state_dict(tensors)
    except RuntimeError as error:  # a dtype that cannot be copied, …
        raise RunFolderError(f"cannot load {what} {file}: {_first_line(error)}") from None


def read_reference(
    run_dir: str | Path, *, embedding_dim: int | None = None
) -> tuple[Tensor, Tensor | None]:
    """The training embeddings of a run (``reference.safetensors``) and their labels.

    The labels are ``None`` for a run trained on pairs. With ``embedding_dim``, the
    embeddings must have that size.

    Raises:
        RunFolderError: the file is missing or damaged, has no 2-D float ``embeddings``,
            or ``labels`` that are not one integer per embedding.
    """
    run = Path(run_dir)
    path = run / REFERENCE
    if not path.is_file():
        raise RunFolderError(
            f"run folder {run} has no {REFERENCE} (the training embeddings); "
            "train it again with this version to score inputs"
        )
    _check_reference(path, embedding_dim)
    tensors = load_safetensors(path, "the reference embeddings")
    return tensors["embeddings"], tensors.get("labels")
