"""Text encoders on a tiny BERT and a tokenizer trained here: pooling against loops,
padding that changes nothing, save and load, the collate, gradient caching on texts,
and every broken model folder named in one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")  # the text extra; CI installs it

from contrastkit import CosineSimilarityLoss, InfoNCELoss
from contrastkit.data import TokenizeTexts
from contrastkit.models import TextEncoder, load_text_model, save_text_model
from contrastkit.models.text import (
    TEXT_SETTINGS,
    WORD_BAG,
    TextModelError,
    pool,
    small_transformer,
    train_tokenizer,
    word_bag,
)
from contrastkit.training import CachedObjective, PairObjective, TwoViewObjective

TEXTS = [
    "the cat sat on the mat",
    "a dog ran through the park",
    "stock markets fell sharply today",
    "cats and dogs are friendly pets",
    "the central bank raised interest rates",
    "a small bird sang in the old tree",
    "rain is expected over the weekend",
    "the team won the final match",
]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS * 3, vocab_size=120)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tokenizer) -> Path:
    torch.manual_seed(0)
    encoder = TextEncoder(small_transformer(len(tokenizer), hidden=16, heads=2, max_length=32))
    return save_text_model(tmp_path_factory.mktemp("text") / "model", encoder, tokenizer, 24)


def _encoder(tokenizer, pooling: str = "mean", *, dropout: float = 0.0) -> TextEncoder:
    torch.manual_seed(1)
    transformer = small_transformer(len(tokenizer), hidden=16, max_length=32, dropout=dropout)
    return TextEncoder(transformer.double(), pooling=pooling)  # type: ignore[arg-type]


_KEYS = ("input_ids", "attention_mask")


# --- pooling ------------------------------------------------------------------------


def test_pooling_against_loops() -> None:
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(4, 5, 3, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]])
    mean, top, first = (pool(hidden, mask, p) for p in ("mean", "max", "cls"))
    for i in range(4):
        kept = [hidden[i, t] for t in range(5) if mask[i, t]]
        want_mean = sum(kept) / len(kept) if kept else torch.zeros(3, dtype=torch.float64)
        want_max = torch.stack(kept).max(0).values if kept else torch.zeros(3, dtype=torch.float64)
        torch.testing.assert_close(mean[i], want_mean)
        torch.testing.assert_close(top[i], want_max)
        assert torch.equal(first[i], hidden[i, 0])


@pytest.mark.parametrize("pooling", ["mean", "max", "cls"])
def test_a_text_embeds_the_same_alone_and_padded_in_a_batch(tokenizer, pooling: str) -> None:
    encoder = _encoder(tokenizer, pooling).eval()
    collate = TokenizeTexts(tokenizer, max_length=32)
    together = encoder(collate(["a cat", TEXTS[4]]))
    alone = encoder(collate(["a cat"]))
    assert (
        collate(["a cat", TEXTS[4]])["input_ids"].shape[1]
        > collate(["a cat"])["input_ids"].shape[1]
    )
    torch.testing.assert_close(together[0], alone[0], rtol=1e-10, atol=1e-12)


def test_a_word_bag_is_the_mean_of_its_words_vectors_and_saves_and_loads(
    tokenizer, tmp_path
) -> None:
    torch.manual_seed(2)
    bag = word_bag(len(tokenizer), hidden=8, max_length=16)
    vectors = bag.get_input_embeddings().weight.detach()
    assert torch.equal(vectors[tokenizer.pad_token_id], torch.zeros(8))
    assert 0.01 < float(vectors.std()) < 0.03  # N(0, 0.02^2)
    encoder = TextEncoder(bag).eval()
    tokens = TokenizeTexts(tokenizer, max_length=16)(["the cat sat on the mat", "a dog"])
    out = encoder(tokens)
    for i in range(2):
        ids = [t for t, kept in zip(*(tokens[k][i].tolist() for k in _KEYS), strict=True) if kept]
        torch.testing.assert_close(out[i], torch.stack([vectors[t] for t in ids]).mean(0))
    folder = save_text_model(tmp_path / "bag", encoder, tokenizer, 16)
    assert json.loads((folder / "config.json").read_text())["model_type"] == WORD_BAG
    # a fresh process: load_text_model registers the word bag with transformers itself
    script = (
        "import sys, torch; from contrastkit.models import load_text_model; "
        "e, t, n = load_text_model(sys.argv[1]); "
        "print(type(e.transformer).__name__, n, e.pooling); "
        "torch.save(e.transformer.get_input_embeddings().weight, sys.argv[2])"
    )
    saved = tmp_path / "weights.pt"
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(saved)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["WordBagModel", "16", "mean"]
    assert torch.equal(torch.load(saved), vectors)
    with pytest.raises(ValueError, match="hidden must be a positive integer, got 0"):
        word_bag(10, hidden=0)


def test_normalize_gives_unit_rows_and_the_pooling_is_checked(tokenizer) -> None:
    transformer = small_transformer(len(tokenizer), hidden=16, max_length=32)
    out = TextEncoder(transformer, normalize=True)(TokenizeTexts(tokenizer)(TEXTS))
    torch.testing.assert_close(out.norm(dim=1), torch.ones(len(TEXTS)))
    with pytest.raises(ValueError, match="pooling must be one of mean, cls, max, got 'sum'"):
        TextEncoder(transformer, pooling="sum")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"transformer must be an nn\.Module, got str"):
        TextEncoder("bert")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="normalize must be a bool"):
        TextEncoder(transformer, normalize=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a mapping of token tensors"):
        TextEncoder(transformer)(torch.zeros(2, 3, dtype=torch.long))


# --- the tokenizer and the collate ------------------------------------------------------


def test_a_trained_tokenizer_is_deterministic_and_wraps_texts_in_cls_and_sep(tokenizer) -> None:
    for _ in range(3):  # tokenizers' own trainer gave another vocabulary 4 times in 5
        assert train_tokenizer(TEXTS * 3, vocab_size=120).get_vocab() == tokenizer.get_vocab()
    vocab = tokenizer.get_vocab()
    words = {w for t in TEXTS for w in t.split()}
    assert set(vocab) == words | {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}  # no pieces
    ids = tokenizer(["The parked cat, zzz!"])["input_ids"][0]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    tokens = tokenizer.convert_ids_to_tokens(ids)
    # a word never seen is one [UNK], even where a seen word ("park") begins it; so is
    # punctuation never seen
    assert tokens == ["[CLS]", "the", "[UNK]", "cat", "[UNK]", "[UNK]", "[UNK]", "[SEP]"]
    assert tokenizer.unk_token_id not in tokenizer(TEXTS)["input_ids"][0]
    small = train_tokenizer(TEXTS, vocab_size=16).get_vocab()  # the 11 most frequent words
    counts = {w: sum(t.split().count(w) for t in TEXTS) for w in words}
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    assert sorted(small, key=small.__getitem__)[5:] == ranked[:11] and ranked[0] == "the"
    with pytest.raises(ValueError, match="unknown_words must be one of 'unk', 'characters'"):
        train_tokenizer(TEXTS, unknown_words="pieces")  # type: ignore[arg-type]


def test_a_tokenizer_that_splits_unknown_words_into_characters(tokenizer) -> None:
    def train(texts: list[str], size: int):
        return train_tokenizer(texts, vocab_size=size, unknown_words="characters")

    tokenizer = train(TEXTS * 3, 120)
    for _ in range(3):
        assert train(TEXTS * 3, 120).get_vocab() == tokenizer.get_vocab()
    vocab = tokenizer.get_vocab()
    words = {w for t in TEXTS for w in t.split()}
    assert words <= set(vocab) and len(vocab) <= 120 and "##z" not in vocab
    small = train(TEXTS, 70).get_vocab()  # characters, then words
    counts = {w: sum(t.split().count(w) for t in TEXTS) for w in words}
    ranked = sorted(counts, key=lambda w: (-counts[w], w))  # "the" (4 times) first
    kept = [w for w in ranked if w in small and not (len(w) == 1 and w in vocab)]
    assert len(small) == 70 and kept == [w for w in ranked if len(w) > 1][: len(kept)]
    assert kept[0] == "the" and 0 < len(kept) < len(ranked) - 1
    ids = tokenizer(["The cat sat, zzz!"])["input_ids"][0]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.unk_token_id in ids  # z was never seen
    assert tokenizer.unk_token_id not in tokenizer(TEXTS)["input_ids"][0]
    pieces = tokenizer.convert_ids_to_tokens(tokenizer(["parked"])["input_ids"][0])
    assert pieces[0] == "[CLS]" and pieces[1] in vocab and pieces[2].startswith("##")
    with pytest.raises(ValueError, match="layers must be a positive integer, got 0"):
        small_transformer(20, layers=0)
    with pytest.raises(ValueError, match="heads must be a positive integer, got 0"):
        small_transformer(20, heads=0)
    with pytest.raises(ValueError, match="vocab_size must be an integer >= 16, got 3"):
        train_tokenizer(TEXTS, vocab_size=3)
    with pytest.raises(ValueError, match="at least one text"):
        train_tokenizer([])


def test_the_collate_keeps_the_structure_and_pads_every_text_to_one_length(tokenizer) -> None:
    collate = TokenizeTexts(tokenizer, max_length=6)
    a, b, score = collate([(TEXTS[0], "a cat", 0.5), (TEXTS[1], TEXTS[2], 1.0)])
    assert a["input_ids"].shape == b["input_ids"].shape == (2, 6)  # truncated to 6
    assert score.dtype == torch.float32 and score.tolist() == [0.5, 1.0]
    text, label = collate([("a cat", 3), ("a dog", torch.tensor(1))])
    assert label.dtype == torch.long and label.tolist() == [3, 1]
    assert text["attention_mask"].sum(1).tolist() == [4, 4]  # [CLS] a cat [SEP]
    with pytest.raises(TypeError, match="field 1 of the samples mixes texts"):
        collate([("a", "b"), ("c", 1)])
    with pytest.raises(ValueError, match="must have 2 fields"):
        collate([("a", "b"), ("c",)])
    with pytest.raises(TypeError, match="field 1 of the samples must hold texts or numbers"):
        collate([("a", None), ("c", None)])
    with pytest.raises(ValueError, match="max_length must be an integer >= 2"):
        TokenizeTexts(tokenizer, max_length=1)
    with pytest.raises(TypeError, match="tokenizer must be callable"):
        TokenizeTexts("bert")


# --- with the objectives and gradient caching ---------------------------------------------


def _grads(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("micro_batch", [1, 3, 5])
def test_texts_through_a_cached_objective_equal_the_whole_batch(tokenizer, micro_batch) -> None:
    collate = TokenizeTexts(tokenizer, max_length=16)
    pairs = collate([(TEXTS[i], TEXTS[(i + 3) % 8], 0.1 * i) for i in range(7)])
    pairs = (pairs[0], pairs[1], pairs[2].double())
    objective = PairObjective(CosineSimilarityLoss())
    model = _encoder(tokenizer)
    loss = objective(model, pairs)["loss"]
    loss.backward()
    expected = _grads(model)
    model.zero_grad()
    cached = CachedObjective(objective, micro_batch=micro_batch)(model, pairs)["loss"]
    cached.backward()
    torch.testing.assert_close(cached, loss, rtol=1e-12, atol=1e-12)
    got = _grads(model)
    assert len(got) == len(expected) > 0 and any(g.abs().sum() > 0 for g in got)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-11)


def test_dropout_in_a_text_encoder_is_replayed_by_the_cache(tokenizer) -> None:
    """The gradient is the one of the masks the first, chunked, forward drew."""
    collate = TokenizeTexts(tokenizer, max_length=16)
    x, labels = collate([(t, i // 2) for i, t in enumerate(TEXTS)])
    model = _encoder(tokenizer, dropout=0.3).train()
    loss_fn = InfoNCELoss(temperature=0.5)
    torch.manual_seed(5)  # the reference: the same chunks of 3, embedded with a graph
    out = torch.cat([model({k: v[i : i + 3] for k, v in x.items()}) for i in range(0, 8, 3)])
    loss = loss_fn(out[0::2], out[1::2])
    loss.backward()
    expected = _grads(model)
    model.zero_grad()
    torch.manual_seed(5)
    objective = CachedObjective(TwoViewObjective(loss_fn), micro_batch=3)
    cached = objective(model, (x, labels))["loss"]
    cached.backward()
    torch.testing.assert_close(cached, loss, rtol=0, atol=0)
    for g, e in zip(_grads(model), expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-11)


# --- saving and loading ------------------------------------------------------------------


def test_a_saved_model_loads_back_with_its_settings(saved: Path, tokenizer) -> None:
    encoder, loaded_tokenizer, max_length = load_text_model(saved)
    assert max_length == 24 and encoder.pooling == "mean" and not encoder.normalize
    assert json.loads((saved / TEXT_SETTINGS).read_text())["max_length"] == 24
    collate = TokenizeTexts(loaded_tokenizer, max_length=max_length)
    assert torch.equal(
        collate(TEXTS)["input_ids"], TokenizeTexts(tokenizer, max_length=24)(TEXTS)["input_ids"]
    )
    again, _, _ = load_text_model(saved)
    with torch.no_grad():
        assert torch.equal(encoder(collate(TEXTS)), again(collate(TEXTS)))
    other, _, length = load_text_model(saved, pooling="cls", normalize=True, max_length=8)
    assert (other.pooling, other.normalize, length) == ("cls", True, 8)


def _broken(saved: Path, tmp_path: Path, damage) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(saved, folder)
    damage(folder)
    return folder


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda f: (f / "config.json").unlink(), ["config.json", "missing"]),
        (lambda f: (f / "config.json").write_text("{not json"), ["config.json", "not a JSON"]),
        (lambda f: (f / "config.json").write_text("{}"), ["config.json", "no model_type"]),
        (
            lambda f: [(f / n).unlink() for n in ("tokenizer.json", "tokenizer_config.json")],
            ["no tokenizer", "tokenizer.json"],
        ),
        (lambda f: (f / "model.safetensors").write_bytes(b"broken"), ["the model does not load"]),
        (lambda f: (f / TEXT_SETTINGS).write_text("[1"), [TEXT_SETTINGS, "not JSON"]),
    ],
)
def test_a_broken_model_folder_is_named_in_one_line(saved, tmp_path, damage, named) -> None:
    folder = _broken(saved, tmp_path, damage)
    with pytest.raises(TextModelError) as caught:
        load_text_model(folder)
    message = str(caught.value)
    assert "\n" not in message and str(folder) in message
    for part in named:
        assert part in message, message


def test_a_file_or_a_bad_length_is_refused(saved: Path, tmp_path: Path) -> None:
    file = tmp_path / "model.bin"
    file.write_bytes(b"")
    with pytest.raises(TextModelError, match="not a folder"):
        load_text_model(file)
    with pytest.raises(
        TextModelError, match="max_length must be an integer from 2 to the model's 32"
    ):
        load_text_model(saved, max_length=33)
