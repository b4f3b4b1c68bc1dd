"""Batches of any structure: moved to a device, joined, and through every objective."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, UserDict, namedtuple

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_sequence
from torch.utils.data import DataLoader, Dataset

from contrastkit import ContrastiveLoss, InfoNCELoss, SupConLoss, TripletLoss
from contrastkit.models import SiameseNetwork
from contrastkit.training import (
    LabelObjective,
    PairObjective,
    Trainer,
    TripletObjective,
    TwoViewObjective,
    batch_size,
    embed_parts,
    join,
    to_device,
)

META = torch.device("meta")


class Encoding(UserDict):
    """Like a Hugging Face ``BatchEncoding``: a ``UserDict`` with attributes of its own."""

    def __init__(self, data=None, n_sequences=None):
        super().__init__(data)
        self.n_sequences = n_sequences

    def __getattr__(self, name):
        try:
            return self.data[name]
        except KeyError:
            raise AttributeError(name) from None


class Tokens(dict):
    """A ``dict`` subclass of tokenized text."""


Pair = namedtuple("Pair", ["left", "right"])


@dataclasses.dataclass(frozen=True)
class Sample:
    x: torch.Tensor
    name: str
    size: int = dataclasses.field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "size", int(self.x.shape[0]))


def leaves(batch):
    """Every tensor in a nested batch, depth first."""
    if isinstance(batch, torch.Tensor):
        return [batch]
    if isinstance(batch, dict | UserDict):
        return [t for v in batch.values() for t in leaves(v)]
    if isinstance(batch, list | tuple):
        return [t for v in batch for t in leaves(v)]
    if dataclasses.is_dataclass(batch):
        return [t for f in dataclasses.fields(batch) for t in leaves(getattr(batch, f.name))]
    return []


# --- to_device ------------------------------------------------------------------------


def test_to_device_moves_every_tensor_of_a_nested_batch_and_keeps_the_containers():
    ids = torch.ones(2, 3, dtype=torch.long)
    batch = (
        {
            "tokens": Encoding({"input_ids": ids, "mask": ids.bool()}, n_sequences=1),
            "sub": Tokens(input_ids=ids),
            "ordered": OrderedDict(a=torch.zeros(2)),
            "text": ["a", "b"],
        },
        [Pair(torch.zeros(2), torch.ones(2)), Sample(torch.zeros(4, 2), "s")],
        torch.arange(2),
        7,
        None,
    )
    moved = to_device(batch, "meta")
    assert type(moved) is tuple and len(moved) == 5
    tokens = moved[0]["tokens"]
    assert type(tokens) is Encoding and tokens.n_sequences == 1
    assert tokens.input_ids.device == META and tokens.input_ids.dtype == torch.long
    assert type(moved[0]["sub"]) is Tokens and type(moved[0]["ordered"]) is OrderedDict
    assert moved[0]["text"] == ["a", "b"]
    pair, sample = moved[1]
    assert type(pair) is Pair and type(sample) is Sample
    assert sample.name == "s" and sample.size == 4
    assert moved[2:] == (moved[2], 7, None) and moved[2].device == META
    assert len(leaves(moved)) == len(leaves(batch)) == 8
    assert all(t.device == META for t in leaves(moved))
    # the batch given is unchanged
    assert all(t.device.type == "cpu" for t in leaves(batch))
    assert batch[0]["tokens"]["input_ids"] is ids


def test_to_device_moves_a_packed_sequence_and_objects_with_a_to_method():
    packed = pack_sequence([torch.ones(3, 2), torch.ones(2, 2)])

    class Graph:
        def __init__(self, x):
            self.x = x

        def to(self, device):
            return Graph(self.x.to(device))

    moved = to_device([packed, Graph(torch.ones(2))], torch.device("meta"))
    assert moved[0].data.device == META and moved[0].batch_sizes.device.type == "cpu"
    assert moved[1].x.device == META


def test_to_device_leaves_modules_and_read_only_mappings_usable():
    from types import MappingProxyType

    module = nn.Linear(2, 2)
    moved = to_device({"m": module, "view": MappingProxyType({"a": torch.ones(1)})}, "meta")
    assert moved["m"] is module and module.weight.device.type == "cpu"
    assert moved["view"] == {"a": moved["view"]["a"]} and moved["view"]["a"].device == META


# --- join, batch_size, embed_parts -----------------------------------------------------


def test_join_tensors_and_mappings_key_by_key():
    a, b = torch.randn(2, 3), torch.randn(4, 3)
    assert torch.equal(join([a, b]), torch.cat([a, b]))
    assert join([a, torch.randn(2, 4)]) is None  # another feature size
    assert join([a, b.double()]) is None
    assert join([torch.tensor(1.0), torch.tensor(2.0)]) is None  # 0-d: no samples
    assert join([]) is None
    ta = Encoding({"ids": torch.ones(2, 5), "mask": torch.ones(2, 5)}, n_sequences=1)
    tb = {"mask": torch.zeros(3, 5), "ids": torch.zeros(3, 5)}
    joined = join([ta, tb])
    assert type(joined) is Encoding and joined.n_sequences == 1
    assert torch.equal(joined["ids"], torch.cat([ta["ids"], tb["ids"]]))
    assert torch.equal(joined["mask"], torch.cat([ta["mask"], tb["mask"]]))
    assert ta["ids"].shape == (2, 5)  # the first part is unchanged
    assert join([ta, {"ids": torch.ones(3, 7), "mask": torch.ones(3, 7)}]) is None  # padding
    assert join([ta, {"ids": torch.ones(3, 5)}]) is None  # other keys
    assert join([{"ids": torch.ones(2, 5), "text": "ab"}] * 2) is None  # not all tensors
    assert join([ta, torch.ones(2, 5)]) is None  # a mapping and a tensor


def test_batch_size_of_tensors_and_mappings():
    assert batch_size(torch.zeros(5, 2)) == 5
    assert batch_size({"text": ["a"], "ids": torch.zeros(3, 9)}) == 3
    assert batch_size(Encoding({"ids": torch.zeros(4, 2)})) == 4
    assert batch_size([torch.tensor(1.0), (torch.zeros(6),)]) == 6
    for bad in ({"text": ["a"]}, torch.tensor(1.0), "text"):
        with pytest.raises(ValueError, match="must hold a tensor of at least one dimension"):
            batch_size(bad)


class BagOfTokens(nn.Module):
    """A text encoder taking tokenized text (a mapping): masked mean of token embeddings."""

    def __init__(self, vocabulary=20, dim=4, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.embedding = nn.Embedding(vocabulary, 8)
        self.project = nn.Linear(8, dim)
        self.calls = []

    def forward(self, tokens):
        assert isinstance(tokens, dict | UserDict), type(tokens)
        self.calls.append(tuple(tokens["input_ids"].shape))
        mask = tokens["attention_mask"].unsqueeze(-1).float()
        pooled = (self.embedding(tokens["input_ids"]) * mask).sum(1) / mask.sum(1)
        return self.project(pooled)


def tokens(n, length, seed, cls=Encoding):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 20, (n, length), generator=g)
    mask = torch.ones(n, length, dtype=torch.long)
    mask[:, length - 1 - seed % 2 :] = 0  # some padding
    mask[:, 0] = 1
    return cls({"input_ids": ids * mask, "attention_mask": mask})


def test_embed_parts_joins_when_it_can_and_embeds_each_part_when_it_cannot():
    model = BagOfTokens()
    same = [tokens(3, 6, 0), tokens(2, 6, 1), tokens(3, 6, 2)]
    out = embed_parts(model, same)
    assert model.calls == [(8, 6)]  # one pass
    model.calls.clear()
    separately = [model(part) for part in same]
    for got, expected in zip(out, separately, strict=True):
        torch.testing.assert_close(got, expected)
    model.calls.clear()
    ragged = [tokens(3, 6, 0), tokens(3, 9, 1)]
    out = embed_parts(model, ragged)
    assert model.calls == [(3, 6), (3, 9)]
    assert [tuple(e.shape) for e in out] == [(3, 4), (3, 4)]


def test_embed_parts_needs_a_tensor_from_a_joined_batch():
    class Pairs(nn.Module):
        def forward(self, x):
            return x, x

    with pytest.raises(TypeError, match=r"must return a tensor of embeddings.*got tuple"):
        embed_parts(Pairs(), [torch.ones(2, 3), torch.ones(2, 3)])


# --- objectives on tokenized text ------------------------------------------------------


@pytest.mark.parametrize("lengths", [(6, 6, 6), (5, 7, 9)], ids=["one-length", "ragged"])
def test_triplet_objective_on_tokenized_text(lengths):
    model = BagOfTokens()
    batch = [tokens(4, n, seed) for seed, n in enumerate(lengths)]
    loss = TripletLoss(margin=1.0)
    value = TripletObjective(loss)(model, batch)["loss"]
    assert len(model.calls) == (1 if len(set(lengths)) == 1 else 3)
    expected = loss(*(model(part) for part in batch))
    torch.testing.assert_close(value, expected)
    value.backward()
    assert model.embedding.weight.grad is not None


def test_pair_label_and_two_view_objectives_on_tokenized_text():
    model = BagOfTokens()
    a, b = tokens(4, 6, 0), tokens(4, 8, 1)
    y = torch.tensor([1, 0, 1, 0])
    value = PairObjective(ContrastiveLoss(margin=1.0))(model, (a, b, y))["loss"]
    torch.testing.assert_close(value, ContrastiveLoss(margin=1.0)(model(a), model(b), y))
    # a SiameseNetwork whose encoder takes tokenized text: model(x) per input
    siamese = SiameseNetwork(BagOfTokens())
    value = PairObjective(ContrastiveLoss(margin=1.0))(siamese, (a, b, y))["loss"]
    expected = ContrastiveLoss(margin=1.0)(siamese(a), siamese(b), y)
    torch.testing.assert_close(value, expected)
    labels = torch.tensor([0, 0, 1, 1])
    value = LabelObjective(SupConLoss())(model, (a, labels))["loss"]
    torch.testing.assert_close(value, SupConLoss()(model(a), labels))
    out = model(a)
    value = TwoViewObjective(InfoNCELoss())(model, (a, labels))["loss"]
    torch.testing.assert_close(value, InfoNCELoss()(out[0::2], out[1::2]))
    with pytest.raises(ValueError, match="consecutive same-class pairs"):
        TwoViewObjective(InfoNCELoss())(model, (tokens(3, 6, 0), torch.tensor([0, 0, 1])))


class TextTriplets(Dataset):
    """Triplets of token sequences whose lengths vary from sample to sample."""

    def __init__(self, n=48, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.topics = torch.randint(0, 4, (n,), generator=g)
        self.lengths = torch.randint(3, 9, (n, 3), generator=g)
        self.n = n

    def __len__(self):
        return self.n

    def text(self, topic, length, seed):
        g = torch.Generator().manual_seed(seed)
        return 1 + 4 * topic + torch.randint(0, 4, (int(length),), generator=g)

    def __getitem__(self, i):
        topic = int(self.topics[i])
        other = (topic + 1 + i % 3) % 4
        a, p, n = self.lengths[i]
        return (
            self.text(topic, a, 3 * i),
            self.text(topic, p, 3 * i + 1),
            self.text(other, n, 3 * i + 2),
        )


def pad(texts):
    length = max(len(t) for t in texts)
    ids = torch.zeros(len(texts), length, dtype=torch.long)
    mask = torch.zeros(len(texts), length, dtype=torch.long)
    for row, text in enumerate(texts):
        ids[row, : len(text)], mask[row, : len(text)] = text, 1
    return Encoding({"input_ids": ids, "attention_mask": mask})


def collate_triplets(samples):
    return tuple(pad(list(part)) for part in zip(*samples, strict=True))


def test_the_trainer_trains_a_text_model_on_tokenized_triplets(tmp_path):
    model = BagOfTokens()
    loader = DataLoader(TextTriplets(), batch_size=8, shuffle=True, collate_fn=collate_triplets)
    trainer = Trainer(
        model,
        TripletObjective(TripletLoss(margin=1.0)),
        torch.optim.Adam(model.parameters(), lr=5e-2),
        loader,
        epochs=5,
        val_loader=DataLoader(TextTriplets(seed=1), batch_size=16, collate_fn=collate_triplets),
        run_dir=tmp_path,
        progress=False,
    )
    history = trainer.fit()
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert len(set(model.calls)) > 3  # padded to several lengths, embedded part by part
