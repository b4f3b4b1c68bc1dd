"""The ``contrastkit`` command.

``contrastkit train`` trains a siamese network or an autoencoder (``--objective``) and
writes a run folder with a report; ``contrastkit evaluate RUN_DIR`` measures a trained
run again (on its own test split or on new data); ``contrastkit embed RUN_DIR INPUT -o
OUT.npy`` writes embeddings; ``contrastkit score RUN_DIR INPUT -o OUT.csv`` writes
anomaly scores; ``contrastkit compare`` runs the comparison of PCA, autoencoders and
siamese networks on the bundled digits; ``contrastkit plot-loss`` draws the contrastive
loss against the distance.

``python -m contrastkit`` is the same command. ``--help`` and ``--version`` answer without
loading torch: this module imports only the standard library and
:mod:`contrastkit.app.config` at the top, and each command imports what it needs.

``contrastkit train --json`` prints the run's metrics (``metrics.json``) on standard
output and nothing else there (progress goes to standard error).
``contrastkit train --resume RUN_DIR`` continues a stopped run; with ``--epochs N``
(more than the run's) it extends a finished or stopped run: the one-cycle schedule is
rebuilt over N epochs and continued from the step reached (see
:mod:`contrastkit.app.run`).

``torchrun --nproc-per-node N -m contrastkit train ...`` trains one model on N processes
(and the same across machines, with torchrun's ``--nnodes`` and rendezvous options):
``--batch-size`` stays the global batch, which the processes share; NCCL on CUDA (each
process on the GPU of its ``LOCAL_RANK``), gloo on the CPU; rank 0 alone writes the run
folder and prints the summary (see :mod:`contrastkit.app.launch`). The other commands
run in one process and refuse to be launched by torchrun.

Bad input (a missing package of the ``app`` extra, a damaged run folder included) ends
the command with a one-line ``contrastkit: error: …`` message and exit status 2, before
anything is written; a failure during training, or a file that cannot be written (a full
disk: the message names the file), exits with status 1. Once a run's folder exists, the
message says how to continue it (``continue with --resume RUN_DIR``). Nothing the user
already had is overwritten. Set ``CONTRASTKIT_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from contrastkit.app.config import (
    ANOMALY_SCORES,
    AUGMENTS,
    DEFAULT_ENCODER,
    DISTANCE_NAMES,
    ENCODERS,
    EXECUTION_OPTIONS,
    IMAGE_LOADINGS,
    LOSSES,
    MODES,
    OBJECTIVES,
    PAIR_SPLITS,
    POOLINGS,
    PRECISIONS,
    PROJECTIONS,
    RECONSTRUCTION_LOSSES,
    SPLIT_BY,
    ConfigError,
)

if TYPE_CHECKING:
    from contrastkit.app.result import Evaluation, Probes

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


def _range(text: str) -> list[float]:
    """``--score-range 0,5`` as ``[low, high]``."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH such as 0,5, got {text!r}")
    return values


def _columns(text: str) -> list[str]:
    """``--exclude-columns id,date`` as a list of column names."""
    names = [v.strip() for v in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated column names such as id,date, got {text!r}"
        )
    return names


_SCORES = ANOMALY_SCORES


def _methods(text: str) -> list[str]:
    """``--method knn,centroid`` as a list of score names."""
    names = [v.strip() for v in text.split(",")]
    unknown = [n for n in names if n not in _SCORES]
    if unknown or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"expected distinct names of {', '.join(_SCORES)}, comma-separated, got {text!r}"
        )
    return names


def _choices(names: Sequence[str]) -> str:
    """The metavar that lists an option's choices: ``{a,b,c}``."""
    return "{" + ",".join(names) + "}"


