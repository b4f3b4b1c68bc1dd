"""The ``contrastkit`` command.

``contrastkit train`` trains a siamese network and writes a run folder with a report;
``contrastkit evaluate RUN_DIR`` measures a trained run again (on its own test split or
on new data); ``contrastkit embed RUN_DIR INPUT -o OUT.npy`` writes embeddings;
``contrastkit plot-loss`` draws the contrastive loss against the distance.

Bad input ends the command with a one-line ``contrastkit: error: …`` message and exit
status 2 (1 for a failure during training); nothing the user already had is overwritten.
Set ``CONTRASTKIT_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["main"]


class _Failure(Exception):
    """A one-line error for the user."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one ``contrastkit: error:`` line too."""

    def error(self, message: str) -> NoReturn:
        """Print the error in one line and exit with status 2."""
        self.exit(2, f"contrastkit: error: {message} (see: {self.prog} --help)\n")


def _widths(text: str) -> list[int]:
    """``--hidden 512,256`` as a list of widths."""
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 512,256, got {text!r}"
        ) from None


_TRAIN_OPTIONS: tuple[tuple[str, type, str], ...] = (
    (
        "data",
        str,
        "'digits' (bundled, the default), an image folder with one subfolder per "
        "class, a .npz/.csv of features with a label column, or a .csv of pairs left,right,label",
    ),
    ("label_column", str, "the label column of a feature file (default: label)"),
    ("image_size", int, "resize images to this many pixels on a side (default: 32)"),
    ("loss", str, "contrastive (default), triplet, infonce or supcon"),
    ("margin", float, "margin of the contrastive and triplet losses (default: 1.0)"),
    (
        "distance",
        str,
        "euclidean, squared_euclidean, cosine or manhattan (default: euclidean; "
        "cosine for infonce and supcon)",
    ),
    ("temperature", float, "temperature of infonce and supcon (default: 0.1)"),
    ("embedding_dim", int, "embedding size; 2 gives a map drawn directly (default: 32)"),
    ("epochs", int, "epochs (default: 30)"),
    ("batch_size", int, "batch size (default: 128)"),
    ("steps_per_epoch", int, "optimizer steps per epoch (default: 64)"),
    ("lr", float, "peak learning rate of the one-cycle schedule (default: 0.003)"),
    ("weight_decay", float, "AdamW weight decay (default: 0)"),
    ("seed", int, "seed of the split, the draws and the initialisation (default: 0)"),
    ("device", str, "cpu (default), cuda, cuda:N or auto"),
)


