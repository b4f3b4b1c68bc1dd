r"""Text runs: sentence encoders trained and measured from a table of texts.

``contrastkit train --data FILE`` takes a text table (:func:`contrastkit.data.text.read_text_data`:
a ``.csv``, ``.tsv`` or ``.jsonl`` whose columns say what it holds; see
:func:`~contrastkit.app.config.text_kind`) and trains a text encoder on it, in the run
folder of every run (:mod:`contrastkit.app.run`). This module holds what differs:

* the data: :func:`read_text_run_data` and :func:`text_splits` (rows split train /
  validation / test by the run's fractions, seeded and stratified by label where there
  is one; with ``test_data`` the test rows come from that file and the rows a test split
  would hold train);
* the encoder: :func:`build_text_model`, a pretrained folder (``text_model``; nothing
  downloads) or one trained from nothing (a vocabulary of the words of the *training*
  texts, :func:`~contrastkit.models.text.train_tokenizer`, and a small BERT,
  :func:`~contrastkit.models.text.small_transformer`), saved in the run folder as
  ``text-model/`` (:func:`~contrastkit.models.text.save_text_model`);
* the loss and batches of each kind of data, :func:`text_loss_and_loaders`:

  ===============  ==========================================================  ========
  data             losses (the first is the default)                          batches
  ===============  ==========================================================  ========
  scored pairs     ``cosine``: MSE of cos(u, v) against the score mapped       pairs
                   linearly onto [-1, 1] (:func:`~contrastkit.data.text.scores_to_unit`)
  labelled pairs   ``contrastive`` with the cosine distance                    pairs
  anchor-positive  ``infonce`` over in-batch candidates and each row's own     rows
                   hard negatives (``symmetric``: both directions);
                   ``triplet`` against each hard negative
  labelled texts   ``supcon``, ``triplet`` (batch-all), ``infonce`` (two      balanced
                   texts per class)
  ===============  ==========================================================  ========

  Identical texts are one sample: an anchor-positive batch carries
  :func:`~contrastkit.data.text.row_ids`, so a copy of a row's text elsewhere in the
  batch is never its negative;
* the evaluation as the field reports it, :func:`evaluate_text`: the Spearman and
  Pearson correlation of the cosine similarity with the gold scores (scored pairs),
  MRR@10 and recall@k of each anchor's positive among all positives (anchor-positive
  rows), verification with the threshold chosen on validation (labelled pairs),
  retrieval of same-class texts (labelled texts); :func:`text_evaluator` gives the
  validation values of each epoch (``val_spearman``, ``val_mrr_at_10``, …);
* embedding: :func:`embed_texts`, and :func:`load_text_run` for ``evaluate`` and
  ``embed``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from contrastkit import distributed, losses
from contrastkit.app.build import LOSS_KINDS, balanced_sampler
from contrastkit.app.config import ConfigError, RunConfig, lee_source, read_config_file
from contrastkit.app.result import Evaluation, far_of, measurable
from contrastkit.app.rundir import (
    CONFIG,
    TEXT_MODEL,
    WEIGHTS,
    RunFolderError,
    check_run_folder,
    load_weights_into,
    read_model_json,
)
from contrastkit.data import RandomBatchSampler, TokenizeTexts
from contrastkit.data.readers import DataError, split_indices
from contrastkit.data.text import (
    LabelledPairs,
    LabelledTexts,
    ScoredPairs,
    TextData,
    TextTuples,
    infer_score_range,
    read_text_data,
    row_ids,
    scores_to_unit,
    text_ids,
)
from contrastkit.training import (
    MemoryBank,
    PairObjective,
    TwoViewObjective,
    latest_checkpoint,
)
from contrastkit.training.batches import batch_size
from contrastkit.training.objectives import embed_parts, global_value

__all__ = [
    "TEXT_MODEL",
    "TextModel",
    "TupleObjective",
    "build_text_model",
    "embed_texts",
    "evaluate_text",
    "load_text_run",
    "read_text_run_data",
    "save_text_folder",
    "score_range",
    "text_evaluator",
    "text_history_values",
    "text_loss_and_loaders",
    "text_spec",
    "text_splits",
    "texts_of",
]


_KS = (1, 5, 10)
_FARS = (1e-2, 1e-3)
_WORDS = {
    "scored_pairs": "scored pairs",
    "labelled_pairs": "labelled pairs",
    "text_tuples": "anchor-positive rows",
    "labelled_texts": "labelled texts",
}

# ----------------------------------------------------------------------------- the data


def read_text_run_data(config: RunConfig) -> tuple[TextData, TextData | None]:
    """The run's text table and its ``test_data`` table (``None`` without one), checked.

    For ``data = "lee"`` (or ``"lee:FOLDER"``) the data are the Lee corpus's background
    sentences labelled by document and the test table its rated document pairs
    (:mod:`contrastkit.data.lee`): a test of another kind than the training data.

    Raises:
        DataError: a table that cannot be read (the reader's one line: file, line,
            column), or a test table of another kind.
        ConfigError: the table is not of the kind recorded in the config.
    """
    lee = lee_source(config.data)
    if lee is not None:
        from contrastkit.data.lee import lee_test_pairs, lee_training_texts, read_lee

        corpus = read_lee(lee or None)
        return lee_training_texts(corpus), lee_test_pairs(corpus)
    data = read_text_data(config.data)
    if config.text_kind and data.kind != config.text_kind:
        raise ConfigError(
            f"text_kind is {config.text_kind!r}, but {config.data} holds {_WORDS[data.kind]}; "
            "train a new run on it"
        )
    test = read_text_data(config.test_data) if config.test_data else None
    if test is not None and test.kind != data.kind:
        raise DataError(
            f"test data {config.test_data} holds {_WORDS[test.kind]}, but {config.data} holds "
            f"{_WORDS[data.kind]}; test on data of the same kind"
        )
    return data, test


def subset(data: TextData, index: Tensor) -> TextData:
    """The rows ``index`` of a text table, in that order."""
    rows = index.tolist()

    def pick(values: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(values[i] for i in rows)

    lines = pick(data.lines)
    if isinstance(data, ScoredPairs):
        return dataclasses.replace(
            data,
            sentence1=pick(data.sentence1),
            sentence2=pick(data.sentence2),
            scores=data.scores[index],
            lines=lines,
        )
    if isinstance(data, LabelledPairs):
        return dataclasses.replace(
            data,
            sentence1=pick(data.sentence1),
            sentence2=pick(data.sentence2),
            labels=data.labels[index],
            lines=lines,
        )
    if isinstance(data, TextTuples):
        return dataclasses.replace(
            data,
            anchors=pick(data.anchors),
            positives=pick(data.positives),
            negatives=tuple(pick(column) for column in data.negatives),
            lines=lines,
        )
    return dataclasses.replace(data, texts=pick(data.texts), labels=data.labels[index], lines=lines)


def texts_of(data: TextData) -> list[str]:
    """Every text of a table, column by column (the tokenizer's training texts)."""
    if isinstance(data, ScoredPairs | LabelledPairs):
        return [*data.sentence1, *data.sentence2]
    if isinstance(data, TextTuples):
        return [*data.anchors, *data.positives, *(t for column in data.negatives for t in column)]
    return list(data.texts)


def text_splits(
    config: RunConfig, data: TextData, test_file: TextData | None
) -> tuple[TextData, TextData, TextData]:
    """Training, validation and test rows, by the run's fractions and seed.

    Labelled rows are split by label (each split keeps both kinds of pair, or the
    classes), other rows at random. With a test table, it is the test split and the
    rows a test split would have held train. Each split must be able to measure what
    its kind reports (two pairs of different scores, a pair of each label, two rows),
    checked here, before anything is written.
    """
    if isinstance(data, LabelledPairs | LabelledTexts):
        labels = data.labels
    else:
        labels = torch.zeros(len(data), dtype=torch.int64)
    fractions = (config.val_fraction, config.test_fraction)
    train_i, val_i, test_i = split_indices(labels, fractions=fractions, seed=config.seed)
    if test_file is not None:
        train_i = torch.sort(torch.cat([train_i, test_i])).values
    train, val = subset(data, train_i), subset(data, val_i)
    test = test_file if test_file is not None else subset(data, test_i)
    for name, part in (("training", train), ("validation", val), ("test", test)):
        _check_split(data.source if part is not test_file else test.source, name, part)
    return train, val, test


def _check_split(source: str, name: str, part: TextData) -> None:
    why = None
    if len(part) < 2:
        why = f"holds {len(part)} row{'s' if len(part) != 1 else ''}; at least 2 are needed"
    elif isinstance(part, ScoredPairs) and bool((part.scores == part.scores[0]).all()):
        why = "has one score only, so no correlation can be measured"
    elif isinstance(part, LabelledPairs) and len(set(part.labels.tolist())) < 2:
        why = "has pairs of one label only; it needs similar (1) and dissimilar (0) pairs"
    if why is not None:
        raise DataError(f"{source}: the {name} split {why}; more data is needed")


def score_range(config: RunConfig, data: TextData) -> tuple[float, float] | None:
    """The range of the gold scores mapped onto [-1, 1]: given, or inferred from ``data``.

    ``None`` for data without scores.

    Raises:
        ConfigError: the range cannot be inferred, or a score lies outside the given one.
    """
    if not isinstance(data, ScoredPairs):
        return None
    if config.score_range:
        low, high = (float(v) for v in config.score_range)
        outside = (data.scores < low) | (data.scores > high)
        if bool(outside.any()):
            row = int(outside.nonzero()[0])
            raise ConfigError(
                f"score_range [{low:g}, {high:g}]: {data.source} has the score "
                f"{float(data.scores[row]):g} on line {data.lines[row]}, outside it"
            )
        return low, high
    try:
        return infer_score_range(data.scores)
    except ValueError as error:
        raise ConfigError(f"{data.source}: {error} (--score-range LOW,HIGH)") from None


# ----------------------------------------------------------------------------- the encoder


@dataclasses.dataclass
class TextModel:
    """A text run's encoder, its tokenizer and length, and where they came from."""

    encoder: nn.Module
    tokenizer: Any
    max_length: int
    source: str  # "trained from nothing" or the pretrained folder
    trained_from_nothing: bool

    @property
    def embedding_dim(self) -> int:
        """The size of the encoder's embeddings (its token states' width)."""
        return int(cast(Any, self.encoder).transformer.config.hidden_size)


def _without_pooler(encoder: nn.Module) -> None:
    """Drop a BERT pooler: the embeddings pool the token states and never use it.

    ``AutoModel`` adds a fresh one when it loads a BERT saved without one (the encoder
    trained from nothing), and a pretrained one holds weights that get no gradient
    (which several processes refuse). Without it, every text run's weights are the
    same tensors however the encoder was loaded.
    """
    transformer = getattr(encoder, "transformer", None)
    if getattr(transformer, "pooler", None) is not None:
        transformer.pooler = None  # type: ignore[union-attr]


def build_text_model(config: RunConfig, train: TextData, saved: Path | None = None) -> TextModel:
    """The encoder of a text run: from ``saved`` (a run's own folder), pretrained, or new.

    A new encoder is seeded from ``config.seed``: its vocabulary comes from the training
    texts alone, so the same data and seed give the same encoder.
    """
    from contrastkit.models.text import (
        TextEncoder,
        load_text_model,
        small_transformer,
        train_tokenizer,
        word_bag,
    )

    pooling = cast(Any, config.pooling or None)
    length = config.max_length or None
    if saved is not None or config.text_model:
        folder = saved if saved is not None else Path(config.text_model)
        encoder, tokenizer, max_length = load_text_model(folder, pooling=pooling, max_length=length)
        _without_pooler(encoder)
        return TextModel(
            encoder,
            tokenizer,
            max_length,
            config.text_model or "trained from nothing",
            not config.text_model,
        )
    tokenizer = train_tokenizer(texts_of(train), vocab_size=config.vocab_size)
    max_length = length or 128
    torch.manual_seed(config.seed)
    if config.text_layers == 0:
        transformer = word_bag(len(tokenizer), hidden=config.text_width, max_length=max_length)
    else:
        transformer = small_transformer(
            len(tokenizer),
            hidden=config.text_width,
            layers=config.text_layers,
            heads=config.text_heads,
            max_length=max_length,
        )
    encoder = TextEncoder(transformer, pooling=pooling or "mean")
    return TextModel(encoder, tokenizer, max_length, "trained from nothing", True)


def text_spec(config: RunConfig, model: TextModel) -> dict[str, Any]:
    """The ``model.json`` of a text run: the embedding size and the text settings."""
    encoder = cast(Any, model.encoder)
    return {
        "kind": "text",
        "embedding_dim": model.embedding_dim,
        "text": {
            "folder": TEXT_MODEL,
            "source": config.text_model or "trained from nothing",
            "pooling": encoder.pooling,
            "max_length": model.max_length,
            "vocab_size": len(model.tokenizer),
        },
    }


def save_text_folder(run: Path, model: TextModel) -> Path:
    """Write the encoder and tokenizer to ``run/text-model``, replacing it whole.

    The folder is written beside it under a temporary name (which
    :func:`~contrastkit.app.rundir.remove_stale_temporaries` removes if a kill leaves
    it) and renamed into place, so a reader finds the old folder or the new one.
    """
    from contrastkit.models.text import save_text_model

    target = run / TEXT_MODEL
    token = uuid.uuid4().hex[:8]
    temporary = run / f".{TEXT_MODEL}.tmp-{os.getpid()}-{token}"
    old = run / f".{TEXT_MODEL}-old.tmp-{os.getpid()}-{token}"
    try:
        save_text_model(temporary, cast(Any, model.encoder), model.tokenizer, model.max_length)
        if target.exists():
            os.replace(target, old)
        os.replace(temporary, target)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return target


# ----------------------------------------------------------------------------- the loss


class TupleObjective:
    r"""InfoNCE or triplet on batches of anchor, positive, hard negatives and row ids.

    A batch is ``(anchor, positive, negative_1, …, negative_k, ids)``: token mappings
    (one padded length: :class:`~contrastkit.data.TokenizeTexts`), embedded in one pass
    (:func:`~contrastkit.training.embed_parts`), and the rows' ids
    (:func:`~contrastkit.data.text.row_ids`).

    * InfoNCE (``triplet=False``): anchor :math:`i` picks its positive among every
      positive of the batch and its own :math:`k` hard negatives; another row with its
      id is no negative. ``symmetric``: the mean of that and of each positive picking
      its anchor among the batch's anchors (sentence-transformers'
      ``MultipleNegativesSymmetricRankingLoss``).
    * Triplet: the triplet loss of each hard negative, averaged over the :math:`k`.
    """

    def __init__(
        self,
        loss: Callable[..., Tensor],
        *,
        symmetric: bool = False,
        triplet: bool = False,
        name: str = "loss",
    ) -> None:
        self.loss, self.symmetric, self.triplet, self.name = loss, symmetric, triplet, name

    def __call__(self, model: nn.Module, batch: Any) -> dict[str, Tensor]:
        """The loss of one batch of rows."""
        *texts, ids = batch
        embedded = embed_parts(model, texts)
        anchors, positives, negatives = embedded[0], embedded[1], embedded[2:]
        if self.triplet:
            value = torch.stack([self.loss(anchors, positives, n) for n in negatives]).mean()
        else:
            hard = torch.stack(negatives, dim=1) if negatives else None
            value = self.loss(anchors, positives, hard, ids=ids)
            if self.symmetric:
                value = 0.5 * (value + self.loss(positives, anchors, ids=ids))
        return {self.name: global_value(value, batch_size(texts[0]), self.loss)}


def _samples(data: TextData, unit: Tensor | None) -> Any:
    """The rows of a table as the collate's samples."""
    if isinstance(data, ScoredPairs):
        scores = cast(Tensor, unit).tolist()
        return list(zip(data.sentence1, data.sentence2, scores, strict=True))
    if isinstance(data, LabelledPairs):
        return list(zip(data.sentence1, data.sentence2, data.labels.tolist(), strict=True))
    if isinstance(data, TextTuples):
        ids = row_ids(data.anchors, data.positives).tolist()
        return list(zip(data.anchors, data.positives, *data.negatives, ids, strict=True))
    return list(zip(data.texts, data.labels.tolist(), strict=True))


def _objective(config: RunConfig, kind: str) -> Any:
    gather = distributed.is_distributed()
    if kind == "scored_pairs":
        return PairObjective(losses.CosineSimilarityLoss())
    if kind == "labelled_pairs":
        return PairObjective(
            losses.ContrastiveLoss(margin=config.margin, distance=config.distance_name)
        )
    if kind == "text_tuples":
        if config.loss == "triplet":
            return TupleObjective(
                losses.TripletLoss(margin=config.margin, distance=config.distance_name),
                triplet=True,
            )
        return TupleObjective(
            losses.InfoNCELoss(temperature=config.temperature, gather=gather),
            symmetric=config.symmetric,
        )
    if config.loss == "infonce":
        memory = (
            MemoryBank(config.memory_size, config.embedding_dim) if config.memory_size else None
        )
        loss = losses.InfoNCELoss(
            temperature=config.temperature, symmetric=config.symmetric, gather=gather
        )
        return TwoViewObjective(loss, memory=memory)
    return LOSS_KINDS[config.loss].objective(config)


def text_loss_and_loaders(
    config: RunConfig, model: TextModel, train: TextData, val: TextData
) -> tuple[Any, DataLoader[Any], DataLoader[Any] | None, list[str]]:
    """The objective of a text run, its training and validation batches, and notes.

    Each epoch draws ``steps_per_epoch`` batches of ``batch_size`` rows (at most the
    training rows; the batch is global, shared by the processes): random rows, or
    class-balanced texts for labelled texts. Validation goes through the validation
    rows in order. Scores are mapped onto [-1, 1] by :func:`score_range`.
    """
    kind = train.kind
    notes: list[str] = []
    world = distributed.world_size()
    if kind == "text_tuples" and config.loss == "triplet" and not cast(TextTuples, train).negatives:
        raise ConfigError(
            f"loss triplet needs a negative for each anchor, and {train.source} has no "
            "negative column; add negative (or negative_1, ...) or train with loss infonce"
        )
    collate = TokenizeTexts(model.tokenizer, max_length=model.max_length)
    objective = _objective(config, kind)
    if isinstance(train, LabelledTexts):
        val_texts = cast(LabelledTexts, val)
        per_class = LOSS_KINDS[config.loss].samples_per_class
        loaders: list[DataLoader[Any] | None] = []
        for part, split, seed, count in (
            (train, "training", config.seed, config.steps_per_epoch),
            (val_texts, "validation", config.seed + 1, 8),
        ):
            sampler = balanced_sampler(
                part, split, per_class, config.batch_size, count, seed, notes
            )
            loaders.append(
                DataLoader(_samples(part, None), batch_sampler=sampler, collate_fn=collate)
                if sampler is not None
                else None
            )
        return objective, cast(DataLoader[Any], loaders[0]), loaders[1], notes
    low_high = score_range(config, train)
    unit = (lambda d: scores_to_unit(d.scores, *low_high)) if low_high is not None else None
    rows = _samples(train, unit(train) if unit else None)
    size = min(config.batch_size, len(rows))
    if size < world:
        raise DataError(
            f"{train.source}: the training split has {len(rows)} rows, fewer than the "
            f"{world} processes that share each batch"
        )
    if size < config.batch_size:
        notes.append(
            f"batches of {size} rows, all the training rows, rather than {config.batch_size}: "
            "a batch holds each row at most once"
        )
    draws = RandomBatchSampler(
        len(rows), batch_size=size, batches_per_epoch=config.steps_per_epoch, seed=config.seed
    )
    train_loader: DataLoader[Any] = DataLoader(rows, batch_sampler=draws, collate_fn=collate)
    val_rows = _samples(val, unit(val) if unit else None)
    val_loader: DataLoader[Any] | None = None
    if len(val_rows) >= world:
        order = RandomBatchSampler(
            len(val_rows), batch_size=min(config.batch_size, len(val_rows)), shuffle=False
        )
        val_loader = DataLoader(val_rows, batch_sampler=order, collate_fn=collate)
    if low_high is not None:
        low, high = low_high
        how = "given" if config.score_range else "inferred from the scores"
        notes.append(
            f"gold scores mapped linearly from [{low:g}, {high:g}] ({how}) onto [-1, 1], "
            f"u = 2 (s - {low:g}) / ({high:g} - {low:g}) - 1, the range of the cosine "
            "similarity the loss regresses onto; the correlations use the scores as written"
        )
    if kind == "text_tuples":
        tuples = cast(TextTuples, train)
        hard = len(tuples.negatives)
        extra = f" and its own {hard} hard negative{'s' if hard != 1 else ''}" if hard else ""
        if config.loss == "infonce":
            notes.append(
                f"each anchor picked its positive among the {size} positives of its batch"
                f"{extra} (InfoNCE, temperature {config.temperature:g})"
                + (", and each positive its anchor among the anchors" if config.symmetric else "")
                + "; rows sharing a text are one sample, never each other's negatives"
            )
    return objective, train_loader, val_loader, notes


# ----------------------------------------------------------------------------- evaluation


def embed_texts(
    encoder: nn.Module,
    tokenizer: Any,
    max_length: int,
    texts: Sequence[str],
    *,
    batch: int = 64,
) -> Tensor:
    """The embeddings of ``texts`` in eval mode, ``batch`` at a time, on the CPU (float32).

    The encoder's training mode is restored afterwards.
    """
    collate = TokenizeTexts(tokenizer, max_length=max_length)
    device = next((p.device for p in encoder.parameters()), torch.device("cpu"))
    was_training = encoder.training
    encoder.eval()
    parts = []
    try:
        with torch.no_grad():
            for start in range(0, len(texts), batch):
                tokens = collate.tokens(list(texts[start : start + batch]))
                tokens = {k: v.to(device) for k, v in tokens.items()}
                parts.append(encoder(tokens).float().cpu())
    finally:
        encoder.train(was_training)
    if not parts:
        raise ValueError("texts must hold at least one text")
    out = torch.cat(parts)
    if not bool(torch.isfinite(out).all()):
        raise FloatingPointError("the text encoder produced NaN or infinite embeddings")
    return out


Embedder = Callable[[Sequence[str]], Tensor]


def _pair_embeddings(embed: Embedder, data: ScoredPairs | LabelledPairs) -> tuple[Tensor, Tensor]:
    """The embeddings of both sides of each pair; each distinct text is embedded once."""
    index: dict[str, int] = {}
    rows = [index.setdefault(t, len(index)) for t in (*data.sentence1, *data.sentence2)]
    both = embed(list(index))[torch.tensor(rows, dtype=torch.int64)]
    return both[: len(data)], both[len(data) :]


def _cosine_distance(left: Tensor, right: Tensor) -> Tensor:
    return 1.0 - torch.nn.functional.cosine_similarity(left.double(), right.double(), dim=1)


def text_history_values(kind: str, val: TextData, val_loader: Any) -> dict[str, str | None]:
    """The values each epoch of a text run's history holds → ``None``, or why missing."""
    out: dict[str, str | None] = {"train_loss": None}
    out["val_loss"] = None if val_loader is not None else "the validation split gives no batch"
    if kind == "scored_pairs":
        out.update(val_spearman=None, val_pearson=None)
    elif kind == "labelled_pairs":
        out["val_roc_auc"] = None
    elif kind == "text_tuples":
        out["val_mrr_at_10"] = None
    else:
        counts = torch.bincount(cast(LabelledTexts, val).labels)
        ok = bool((counts >= 2).any())
        out["val_precision_at_1"] = None if ok else "no class has 2 texts in the validation split"
    return out


def text_evaluator(model: TextModel, val: TextData) -> Callable[[nn.Module], dict[str, float]]:
    """The validation metrics after each epoch (the history's ``val_*`` values)."""
    from contrastkit.evaluation.metrics import roc_auc
    from contrastkit.evaluation.retrieval import precision_at_1
    from contrastkit.evaluation.text import anchor_positive_retrieval, similarity_correlation

    def evaluate(encoder: nn.Module) -> dict[str, float]:
        def embed(texts: Sequence[str]) -> Tensor:
            return embed_texts(encoder, model.tokenizer, model.max_length, texts)

        if isinstance(val, ScoredPairs):
            left, right = _pair_embeddings(embed, val)
            try:
                found = similarity_correlation(left, right, val.scores)
            except ValueError:  # every similarity equal (an untrained encoder can)
                return {}
            return {"val_spearman": found["spearman"], "val_pearson": found["pearson"]}
        if isinstance(val, LabelledPairs):
            left, right = _pair_embeddings(embed, val)
            return {"val_roc_auc": roc_auc(_cosine_distance(left, right), val.labels)}
        if isinstance(val, TextTuples):
            anchors, positives = embed(val.anchors), embed(val.positives)
            found = anchor_positive_retrieval(
                anchors, positives, ks=(1,), ids=text_ids(val.positives)
            )
            return {"val_mrr_at_10": found["mrr_at_10"]}
        labels = val.labels
        if not bool((torch.bincount(labels) >= 2).any()):
            return {}
        return {"val_precision_at_1": precision_at_1(embed(val.texts), labels, distance="cosine")}

    return evaluate


def _measured(found: dict[str, float | None], negatives: int) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key, value in found.items():
        far = far_of(key)
        out[key] = None if far is not None and not measurable(far, negatives) else value
    return out


def evaluate_text(
    embed: Embedder, val: TextData | None, test: TextData
) -> tuple[Evaluation, str | None]:
    """The test metrics of a text encoder, as the field reports them, and a note.

    ``embed`` embeds a list of texts. ``val`` chooses the verification threshold of
    labelled pairs; without it (a model evaluated with no run) the threshold is chosen
    on the test pairs themselves, which the note says (optimistic).
    """
    from contrastkit.evaluation.retrieval import retrieval_metrics
    from contrastkit.evaluation.text import (
        anchor_positive_retrieval,
        pair_verification_metrics,
        similarity_correlation,
    )

    empty = torch.zeros(0)
    note = None
    if isinstance(test, ScoredPairs):
        left, right = _pair_embeddings(embed, test)
        found = similarity_correlation(left, right, test.scores)
        cosine = 1.0 - _cosine_distance(left, right)
        evaluation = Evaluation(
            distance="cosine",
            test={"spearman": found["spearman"], "pearson": found["pearson"]},
            pairs={"test": len(test)},
            test_distances=empty,
            test_same=empty.long(),
            test_embeddings=torch.cat([left, right]),
            test_similarity=cosine.float(),
            test_gold=test.scores.clone(),
        )
        return evaluation, note
    if isinstance(test, LabelledPairs):
        left, right = _pair_embeddings(embed, test)
        if isinstance(val, LabelledPairs):
            val_left, val_right = _pair_embeddings(embed, val)
            val_labels = val.labels
        else:
            val_left, val_right, val_labels = left, right, test.labels
            note = (
                "the threshold was chosen on the test pairs themselves (no validation split): "
                "the accuracy at it is optimistic"
            )
        found = dict(
            pair_verification_metrics(
                val_left, val_right, val_labels, left, right, test.labels, fars=_FARS
            )
        )
        negatives = int((test.labels == 0).sum())
        evaluation = Evaluation(
            distance="cosine",
            test=_measured(cast(dict[str, float | None], found), negatives),
            pairs={"validation": len(val_labels), "test": len(test), "test_negative": negatives},
            test_distances=_cosine_distance(left, right).float(),
            test_same=test.labels.clone(),
            test_embeddings=torch.cat([left, right]),
        )
        return evaluation, note
    if isinstance(test, TextTuples):
        anchors, positives = embed(test.anchors), embed(test.positives)
        found = anchor_positive_retrieval(anchors, positives, ks=_KS, ids=text_ids(test.positives))
        evaluation = Evaluation(
            distance="cosine",
            test=dict(found),
            pairs={"test": len(test)},
            test_distances=empty,
            test_same=empty.long(),
            test_embeddings=torch.cat([anchors, positives]),
        )
        return evaluation, note
    test_texts = test
    emb = embed(test_texts.texts)
    skipped = None
    test_found: dict[str, float | None] = {}
    if not bool((torch.bincount(test_texts.labels) >= 2).any()):
        skipped = "no class has 2 texts in the test split, so no query has a match to find"
    else:
        ks = tuple(k for k in _KS if k < len(test_texts))
        test_found.update(retrieval_metrics(emb, test_texts.labels, distance="cosine", ks=ks))
    evaluation = Evaluation(
        distance="cosine",
        test=test_found,
        pairs={"test": len(test_texts)},
        test_distances=empty,
        test_same=empty.long(),
        test_embeddings=emb,
        retrieval_skipped=skipped,
    )
    return evaluation, note


# ----------------------------------------------------------------------------- a run, loaded


def load_text_run(run_dir: str | Path) -> tuple[RunConfig, TextModel]:
    """The config and trained encoder of a text run folder (for evaluate and embed).

    The weights are the final ones, or the last checkpoint's while the run is
    unfinished.

    Raises:
        RunFolderError: a missing or damaged file, named.
    """
    from contrastkit.models.text import TextModelError

    run = Path(run_dir)
    check_run_folder(run)
    config = RunConfig.from_mapping(read_config_file(run / CONFIG), where=str(run / CONFIG))
    spec = read_model_json(run)
    folder = run / str(spec["text"]["folder"])
    if not folder.is_dir():
        raise RunFolderError(f"text run {run} has no {folder.name}/ (its encoder and tokenizer)")
    weights = run / WEIGHTS
    if not weights.is_file():
        checkpoint = latest_checkpoint(run)
        if checkpoint is None:
            raise RunFolderError(f"run folder {run} has no trained weights yet ({WEIGHTS})")
        weights = checkpoint / WEIGHTS
    try:
        model = build_text_model(config, cast(TextData, None), folder)
    except TextModelError as error:
        raise RunFolderError(str(error)) from None
    load_weights_into(model.encoder, weights)
    model.encoder.eval()
    return config, model