# name, type, help, metavar (None: the flag's name in capitals). Choices are listed in
# the metavar and checked by RunConfig, which gives the same message for a config file.
_TRAIN_OPTIONS: tuple[tuple[str, Callable[[str], Any], str, str | None], ...] = (
    (
        "data",
        str,
        "'digits' (bundled, the default), an image folder with one subfolder per "
        "class, a .npz/.csv of features with a label column, a .csv of pairs left,right,label, "
        "a text table (.csv, .tsv, .jsonl), or 'lee' (the Lee corpus of an installed gensim, "
        "or lee:FOLDER: background sentences to train on, 1,225 rated document pairs to test)",
        "DATA",
    ),
    (
        "test_data",
        str,
        "text data: a table of the kind of --data to test on (text benchmarks ship their "
        "own test split); the rows a test split of --data would hold then train "
        "(default: a test split of --data)",
        "FILE",
    ),
    (
        "text_model",
        str,
        "text data: a pretrained model folder (a Hugging Face encoder with its tokenizer; "
        "nothing downloads) to fine-tune (default: an encoder trained from nothing on the "
        "training texts)",
        "DIR",
    ),
    (
        "pooling",
        str,
        "text data: how token states become one embedding (default: the model folder's, else mean)",
        _choices(POOLINGS),
    ),
    (
        "max_length",
        int,
        "text data: tokens kept per text (default: 128 from nothing, else the model "
        "folder's, at most 256)",
        "N",
    ),
    (
        "vocab_size",
        int,
        "text, from nothing: the most words in the vocabulary, the most frequent of the "
        "training texts; any other word is one [UNK] token (default: 8000)",
        "N",
    ),
    (
        "text_width",
        int,
        "text, from nothing: the width of the BERT, which is the embedding size (default: 128)",
        "W",
    ),
    (
        "text_layers",
        int,
        "text, from nothing: transformer layers, 0 for a mean of word embeddings (default: 2)",
        "N",
    ),
    ("text_heads", int, "text, from nothing: attention heads (default: 2)", "N"),
    (
        "score_range",
        _range,
        "scored text pairs: the range of the gold scores, mapped linearly onto [-1, 1] for "
        "the cosine-similarity loss (default: [0, 1] when every score lies there, else "
        "[0, 5], the STS range)",
        "LOW,HIGH",
    ),
    ("label_column", str, "the label column of a feature file (default: label)", "NAME"),
    (
        "exclude_columns",
        _columns,
        "columns of a .csv feature file that are not features (an identifier, a date), left "
        "out of training and wherever the run reads feature files later (evaluate --data, "
        "embed, score) (default: none)",
        "NAME1,NAME2,...",
    ),
    ("image_size", int, "resize images to this many pixels on a side (default: 32)", "PIXELS"),
    (
        "encoder",
        str,
        "the network of image data: conv (a small ConvNet) or resnet (a small residual "
        "network: widths 32,64,128 by --hidden, 2 blocks per stage by --resnet-blocks; with "
        "--no-batch-norm GroupNorm, for --micro-batch) (default: "
        f"{DEFAULT_ENCODER})",
        _choices(ENCODERS),
    ),
    (
        "resnet_blocks",
        _widths,
        "with --encoder resnet: residual blocks per stage, one per width of --hidden "
        "(default: 2 per stage)",
        "N1,N2,...",
    ),
    (
        "init_weights",
        str,
        "start the encoder from the weights of FILE (.safetensors, or a .pt/.pth state dict: "
        "the encoder's keys, or a run's model.safetensors) instead of a random "
        "initialisation; the keys and shapes must match (default: none)",
        "FILE",
    ),
    (
        "image_loading",
        str,
        "how an image folder is read: eager (every image decoded into memory at start), "
        "lazy (each batch decoded from the files when needed: memory does not grow with "
        "the folder) or auto (default: lazy when the decoded images would take more than "
        "1 GiB); both give the same run",
        _choices(IMAGE_LOADINGS),
    ),
    (
        "workers",
        int,
        "DataLoader worker processes that decode the batches of an image folder read "
        "lazily (default: 0, the training process decodes them); may change on --resume",
        "N",
    ),
    (
        "loss",
        str,
        "the contrastive loss (default: contrastive; for text data, cosine for scored pairs, "
        "contrastive for labelled pairs, infonce for anchor-positive rows, supcon for "
        "labelled texts)",
        _choices([*LOSSES, "cosine"]),
    ),
    (
        "augment",
        str,
        "augment the training batches of image data on the fly: none, crop (crops of 80%% "
        "or more, no flips), light (crops of half or more, and flips: for photos), strong "
        "(crops of 20%% or more, colour jitter, grayscale; no flips) or simclr (crops, "
        "flips, colour jitter, grayscale, blur: for photos); never validation or evaluation "
        "(default: crop for image data, strong with --loss ntxent; feature "
        "vectors with --loss ntxent get noise: Gaussian noise and dropped features)",
        _choices(AUGMENTS),
    ),
    (
        "projection",
        str,
        "mlp: train through a projection head (SimCLR's two-layer MLP) and keep the "
        "embedding before it; none: the loss compares the embeddings themselves (default: "
        "mlp with --loss ntxent on images, else none)",
        _choices(PROJECTIONS),
    ),
    (
        "objective",
        str,
        "contrastive (default: a siamese network trained with --loss), reconstruction (an "
        "autoencoder whose encoder is that network's) or combined (the autoencoder trained on "
        "reconstruction + λ·loss on its code)",
        _choices(OBJECTIVES),
    ),
    (
        "reconstruction_loss",
        str,
        "mse (default) or bce (binary cross-entropy on logits) for the autoencoder, on inputs "
        "scaled to [0, 1]",
        _choices(list(RECONSTRUCTION_LOSSES)),
    ),
    ("noise_std", float, "Gaussian input noise of a denoising autoencoder (default: 0)", "STD"),
    (
        "reconstruction_weight",
        float,
        "weight of the reconstruction term of combined (default: 1)",
        "WEIGHT",
    ),
    (
        "contrastive_weight",
        float,
        "λ, the weight of the --loss term of combined (default: 1)",
        "WEIGHT",
    ),
    (
        "anomaly_class",
        str,
        "a class to hold out of training and score as the anomaly afterwards (default: none)",
        "CLASS",
    ),
    ("margin", float, "margin of the contrastive and triplet losses (default: 1.0)", None),
    (
        "distance",
        str,
        "the distance of the contrastive and triplet losses and of evaluation (default: "
        "euclidean; cosine for infonce and supcon, which always compare by cosine similarity)",
        _choices(DISTANCE_NAMES),
    ),
    (
        "temperature",
        float,
        "temperature of infonce, supcon and ntxent (default: 0.1; 0.5 for ntxent; 0.05 for text, "
        "sentence-transformers' scale 20)",
        None,
    ),
    (
        "embedding_dim",
        int,
        "embedding size; 2 gives a map drawn directly (default: 32)",
        "DIM",
    ),
    (
        "epochs",
        int,
        "epochs (default: 30); with --resume, more than the run's extends it",
        "N",
    ),
    (
        "batch_size",
        int,
        "the global batch size: under torchrun the processes share each batch, each "
        "taking its part (default: 128)",
        "N",
    ),
    (
        "steps_per_epoch",
        int,
        "batches per epoch (default: 64); for a pair file they are drawn from its training "
        "pairs in random order, each pair about equally often",
        "N",
    ),
    (
        "accumulate",
        int,
        "gradient accumulation: sum the gradients of K batches per optimizer step, so an "
        "epoch makes ceil(steps-per-epoch / K) steps and the one-cycle schedule spans "
        "epochs × that (default: 1)",
        "K",
    ),
    (
        "micro_batch",
        int,
        "gradient caching: embed (and, for objective combined, reconstruct) K rows at a "
        "time while the loss sees the whole batch (objective contrastive or combined; "
        "needs --no-batch-norm; default: 0, the batch at once)",
        "K",
    ),
    (
        "memory_size",
        int,
        "a memory of the last M training embeddings, compared with every anchor besides "
        "its batch: more negatives without a bigger batch (supcon, triplet, infonce; "
        "saved in checkpoints; default: 0, none)",
        "M",
    ),
    ("lr", float, "peak learning rate of the one-cycle schedule (default: 0.003)", None),
    ("weight_decay", float, "AdamW weight decay (default: 0)", None),
    (
        "val_fraction",
        float,
        "the share of each class held out for validation (default: 0.15)",
        "FRACTION",
    ),
    (
        "test_fraction",
        float,
        "the share of each class held out for the test (default: 0.15)",
        "FRACTION",
    ),
    (
        "split_by",
        str,
        "samples (default: each class's samples spread over training, validation and test) "
        "or classes (whole classes held out: validation and test identities are never "
        "trained on, an open set; the fractions then count classes)",
        _choices(SPLIT_BY),
    ),
    (
        "pair_split",
        str,
        "how a pair file (left,right,label) is split: images (default: its images are split, "
        "a pair kept where both fall in one split, so no validation or test image is in a "
        "training pair; pairs across splits are dropped) or pairs (the pairs split at "
        "random, as runs made before the option)",
        _choices(PAIR_SPLITS),
    ),
    ("seed", int, "seed of the split, the draws and the initialisation (default: 0)", None),
    (
        "device",
        str,
        "the device to train on (default: cpu); auto is cuda when there is one, and the "
        "run records the device it used",
        "{cpu,cuda,cuda:N,auto}",
    ),
    (
        "precision",
        str,
        "the forward passes of training and validation in float32 (32, the default), "
        "bfloat16 autocast (bf16; CPU or CUDA) or float16 autocast with loss scaling (fp16; "
        "CUDA only); the weights stay float32",
        _choices(PRECISIONS),
    ),
    (
        "monitor",
        str,
        "a value of the per-epoch history that picks the best epoch: val_loss, val_roc_auc, "
        "val_precision_at_1, train_loss, or a loss term such as val_reconstruction; the best "
        "epoch's weights are kept (checkpoints/best) and are the ones evaluated on the test "
        "split (default: none, the last epoch's)",
        "METRIC",
    ),
    (
        "mode",
        str,
        "whether the best --monitor value is the lowest or the highest (default: max for "
        "val_roc_auc and val_precision_at_1, min for losses)",
        _choices(MODES),
    ),
    (
        "patience",
        int,
        "early stopping: stop after N epochs in a row without a better --monitor value "
        "(default: 0, never)",
        "N",
    ),
)