def _parser() -> argparse.ArgumentParser:
    from contrastkit import __version__

    parser = _Parser(
        prog="contrastkit",
        description="Train and evaluate siamese networks with contrastive losses.",
    )
    parser.add_argument("--version", action="version", version=f"contrastkit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    train = commands.add_parser(
        "train",
        help="train on the bundled digits or your data and write a run folder with a report",
        description="Train a siamese network and write a run folder: config, checkpoints, "
        "metrics.json, figures and report.html. With no option it trains on scikit-learn's "
        "handwritten digits with the contrastive loss.",
    )
    train.add_argument("--config", metavar="FILE", help="a TOML file of options; flags override it")
    for name, kind, help_text in _TRAIN_OPTIONS:
        flag = "--" + name.replace("_", "-")
        train.add_argument(flag, dest=name, type=kind, default=None, help=help_text)
    train.add_argument(
        "--hidden",
        type=_widths,
        default=None,
        metavar="W1,W2,...",
        help="hidden widths of the MLP (default: 512,256,128), or channels of the ConvNet for "
        "images (default: 32,64)",
    )
    train.add_argument(
        "-o", "--out", metavar="DIR", help="the run folder to create (default: runs/NAME-N)"
    )
    train.add_argument(
        "--resume", metavar="RUN_DIR", help="continue a killed run from its last checkpoint"
    )
    train.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")

    evaluate = commands.add_parser("evaluate", help="measure a trained run again")
    evaluate.add_argument("run_dir", metavar="RUN_DIR")
    evaluate.add_argument(
        "--data", help="labelled data to evaluate on instead of the run's own test split"
    )
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")

    embed = commands.add_parser("embed", help="write the embeddings of new inputs to a .npy file")
    embed.add_argument("run_dir", metavar="RUN_DIR")
    embed.add_argument(
        "input", metavar="INPUT", help="an image, a folder of images or a feature file"
    )
    embed.add_argument("-o", "--output", required=True, metavar="OUT.npy")

    plot = commands.add_parser("plot-loss", help="draw the contrastive loss against the distance")
    plot.add_argument("--margin", type=float, default=1.0)
    plot.add_argument("--caffe-legacy", action="store_true", help="Caffe's max(m − d², 0) form")
    plot.add_argument("-o", "--output", default="contrastive-loss.png", metavar="OUT.png")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    from contrastkit.datasets import DataError
    from contrastkit.experiment import ConfigError

    args = _parser().parse_args(argv)
    handlers = {"train": _train, "evaluate": _evaluate, "embed": _embed, "plot-loss": _plot_loss}
    try:
        return handlers[args.command](args)
    except BrokenPipeError:  # the reader went away (``contrastkit evaluate … | head``)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (_Failure, DataError, ConfigError, FileExistsError, FileNotFoundError) as error:
        if os.environ.get("CONTRASTKIT_DEBUG"):
            raise
        print(f"contrastkit: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FloatingPointError, RuntimeError, OSError) as error:
        if os.environ.get("CONTRASTKIT_DEBUG"):
            raise
        print(f"contrastkit: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("contrastkit: interrupted; continue with --resume RUN_DIR", file=sys.stderr)
        return 130


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


def _config(args: argparse.Namespace) -> Any:
    from contrastkit.experiment import RunConfig, read_config_file

    values: dict[str, Any] = read_config_file(args.config) if args.config else {}
    where = args.config or "options"
    flags = {name: getattr(args, name) for name, _, _ in _TRAIN_OPTIONS}
    flags["hidden"] = args.hidden
    values.update({k: v for k, v in flags.items() if v is not None})
    return RunConfig.from_mapping(values, where=where)


def _free_run_dir(config: Any) -> Path:
    stem = "digits" if config.data == "digits" else Path(config.data).stem or "data"
    base = Path("runs")
    for n in range(1, 10_000):
        candidate = base / f"{stem}-{config.loss}-{n}"
        if not candidate.exists():
            return candidate
    raise _Failure("no free run folder name under runs/; pass --out")


def _train(args: argparse.Namespace) -> int:
    from contrastkit.experiment import RunConfig, read_config_file, train_run
    from contrastkit.training import latest_checkpoint

    log = (lambda *_: None) if args.quiet else (lambda text: print(text, flush=True))
    if args.resume:
        given = [
            f"--{n.replace('_', '-')}" for n, _, _ in _TRAIN_OPTIONS if getattr(args, n) is not None
        ]
        given += ["--config"] if args.config else []
        given += ["--out"] if args.out else []
        if given:
            raise _Failure(f"--resume uses the run's saved config; drop {', '.join(given)}")
        run = Path(args.resume)
        if not (run / "config.toml").is_file():
            raise _Failure(f"{run} is not a contrastkit run folder (no config.toml)")
        config = RunConfig.from_mapping(
            read_config_file(run / "config.toml"), where=str(run / "config.toml")
        )
        resume = True
    else:
        config = _config(args)
        run = Path(args.out) if args.out else _free_run_dir(config)
        if run.exists():
            raise _Failure(f"run folder {run} already exists; choose another --out or --resume it")
        resume = False
    try:
        metrics = train_run(
            config, run, resume=resume, progress=False if args.quiet else None, log=log
        )
    except KeyboardInterrupt:
        if latest_checkpoint(run) is None:
            print("contrastkit: interrupted before the first checkpoint", file=sys.stderr)
        else:
            print(f"contrastkit: interrupted; continue with --resume {run}", file=sys.stderr)
        return 130
    test = metrics["test"]
    shown = ", ".join(
        f"{k} {test[k]:.4f}"
        for k in ("roc_auc", "eer", "accuracy", "precision_at_1", "map_at_r")
        if k in test
    )
    print(f"test: {shown}")
    print(f"took {metrics['seconds']['total']:.1f} s; report: {run / 'report.html'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from contrastkit.datasets import LabelledData, PairData
    from contrastkit.experiment import _split, evaluate_run, load_run, read_data

    config, model = load_run(args.run_dir)
    data = read_data(config)
    _, val, test = _split(config, data)
    if args.data:
        new = read_data(dataclasses.replace(config, data=args.data))
        if isinstance(new, PairData) != isinstance(val, PairData):
            raise _Failure(f"--data {args.data} is not the same kind of data as the run's")
        if isinstance(new, LabelledData) and new.inputs.shape[1:] != val.inputs.shape[1:]:  # type: ignore[union-attr]
            raise _Failure(
                f"--data {args.data} has inputs of shape {tuple(new.inputs.shape[1:])}, "
                f"the run was trained on {tuple(val.inputs.shape[1:])}"  # type: ignore[union-attr]
            )
        test = new
    metrics = evaluate_run(model, config, val, test)
    result = metrics["test"]
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        source = args.data or "the run's test split"
        print(f"evaluated on {source} (threshold chosen on the run's validation split)")
        for key, value in result.items():
            print(f"  {key:<18} {value:.4f}")
    return 0


def _read_inputs(path: Path, config: Any, spec: dict[str, Any]) -> Any:
    from contrastkit.datasets import IMAGE_SUFFIXES, DataError, read_feature_vectors, read_images

    if not path.exists():
        raise DataError(f"input {path} does not exist")
    if spec["kind"] == "images":
        size, channels = int(spec["image_size"]), int(spec["channels"])
        if path.is_dir():
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            )
            if not files:
                raise DataError(f"input folder {path} has no images")
        else:
            files = [path]
        return read_images(files, image_size=size, channels=channels), [str(f) for f in files]
    if path.is_dir():
        raise DataError(f"input {path} is a folder, but the run embeds feature vectors (.npz/.csv)")
    inputs = read_feature_vectors(path, label_column=config.label_column)
    if inputs.shape[1] != int(spec["in_features"]):  # type: ignore[union-attr]
        raise DataError(
            f"input {path} has {inputs.shape[1]} features, the run was trained on "  # type: ignore[union-attr]
            f"{spec['in_features']}"
        )
    return inputs, []


def _embed(args: argparse.Namespace) -> int:
    import numpy as np

    from contrastkit.experiment import load_run
    from contrastkit.training import embed

    output = Path(args.output)
    if output.suffix != ".npy":
        raise _Failure(f"-o {output}: the output must be a .npy file")
    if output.exists():
        raise _Failure(f"{output} already exists; choose another -o")
    if not output.parent.exists():
        raise _Failure(f"folder {output.parent} does not exist")
    config, model = load_run(args.run_dir)
    spec = json.loads((Path(args.run_dir) / "model.json").read_text())
    names_file = output.with_suffix(".txt")
    if spec["kind"] == "images" and names_file.exists():
        raise _Failure(f"{names_file} (the image names of -o {output}) already exists")
    inputs, names = _read_inputs(Path(args.input), config, spec)
    embeddings = embed(model, inputs).numpy()
    with output.open("xb") as handle:
        np.save(handle, embeddings)
    if names:
        with names_file.open("x") as handle:
            handle.write("\n".join(names) + "\n")
    print(f"wrote {embeddings.shape[0]} embeddings of size {embeddings.shape[1]} to {output}")
    return 0


def _plot_loss(args: argparse.Namespace) -> int:
    from contrastkit import plots

    output = Path(args.output)
    if output.exists():
        raise _Failure(f"{output} already exists; choose another -o")
    fig, _ = plots.plot_loss_curve(margin=args.margin, caffe_legacy=args.caffe_legacy)
    plots.save_figure(fig, output)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