_INPUT_LABEL_HELP = (
    "a column of a feature file INPUT to leave out, such as its labels (default: the run's "
    "label column); a file without it is read whole, and the run's --exclude-columns are "
    "left out too"
)
_INPUT_EXCLUDE_HELP = (
    "more columns of a feature file INPUT that are not features, left out besides the run's "
    "--exclude-columns (default: none)"
)


def _text_model_options(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument(
        "--text-model",
        metavar="DIR",
        help=f"a pretrained text model folder (a Hugging Face encoder and its tokenizer) to "
        f"{what}; instead of RUN_DIR",
    )
    command.add_argument(
        "--pooling",
        choices=POOLINGS,
        default=None,
        help="with --text-model: the pooling (default: the folder's, else mean)",
    )
    command.add_argument(
        "--max-length",
        type=int,
        default=None,
        metavar="N",
        help="with --text-model: tokens kept per text (default: the folder's, else at most 256)",
    )


def _parser() -> argparse.ArgumentParser:
    from contrastkit import __version__

    parser = _Parser(
        prog="contrastkit",
        description="Train and evaluate siamese networks with contrastive losses, autoencoders, "
        "or both; score anomalies.",
    )
    parser.add_argument("--version", action="version", version=f"contrastkit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    train = commands.add_parser(
        "train",
        help="train on the bundled digits or your data and write a run folder with a report",
        description="Train a siamese network or an autoencoder (--objective) and write a run "
        "folder: config, checkpoints, metrics.json, metrics.jsonl (one line per epoch), figures "
        "and report.html. With no option it "
        "trains a siamese network on scikit-learn's handwritten digits with the contrastive "
        "loss. On several processes: torchrun --nproc-per-node N -m contrastkit train ...",
    )
    train.add_argument("--config", metavar="FILE", help="a TOML file of options; flags override it")
    for name, kind, help_text, metavar in _TRAIN_OPTIONS:
        flag = "--" + name.replace("_", "-")
        train.add_argument(
            flag, dest=name, type=kind, default=None, help=help_text, metavar=metavar
        )
    train.add_argument(
        "--hidden",
        type=_widths,
        default=None,
        metavar="W1,W2,...",
        help="hidden widths of the MLP (default: 512,256,128), or channels of the ConvNet for "
        "images (default: 32,64,128), or stage widths of the ResNet (default: 32,64,128)",
    )
    train.add_argument(
        "--no-batch-norm",
        dest="batch_norm",
        action="store_false",
        default=None,
        help="no batch normalization in the MLP of feature vectors, GroupNorm instead in the "
        "ResNet of --encoder resnet (a batch-coupled layer: without it, N CPU processes under "
        "torchrun train the model one process would, and --micro-batch can cache gradients)",
    )
    train.add_argument(
        "--symmetric",
        action="store_true",
        default=None,
        help="text, loss infonce: also each positive picks its anchor among the batch's "
        "anchors (the mean of both directions)",
    )
    train.add_argument(
        "--tensorboard",
        action="store_true",
        default=None,
        help="also log the history to RUN_DIR/tensorboard (needs: pip install tensorboard)",
    )
    train.add_argument(
        "-o",
        "--out",
        metavar="DIR",
        help="the run folder to create (default: runs/DATA-LOSS-N, or runs/DATA-OBJECTIVE-N)",
    )
    train.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a stopped run from its last checkpoint, with its saved config; with "
        "--epochs N, extend it to N epochs (the one-cycle schedule is rebuilt over N epochs, "
        "so the weights differ from those of an N-epoch run from the start)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    train.add_argument(
        "--json",
        action="store_true",
        help="print the run's metrics (metrics.json) as JSON on standard output, and nothing "
        "else there (progress lines go to standard error)",
    )

    evaluate = commands.add_parser(
        "evaluate",
        help="measure a trained run again, or a pretrained text model (--text-model)",
    )
    evaluate.add_argument("run_dir", metavar="RUN_DIR", nargs="?")
    evaluate.add_argument(
        "--data",
        help="labelled data to evaluate on instead of the run's own test split, of the run's "
        "kind (feature vectors, images: read with the run's size and channels, pairs, or a "
        "text table, or lee: the Lee corpus's rated document pairs)",
    )
    evaluate.add_argument(
        "--pairs-list",
        metavar="PAIRS.csv",
        help="verification by LFW's protocol on the pairs of a standard pairs list (a CSV of "
        "left,right,label[,fold], paths relative to it) instead of the test split: mean "
        "accuracy ± std over 10 folds, ROC-AUC, EER (image runs)",
    )
    _text_model_options(evaluate, "evaluate, on --data, with no run")
    evaluate.add_argument(
        "--label-column",
        metavar="NAME",
        help="the label column of a --data feature file (default: the run's)",
    )
    evaluate.add_argument(
        "--json",
        action="store_true",
        help='print the metrics as JSON: the test metrics (as metrics.json\'s "test", with '
        'knn_accuracy and linear_probe_accuracy where measurable) and "raw_inputs": the same '
        'metrics and accuracies on the raw inputs (the baseline), or {"skipped": why}',
    )

    embed = commands.add_parser("embed", help="write the embeddings of new inputs to a .npy file")
    embed.add_argument("run_dir", metavar="RUN_DIR", nargs="?")
    embed.add_argument(
        "input",
        metavar="INPUT",
        help="an image, a folder of images or a feature file; for a text run or "
        "--text-model, a text file of one text per line",
    )
    _text_model_options(embed, "embed with, with no run")
    embed.add_argument("-o", "--output", required=True, metavar="OUT.npy")
    embed.add_argument("--label-column", metavar="NAME", help=_INPUT_LABEL_HELP)
    embed.add_argument(
        "--exclude-columns", type=_columns, metavar="NAME1,NAME2,...", help=_INPUT_EXCLUDE_HELP
    )

    score = commands.add_parser(
        "score",
        help="write the anomaly scores of new inputs to a .csv file",
        description="Score new inputs with a trained run: the reconstruction error (autoencoder "
        "runs), the mean distance to the 5 nearest training embeddings (knn) and the distance to "
        "the nearest class centroid of the training embeddings (centroid). Higher = more "
        "anomalous. One row per input.",
    )
    score.add_argument("run_dir", metavar="RUN_DIR")
    score.add_argument(
        "input", metavar="INPUT", help="an image, a folder of images or a feature file"
    )
    score.add_argument("-o", "--output", required=True, metavar="OUT.csv")
    score.add_argument("--label-column", metavar="NAME", help=_INPUT_LABEL_HELP)
    score.add_argument(
        "--exclude-columns", type=_columns, metavar="NAME1,NAME2,...", help=_INPUT_EXCLUDE_HELP
    )
    score.add_argument(
        "--method",
        type=_methods,
        default=None,
        metavar="M1,M2,...",
        help="scores to compute, of reconstruction, knn, centroid (default: every one the run has)",
    )

    compare = commands.add_parser(
        "compare",
        help="compare PCA, an autoencoder and a siamese network on the bundled digits",
        description="On the bundled digits: 2-D maps from PCA, an autoencoder's code and a "
        "siamese network (DrLIM), with their retrieval and verification metrics; then anomaly "
        "detection with one digit held out, for reconstruction-only, contrastive-only and "
        "combined objectives. Writes a folder with report.html, comparison.json, the figures "
        "and every run.",
    )
    compare.add_argument(
        "-o", "--out", metavar="DIR", help="the folder to create (default: runs/compare-N)"
    )
    compare.add_argument(
        "--epochs", type=int, default=None, help="epochs of each run (default: 30)"
    )
    compare.add_argument("--seed", type=int, default=0, help="seed of every run (default: 0)")
    compare.add_argument(
        "--anomaly-class",
        default="8",
        metavar="DIGIT",
        help="the digit held out as the anomaly (default: 8)",
    )
    compare.add_argument("--quiet", action="store_true", help="no progress lines")
    # for quick checks (the tests): smaller runs than the measured comparison
    compare.add_argument("--steps-per-epoch", type=int, default=None, help=argparse.SUPPRESS)
    compare.add_argument("--batch-size", type=int, default=None, help=argparse.SUPPRESS)
    compare.add_argument("--hidden", type=_widths, default=None, help=argparse.SUPPRESS)

    plot = commands.add_parser("plot-loss", help="draw the contrastive loss against the distance")
    plot.add_argument("--margin", type=float, default=1.0, help="a positive margin (default: 1.0)")
    plot.add_argument("--caffe-legacy", action="store_true", help="Caffe's max(m − d², 0) form")
    plot.add_argument("-o", "--output", default="contrastive-loss.png", metavar="OUT.png")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)  # --help, --version and usage errors end here
    from contrastkit.app.extras import MissingExtraError, check_app_extra

    try:  # before anything imports one of them
        check_app_extra()
    except MissingExtraError as error:
        print(f"contrastkit: error: {error}", file=sys.stderr)
        return 2
    from contrastkit.app.launch import launched_processes

    if args.command != "train" and launched_processes() > 1:
        print(
            f"contrastkit: error: {args.command} runs in one process; only train runs under "
            "torchrun (launch it without torchrun)",
            file=sys.stderr,
        )
        return 2
    from contrastkit.app.rundir import RunFolderError
    from contrastkit.data.readers import DataError  # imports torch

    handlers = {
        "train": _train,
        "evaluate": _evaluate,
        "embed": _embed,
        "score": _score,
        "compare": _compare,
        "plot-loss": _plot_loss,
    }
    try:
        return handlers[args.command](args)
    except BrokenPipeError:  # the reader went away (``contrastkit evaluate … | head``)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (
        _Failure,
        DataError,
        ConfigError,
        RunFolderError,
        FileExistsError,
        FileNotFoundError,
    ) as error:
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
    # a note of train_run: how to continue the run that failed
    text = "; ".join([text, *getattr(error, "__notes__", [])])
    return " ".join(text.split())


def _config(args: argparse.Namespace) -> Any:
    from contrastkit.app.config import RunConfig, read_config_file

    values: dict[str, Any] = read_config_file(args.config) if args.config else {}
    where = args.config or "options"
    flags = {name: getattr(args, name) for name, *_ in _TRAIN_OPTIONS}
    flags["hidden"] = args.hidden
    flags["batch_norm"] = args.batch_norm
    flags["tensorboard"] = args.tensorboard
    flags["symmetric"] = args.symmetric
    values.update({k: v for k, v in flags.items() if v is not None})
    try:
        return RunConfig.from_mapping(values, where=where)
    except ConfigError as error:
        given = [name for name, value in flags.items() if value is not None]
        raise ConfigError(_named_as_given(str(error), where, given, args.config)) from None


def _named_as_given(message: str, where: str, given: list[str], config_file: str | None) -> str:
    """A config error named by the flag its option was given with, else by the config file."""
    text = message.removeprefix(f"{where}: ")
    about = re.match(r"[a-z_]+", text)  # RunConfig's messages start with the option's name
    if about is not None and about[0] in given:
        return f"--{about[0].replace('_', '-')}: {text}"
    return message if config_file else text


def _run_stem(config: Any) -> str:
    """The name of a run's default folder, ``runs/STEM-N``: its data, then its loss."""
    if config.data in ("digits", "lee") or config.data.startswith("lee:"):
        stem = config.data.split(":")[0]
    else:
        stem = Path(config.data).stem or "data"
    what = config.loss if config.objective == "contrastive" else config.objective
    return f"{stem}-{what}"


def _train(args: argparse.Namespace) -> int:
    from contrastkit.app.config import RunConfig, read_config_file
    from contrastkit.app.launch import process_group
    from contrastkit.app.run import train_run

    # with --json, standard output holds the JSON only: progress lines go to stderr
    stream = sys.stderr if args.json else sys.stdout
    log = (lambda *_: None) if args.quiet else (lambda text: print(text, file=stream, flush=True))
    run: Path | None  # None: train_run takes the first free runs/STEM-N
    if args.resume:
        given = [
            f"--{n.replace('_', '-')}"
            for n, *_ in _TRAIN_OPTIONS
            if n not in ("epochs", *EXECUTION_OPTIONS) and getattr(args, n) is not None
        ]
        given += ["--hidden"] if args.hidden is not None else []
        given += ["--tensorboard"] if args.tensorboard else []
        given += ["--symmetric"] if args.symmetric else []
        given += ["--no-batch-norm"] if args.batch_norm is not None else []
        given += ["--config"] if args.config else []
        given += ["--out"] if args.out else []
        if given:
            raise _Failure(
                f"--resume uses the run's saved config (only --epochs may extend it); "
                f"drop {', '.join(given)}"
            )
        run = Path(args.resume)
        if not (run / "config.toml").is_file():
            raise _Failure(f"{run} is not a contrastkit run folder (no config.toml)")
        config = RunConfig.from_mapping(
            read_config_file(run / "config.toml"), where=str(run / "config.toml")
        )
        if args.epochs is not None:
            if args.epochs < config.epochs:
                raise _Failure(
                    f"--epochs {args.epochs} is fewer than the {config.epochs} epochs of {run}; "
                    "--resume can extend a run, not shorten it"
                )
            config.epochs = args.epochs
        for name in EXECUTION_OPTIONS:  # how the run is computed, never what it computes
            if getattr(args, name) is not None:
                setattr(config, name, getattr(args, name))
        resume = True
    else:
        config = _config(args)
        run = Path(args.out) if args.out else None
        if run is not None and run.exists():
            raise _Failure(f"run folder {run} already exists; choose another --out or --resume it")
        resume = False
    try:
        # under torchrun: join the process group (NCCL or gloo, from the device) and
        # leave it at the end; a single process joins nothing
        with process_group(config.device):
            result = train_run(
                config,
                run,
                resume=resume,
                stem=_run_stem(config),
                progress=False if args.quiet else None,
                log=log,
            )
    except KeyboardInterrupt as stop:
        # train_run's note says how to continue, once the run folder exists
        notes = getattr(stop, "__notes__", [])
        how = "; " + "; ".join(notes) if notes else " before anything was written"
        print(f"contrastkit: interrupted{how}", file=sys.stderr)
        return 130
    if result is None:  # a process other than rank 0, which printed and wrote it all
        return 0
    run = result.run_dir
    if args.json:
        sys.stdout.write(result.to_json())
        return 0
    shown = _metric_line(result.summary())
    if shown:  # a flat folder has no test metric: the lines below say why
        print(f"test: {shown}")
    raw = result.raw_summary()
    if raw:
        shown = _metric_line(raw)
        print(f"raw inputs (baseline, no training): {shown}")
    elif result.raw_skipped:
        print(f"raw inputs (baseline): not measured: {result.raw_skipped}")
    for what, why in (
        ("verification", result.evaluation.verification_skipped),
        ("retrieval", result.evaluation.retrieval_skipped),
    ):
        if why:
            print(f"{what}: not measurable: {why}")
    probes = result.probes  # the k-NN and linear-probe accuracies' baseline, or why not
    if probes is not None and probes.skipped is None:
        probed = _metric_line(probes.raw_inputs.items())
        print(f"raw inputs (baseline, k = {probes.k}): {probed}")
    elif probes is not None and probes.skipped is not None:
        print(f"k-NN and linear-probe accuracy: not measurable: {probes.skipped}")
    if result.best is not None and result.best.epoch is not None:
        print(f"test metrics of epoch {result.best.epoch}, the best by {result.best.monitor}")
    if result.anomaly is not None:
        from contrastkit.app.run import SCORE_NAMES

        shown = "; ".join(
            f"{SCORE_NAMES[name]}: ROC-AUC {m['roc_auc']:.4f}, "
            f"average precision {m['average_precision']:.4f}"
            for name, m in result.anomaly.scores.items()
        )
        print(f"anomaly (class {result.anomaly.class_name}): {shown}")
        if result.anomaly.baseline:
            from contrastkit.app.evaluate import BASELINE_NAMES

            baseline = "; ".join(
                f"{BASELINE_NAMES[name]}: ROC-AUC {m['roc_auc']:.4f}, "
                f"average precision {m['average_precision']:.4f}"
                for name, m in result.anomaly.baseline.items()
            )
            print(f"anomaly baseline, no training: {baseline}")
    print(f"took {result.seconds['total']:.1f} s; report: {run / 'report.html'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from contrastkit.app.evaluate import in_classes_of
    from contrastkit.app.run import (
        load_run,
        load_spec,
        read_data,
        run_splits,
        scale_split,
    )
    from contrastkit.data.readers import LabelledData

    if args.pairs_list:
        return _evaluate_pairs_list(args)
    if args.text_model or _is_text_run(args.run_dir):
        return _evaluate_text(args)
    _no_text_model_options(args)
    if args.label_column and not args.data:
        raise _Failure("--label-column names the label column of --data; give --data too")
    config, model = load_run(args.run_dir)
    spec = load_spec(args.run_dir)
    channels = int(spec["channels"]) if spec["kind"] == "images" else None
    data = read_data(config, channels=channels)
    train, val, test, _ = run_splits(config, data)
    train, val, test = (scale_split(spec, part) for part in (train, val, test))
    classes_skipped = None  # why --data cannot be classified into the training classes
    probe_test = test
    if args.data:
        other = dataclasses.replace(
            config, data=args.data, label_column=args.label_column or config.label_column
        )
        new = scale_split(spec, read_data(other, channels=channels))
        if _kind_of(new) != _kind_of(val):
            raise _Failure(
                f"--data {args.data} holds {_kind_of(new)}, but the run was trained on "
                f"{_kind_of(val)}; evaluate it on data of that kind"
            )
        if (
            isinstance(new, LabelledData)
            and isinstance(val, LabelledData)
            and new.inputs.shape[1:] != val.inputs.shape[1:]
        ):
            raise _Failure(
                f"--data {args.data} has inputs of shape {tuple(new.inputs.shape[1:])}, "
                f"the run was trained on {tuple(val.inputs.shape[1:])}"
            )
        test = new
        probe_test, classes_skipped = in_classes_of(train, test)
    found = _measure(model, config, (train, val, test), probe_test, classes_skipped)
    if args.json:
        print(json.dumps(found.as_json(), indent=2))
    else:
        found.show(args.data or "the run's test split")
    return 0


@dataclasses.dataclass(frozen=True)
class _Measured:
    """What ``evaluate`` measured: the embedding's metrics, the probes, the raw baseline."""

    evaluation: Evaluation  # the probe accuracies joined to its test metrics
    probes: Probes | None  # None when not measurable (probes_skipped says why)
    probes_skipped: str | None
    raw: Evaluation | None  # of the raw inputs; None: raw_skipped says why
    raw_skipped: str | None

    def raw_inputs(self) -> dict[str, Any]:
        """The JSON's ``"raw_inputs"``: the raw test metrics and probe accuracies, or why not."""
        if self.raw is None:
            return {"skipped": self.raw_skipped}
        probed = self.probes.raw_inputs if self.probes is not None else {}
        return {**self.raw.test, **probed}

    def as_json(self) -> dict[str, Any]:
        """The JSON of ``evaluate --json``: the test metrics, plus ``"raw_inputs"``."""
        return {**self.evaluation.test, "raw_inputs": self.raw_inputs()}

    def show(self, source: str) -> None:
        """The text of ``evaluate``: a table of the embedding's metrics, then the baseline."""
        from contrastkit.app.report import metric_name, metric_text
        from contrastkit.app.result import HEADLINE_METRICS, far_of

        evaluation = self.evaluation
        print(f"evaluated on {source} (threshold chosen on the run's validation split)")
        negatives = evaluation.pairs["test_negative"]
        names = {key: metric_name(key) for key in evaluation.test}
        width = max([18, *(len(name) for name in names.values())])  # none: a flat folder
        for key, value in evaluation.test.items():
            shown = metric_text(
                value, negative_pairs=negatives if far_of(key) is not None else None
            )
            print(f"  {names[key]:<{width}} {shown}")
        for what, why in (
            ("verification", evaluation.verification_skipped),
            ("retrieval", evaluation.retrieval_skipped),
            ("k-NN and linear-probe accuracy", self.probes_skipped),
        ):
            if why:
                print(f"  {what}: not measurable: {why}")
        for note in self.probes.notes if self.probes is not None else []:
            print(f"  note: {note}")
        # the baseline, as ``train`` ends: the same headline metrics on the raw inputs
        if self.raw is not None:
            raw = [(k, self.raw.test[k]) for k in HEADLINE_METRICS if k in self.raw.test]
            if raw:
                shown = _metric_line(raw)
                print(f"raw inputs (baseline, no training): {shown}")
            for what, why in (
                ("verification", self.raw.verification_skipped),
                ("retrieval", self.raw.retrieval_skipped),
            ):
                if why:
                    print(f"raw inputs (baseline): {what}: not measurable: {why}")
        else:
            print(f"raw inputs (baseline): not measured: {self.raw_skipped}")
        if self.probes is not None:
            values = self.probes.raw_inputs
            if any(v is not None for v in values.values()):
                probed = _metric_line(values.items())
                print(f"raw inputs (baseline, k = {self.probes.k}): {probed}")
            if self.probes.raw_skipped:
                print(f"raw inputs (baseline): {self.probes.raw_skipped}")


def _metric_line(metrics: Any) -> str:
    """``name value, name value, …`` of ``(key, value)`` pairs, as the command prints them."""
    from contrastkit.app.report import metric_name, metric_text

    return ", ".join(f"{metric_name(k)} {metric_text(v)}" for k, v in metrics)


def _measure(
    model: Any,
    config: Any,
    splits: tuple[Any, Any, Any],
    probe_test: Any,
    classes_skipped: str | None,
) -> _Measured:
    """The test metrics, k-NN and linear-probe accuracies and raw baseline, as ``train``'s.

    ``splits`` are the run's training and validation splits and the test data (the run's
    test split or ``--data``); ``probe_test`` is the test data labelled as the training
    classes (:func:`~contrastkit.app.evaluate.in_classes_of`), or ``classes_skipped``
    says why they cannot be. The training split is embedded only when the probes can be
    measured on it.
    """
    from contrastkit.app.evaluate import (
        embed_split,
        evaluate_probes,
        evaluate_raw,
        evaluate_run,
        probes_skipped,
    )

    train, val, test = splits
    evaluation = evaluate_run(model, config, val, test)
    raw, raw_skipped = evaluate_raw(config, train, val, test)  # the baseline: no training
    why = classes_skipped or probes_skipped(train, probe_test, config.split_by)
    probes = None
    if why is None:
        probes = evaluate_probes(
            config, train, probe_test, embed_split(model, train), evaluation.test_embeddings
        )
        if probes.skipped is not None:  # not expected: probes_skipped said it could be
            why, probes = probes.skipped, None
        elif probes.embedding:  # joined as metrics.json's test metrics join them
            evaluation = dataclasses.replace(
                evaluation, test={**evaluation.test, **probes.embedding}
            )
    return _Measured(evaluation, probes, why, raw, raw_skipped)


def _evaluate_pairs_list(args: argparse.Namespace) -> int:
    """``evaluate RUN --pairs-list PAIRS.csv``: LFW's protocol on the images it names."""
    from contrastkit.app.report import metric_name, metric_text
    from contrastkit.app.run import load_run, scale_inputs
    from contrastkit.app.rundir import read_model_json
    from contrastkit.data.readers import read_images, read_pairs_list
    from contrastkit.evaluation.pairs_list import pairs_list_verification
    from contrastkit.training import embed

    given = [f for f, v in (("--data", args.data), ("--text-model", args.text_model)) if v]
    if given:
        raise _Failure(f"--pairs-list is evaluated on its own pairs; drop {', '.join(given)}")
    if args.run_dir is None:
        raise _Failure("--pairs-list needs RUN_DIR, a trained image run")
    spec = read_model_json(args.run_dir)
    if spec["kind"] != "images":
        raise _Failure(
            f"--pairs-list names images, and {args.run_dir} was trained on "
            f"{'texts' if spec['kind'] == 'text' else 'feature vectors'}; give an image run"
        )
    pairs = read_pairs_list(args.pairs_list)  # a missing file: one DataError line
    config, model = load_run(args.run_dir)
    size, channels = int(spec["image_size"]), int(spec["channels"])

    def embed_paths(paths: list[str]) -> Any:
        images = read_images([Path(p) for p in paths], image_size=size, channels=channels)
        return embed(model, scale_inputs(spec, images))

    metrics = pairs_list_verification(
        pairs.left,
        pairs.right,
        pairs.same,
        embed_paths,
        folds=pairs.folds,
        distance=config.distance_name,
    )
    if args.json:
        print(json.dumps({"pairs_list": pairs.source, "pairs": len(pairs), **metrics}, indent=2))
        return 0
    folds = int(metrics["folds"])
    print(
        f"evaluated on {pairs.source} by LFW's protocol "
        f"({folds} folds, the threshold of each chosen on the other {folds - 1})"
    )
    print(
        f"  {'accuracy':<18} {metrics['accuracy']:.4f} ± {metrics['accuracy_std']:.4f} "
        f"(std over folds; standard error {metrics['accuracy_sem']:.4f})"
    )
    for key in ("roc_auc", "eer"):
        print(f"  {metric_name(key):<18} {metric_text(metrics[key])}")
    return 0


def _is_text_run(run_dir: str | None) -> bool:
    """Whether ``run_dir`` is a text run, as its ``model.json`` says.

    A damaged or missing one is for the command's own checks to name.
    """
    from contrastkit.app.rundir import RunFolderError, read_model_json

    if run_dir is None:
        raise _Failure("give RUN_DIR (a run folder), or --text-model DIR (a text model)")
    try:
        return read_model_json(run_dir)["kind"] == "text"
    except RunFolderError:
        return False


def _no_text_model_options(args: argparse.Namespace) -> None:
    given = [f for f, v in (("--pooling", args.pooling), ("--max-length", args.max_length)) if v]
    if given:
        raise _Failure(
            f"{', '.join(given)} apply with --text-model; a run keeps the settings it trained with"
        )


def _text_model(args: argparse.Namespace) -> Any:
    """The encoder of ``--text-model`` or of the text run ``RUN_DIR``, as a TextModel."""
    from contrastkit.app.text import TextModel, load_text_run
    from contrastkit.models.text import TextModelError, load_text_model

    if args.text_model and args.run_dir:
        raise _Failure("give RUN_DIR or --text-model DIR, not both")
    if not args.text_model:
        _no_text_model_options(args)
        return load_text_run(args.run_dir)[1]
    if args.max_length is not None and args.max_length < 2:
        raise _Failure(f"--max-length must be >= 2 tokens, got {args.max_length}")
    try:
        encoder, tokenizer, length = load_text_model(
            args.text_model, pooling=args.pooling, max_length=args.max_length
        )
    except TextModelError as error:
        raise _Failure(str(error)) from None
    return TextModel(encoder, tokenizer, length, args.text_model, False)


def _evaluate_text(args: argparse.Namespace) -> int:
    """``evaluate`` of a text run, or of a pretrained model with ``--text-model``."""
    from contrastkit.app.config import lee_source
    from contrastkit.app.report import metric_name, metric_text
    from contrastkit.app.result import far_of
    from contrastkit.app.text import (
        embed_texts,
        evaluate_text,
        load_text_run,
        read_text_run_data,
        text_splits,
    )
    from contrastkit.data.text import read_text_data

    if args.label_column:
        raise _Failure("--label-column applies to feature files; a text table names its columns")
    if args.text_model and not args.data:
        raise _Failure("--text-model needs --data, a text table to evaluate the model on")
    lee = lee_source(args.data) if args.data else None
    if lee is not None:  # the rated pairs of the Lee corpus, whatever the run trained on
        from contrastkit.data.lee import lee_test_pairs, read_lee

        new: Any = lee_test_pairs(read_lee(lee or None))
    else:
        new = read_text_data(args.data) if args.data else None
    val = None
    if args.text_model:
        model = _text_model(args)
        test = new
    else:
        _no_text_model_options(args)
        config, model = load_text_run(args.run_dir)
        if new is not None and new.kind != config.text_kind and lee is None:
            raise _Failure(
                f"--data {args.data} holds {new.kind.replace('_', ' ')}, but the run was "
                f"trained on {config.text_kind.replace('_', ' ')}; evaluate it on data of that kind"
            )
        test = new
        if new is None or config.text_kind == "labelled_pairs":  # the threshold's pairs
            _, val, own_test = text_splits(config, *read_text_run_data(config))
            test = new if new is not None else own_test
    if test is None:  # pragma: no cover - --text-model needs --data, a run has its test split
        raise _Failure("nothing to evaluate on")

    def embed(texts: Any) -> Any:
        return embed_texts(model.encoder, model.tokenizer, model.max_length, texts)

    evaluation, note = evaluate_text(embed, val, test)
    if args.json:
        print(json.dumps(evaluation.test, indent=2))
        return 0
    source = args.data or "the run's test split"
    print(f"evaluated {args.text_model or args.run_dir} on {source} ({len(test)} rows)")
    negatives = evaluation.pairs.get("test_negative")
    names = {key: metric_name(key) for key in evaluation.test}
    width = max(18, *(len(name) for name in names.values()))
    for key, value in evaluation.test.items():
        shown = metric_text(value, negative_pairs=negatives if far_of(key) is not None else None)
        print(f"  {names[key]:<{width}} {shown}")
    for why in (note, evaluation.retrieval_skipped):
        if why:
            print(f"  note: {why}")
    return 0


def _embed_text(args: argparse.Namespace, output: Path) -> int:
    """``embed`` of a text file, one text per line, by a text run or ``--text-model``."""
    import numpy as np

    from contrastkit.app.text import embed_texts
    from contrastkit.data.text import read_lines

    if args.label_column or args.exclude_columns:
        raise _Failure(
            "--label-column and --exclude-columns apply to feature files; a text file holds "
            "one text per line"
        )
    texts = read_lines(args.input)
    model = _text_model(args)
    embeddings = embed_texts(model.encoder, model.tokenizer, model.max_length, texts).numpy()
    with output.open("xb") as handle:
        np.save(handle, embeddings)
    print(f"wrote {embeddings.shape[0]} embeddings of size {embeddings.shape[1]} to {output}")
    return 0


def _kind_of(data: Any) -> str:
    """What a split holds, in words: ``"labelled images"``, ``"pairs of images"``, …."""
    from contrastkit.data.readers import PairData

    kind = "feature vectors" if data.kind == "vectors" else data.kind
    return f"pairs of {kind} (a pair file)" if isinstance(data, PairData) else f"labelled {kind}"


def _read_inputs(path: Path, config: Any, spec: dict[str, Any], args: argparse.Namespace) -> Any:
    """New inputs for ``embed`` and ``score``, read as the run reads its data.

    Images get the run's size and channels; a feature file is read without
    ``--label-column`` (the run's by default), the run's ``exclude_columns`` and those of
    ``--exclude-columns``, whichever of them it has.
    """
    from contrastkit.data.readers import (
        IMAGE_SUFFIXES,
        DataError,
        read_feature_vectors,
        read_images,
    )

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
    inputs = read_feature_vectors(
        path,
        label_column=args.label_column or config.label_column,
        exclude_columns=[*config.exclude_columns, *(args.exclude_columns or [])],
    )
    if inputs.shape[1] != int(spec["in_features"]):  # type: ignore[union-attr]
        raise DataError(
            f"input {path} has {inputs.shape[1]} features, the run was trained on "  # type: ignore[union-attr]
            f"{spec['in_features']}"
        )
    return inputs, []


def _embed(args: argparse.Namespace) -> int:
    import numpy as np

    from contrastkit.app.run import load_run, load_spec, scale_inputs
    from contrastkit.training import embed

    output = Path(args.output)
    if output.suffix != ".npy":
        raise _Failure(f"-o {output}: the output must be a .npy file")
    if output.exists():
        raise _Failure(f"{output} already exists; choose another -o")
    if not output.parent.exists():
        raise _Failure(f"folder {output.parent} does not exist")
    if args.text_model or _is_text_run(args.run_dir):
        return _embed_text(args, output)
    _no_text_model_options(args)
    config, model = load_run(args.run_dir)
    spec = load_spec(args.run_dir)
    names_file = output.with_suffix(".txt")
    if spec["kind"] == "images" and names_file.exists():
        raise _Failure(f"{names_file} (the image names of -o {output}) already exists")
    inputs, names = _read_inputs(Path(args.input), config, spec, args)
    embeddings = embed(model, scale_inputs(spec, inputs)).numpy()
    with output.open("xb") as handle:
        np.save(handle, embeddings)
    if names:
        with names_file.open("x") as handle:
            handle.write("\n".join(names) + "\n")
    print(f"wrote {embeddings.shape[0]} embeddings of size {embeddings.shape[1]} to {output}")
    return 0


def _score(args: argparse.Namespace) -> int:
    import csv

    from contrastkit.app.run import (
        anomaly_scores,
        available_scores,
        load_run,
        load_spec,
        scale_inputs,
    )
    from contrastkit.app.rundir import check_run_folder, read_reference

    output = Path(args.output)
    if output.suffix.lower() != ".csv":
        raise _Failure(f"-o {output}: the output must be a .csv file")
    if output.exists():
        raise _Failure(f"{output} already exists; choose another -o")
    if not output.parent.exists():
        raise _Failure(f"folder {output.parent} does not exist")
    if _is_text_run(args.run_dir):
        raise _Failure(
            f"{args.run_dir} is a text run; score gives anomaly scores of feature vectors and "
            "images (embed the texts with contrastkit embed)"
        )
    check_run_folder(args.run_dir, need_reference=True)
    config, model = load_run(args.run_dir)
    spec = load_spec(args.run_dir)
    reference, labels = read_reference(args.run_dir, embedding_dim=int(spec["embedding_dim"]))
    available = available_scores(model, labels)
    methods = args.method or available
    missing = [m for m in methods if m not in available]
    if missing:
        raise _Failure(
            f"--method {','.join(missing)} is not available for run {args.run_dir}; "
            f"it has {', '.join(available)}"
        )
    inputs, names = _read_inputs(Path(args.input), config, spec, args)
    scores = anomaly_scores(
        model, config, reference, labels, scale_inputs(spec, inputs), methods=methods
    )
    rows = names or [str(i) for i in range(inputs.shape[0])]
    columns = [scores[m].tolist() for m in methods]
    with output.open("x", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["input", *methods])
        for i, name in enumerate(rows):
            writer.writerow([name, *(f"{c[i]:.6g}" for c in columns)])
    print(f"wrote the {', '.join(methods)} scores of {len(rows)} inputs to {output}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from contrastkit.app.compare import run_comparison

    out = Path(args.out) if args.out else None  # None: run_comparison takes runs/compare-N
    if out is not None and out.exists():
        raise _Failure(f"folder {out} already exists; choose another --out")
    log = (lambda *_: None) if args.quiet else (lambda text: print(text, flush=True))
    result = run_comparison(
        out,
        epochs=args.epochs,
        seed=args.seed,
        anomaly_class=args.anomaly_class,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        hidden=args.hidden,
        log=log,
    )
    print(f"took {result['seconds']:.1f} s; report: {Path(result['folder']) / 'report.html'}")
    return 0


def _plot_loss(args: argparse.Namespace) -> int:
    from contrastkit import plots

    output = Path(args.output)
    if not (math.isfinite(args.margin) and args.margin > 0):
        raise _Failure(f"--margin must be a positive number, got {args.margin}")
    if output.exists():
        raise _Failure(f"{output} already exists; choose another -o")
    if output.suffix.lower() != ".png":
        raise _Failure(f"-o {output}: the figure is written as a .png file")
    fig, (ax,) = plots.subplots(figsize=(6.0, 4.0))
    plots.plot_loss_curve(margin=args.margin, caffe_legacy=args.caffe_legacy, ax=ax)
    plots.save_figure(fig, output)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
