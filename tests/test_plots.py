"""The figures: what they draw, checked against numpy and scikit-learn, and bad input."""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score, roc_curve

from contrastkit import plots
from contrastkit.plots import (
    plot_anomaly_roc,
    plot_distance_histograms,
    plot_embedding,
    plot_history,
    plot_loss_curve,
    plot_roc,
    plot_score_histograms,
    save_figure,
    subplots,
)

RED, BLUE = to_rgba("tab:red"), to_rgba("tab:blue")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def render(fig: Figure) -> None:
    """Draw the figure (layout included): any matplotlib warning fails the test."""
    fig.savefig(io.BytesIO(), format="png")


def pairs(seed: int = 0, n_similar: int = 60, n_dissimilar: int = 90):
    rng = np.random.default_rng(seed)
    d = np.concatenate([rng.gamma(2.0, 0.2, n_similar), rng.normal(1.2, 0.3, n_dissimilar)])
    same = np.concatenate([np.ones(n_similar, dtype=int), np.zeros(n_dissimilar, dtype=int)])
    return np.abs(d), same


def clusters(n_per_class: int = 10, dim: int = 8, n_classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    z = np.concatenate([rng.normal(3.0 * c, 1.0, (n_per_class, dim)) for c in range(n_classes)])
    return z, np.repeat(np.arange(n_classes), n_per_class)


HISTORY = [
    {"epoch": 1, "train_loss": 0.9, "val_loss": 1.0, "val_roc_auc": 0.70},
    {"epoch": 2, "train_loss": 0.5, "val_roc_auc": 0.80},
    {"epoch": 3, "train_loss": 0.3, "val_loss": 0.4, "val_roc_auc": 0.90},
]

# each plotting function with valid arguments, to check the shared contract
CALLS = {
    "loss_curve": lambda ax=None: plot_loss_curve(ax=ax),
    "embedding": lambda ax=None: plot_embedding(*clusters(dim=2), ax=ax),
    "embedding_pca": lambda ax=None: plot_embedding(*clusters(), ax=ax),
    "roc": lambda ax=None: plot_roc(*pairs(), ax=ax),
    "roc_log": lambda ax=None: plot_roc(*pairs(), far_axis="log", ax=ax),
    "anomaly_roc": lambda ax=None: plot_anomaly_roc(
        {"knn": pairs()[0], "centroid": -pairs()[0]}, pairs()[1], ax=ax
    ),
    "histograms": lambda ax=None: plot_distance_histograms(*pairs(), threshold=0.7, ax=ax),
    "history": lambda ax=None: plot_history(HISTORY, ax=ax),
}


# --- the shared contract ---------------------------------------------------------


@pytest.mark.parametrize("name", CALLS)
def test_returns_a_new_figure_and_axes(name):
    fig, ax = CALLS[name]()
    assert isinstance(fig, Figure)
    assert isinstance(ax, Axes)
    assert ax.figure is fig
    assert fig.get_layout_engine() is not None  # constrained layout
    assert ax.get_title()
    assert ax.get_legend() is not None
    render(fig)


@pytest.mark.parametrize("name", CALLS)
def test_draws_into_a_given_axes(name):
    fig = Figure()
    given = fig.add_subplot(1, 2, 2)
    out_fig, out_ax = CALLS[name](given)
    assert out_ax is given
    assert out_fig is fig
    assert len(fig.axes) == 1
    assert given.lines or given.collections or given.patches
    render(fig)


@pytest.mark.parametrize("name", CALLS)
def test_rejects_an_ax_that_is_not_axes(name):
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes"):
        CALLS[name]("not an axes")


def test_module_exports():
    assert sorted(plots.__all__) == [
        "plot_anomaly_roc",
        "plot_distance_histograms",
        "plot_embedding",
        "plot_history",
        "plot_loss_curve",
        "plot_neighbours",
        "plot_roc",
        "plot_score_histograms",
        "plot_similarity_scatter",
        "save_figure",
        "subplots",
    ]


def test_similarity_scatter_draws_each_pair_and_checks_its_inputs():
    _, ax = plots.plot_similarity_scatter(
        [0.5, -0.2], [4.0, 1.0], correlations={"spearman": 1.0, "pearson": 0.5}
    )
    assert ax.collections[0].get_offsets().tolist() == [[4.0, 0.5], [1.0, -0.2]]
    assert ax.get_title() == "test pairs: Spearman 1.000, Pearson 0.500"
    with pytest.raises(ValueError, match="one value per pair, got 2 and 3"):
        plots.plot_similarity_scatter([0.5, 0.2], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="gold must be finite"):
        plots.plot_similarity_scatter([0.5, 0.2], [1.0, float("nan")])
    with pytest.raises(TypeError, match="similarity"):
        plots.plot_similarity_scatter(["a", "b"], [1.0, 2.0])


# --- plot_loss_curve -------------------------------------------------------------


@pytest.mark.parametrize("margin", [0.5, 1.0, 2.5])
def test_loss_curve_values(margin):
    _, ax = plot_loss_curve(margin=margin)
    similar, dissimilar, marker = ax.lines
    d = similar.get_xdata()
    assert d[0] == 0.0 and d[-1] == pytest.approx(2 * margin)
    assert margin in d  # the kink is on the grid
    np.testing.assert_allclose(similar.get_ydata(), 0.5 * d**2, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(dissimilar.get_xdata(), d)
    expected = 0.5 * np.maximum(margin - d, 0.0) ** 2
    np.testing.assert_allclose(dissimilar.get_ydata(), expected, rtol=1e-12, atol=1e-15)
    assert list(marker.get_xdata()) == [margin, margin]
    assert marker.get_label() == f"margin m = {margin:g}"
    assert ax.get_xlim() == pytest.approx((0.0, 2 * margin))


def test_loss_curve_styles_and_labels():
    _, ax = plot_loss_curve()
    similar, dissimilar, marker = ax.lines
    assert to_rgba(similar.get_color()) == RED and similar.get_linestyle() == "--"
    assert to_rgba(dissimilar.get_color()) == BLUE and dissimilar.get_linestyle() == "-"
    assert marker.get_linestyle() == ":"
    assert "y = 1" in similar.get_label() and "y = 0" in dissimilar.get_label()
    assert ax.get_xlabel() == "distance d"
    assert "Hadsell" in ax.get_title()
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == [line.get_label() for line in ax.lines]


def test_loss_curve_caffe_legacy():
    _, ax = plot_loss_curve(margin=2.0, caffe_legacy=True)
    similar, dissimilar, marker = ax.lines
    d = dissimilar.get_xdata()
    assert d[-1] == pytest.approx(2 * math.sqrt(2.0))
    np.testing.assert_allclose(similar.get_ydata(), 0.5 * d**2, rtol=1e-12, atol=1e-15)
    expected = 0.5 * np.maximum(2.0 - d**2, 0.0)
    np.testing.assert_allclose(dissimilar.get_ydata(), expected, rtol=1e-12, atol=1e-12)
    assert marker.get_xdata()[0] == pytest.approx(math.sqrt(2.0))
    assert marker.get_label().startswith("margin m = 2")
    assert "legacy" in ax.get_title()


def test_loss_curve_max_distance():
    _, ax = plot_loss_curve(margin=1.0, max_distance=3.0)
    assert ax.lines[0].get_xdata()[-1] == 3.0
    assert ax.get_xlim() == (0.0, 3.0)
    # a margin beyond the plotted range has no marker
    _, ax = plot_loss_curve(margin=5.0, max_distance=3.0)
    assert len(ax.lines) == 2
    np.testing.assert_allclose(
        ax.lines[1].get_ydata(), 0.5 * (5.0 - ax.lines[1].get_xdata()) ** 2, rtol=1e-12
    )


def test_loss_curve_uses_the_library_loss(monkeypatch):
    calls = []
    original = plots.contrastive_loss

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(plots, "contrastive_loss", spy)
    plot_loss_curve(margin=1.5, caffe_legacy=True)
    assert len(calls) == 2
    assert all(c["reduction"] == "none" and c["margin"] == 1.5 for c in calls)
    assert all(c["caffe_legacy"] is True for c in calls)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"margin": 0.0}, ValueError, "margin must be > 0, got 0.0"),
        ({"margin": -1.0}, ValueError, "margin must be > 0"),
        ({"margin": math.nan}, ValueError, "margin must be finite"),
        ({"margin": math.inf}, ValueError, "margin must be finite"),
        ({"margin": "1"}, TypeError, "margin must be a real number, got str"),
        ({"margin": True}, TypeError, "margin must be a real number, got bool"),
        ({"max_distance": 0}, ValueError, "max_distance must be > 0"),
        ({"max_distance": -2.0}, ValueError, "max_distance must be > 0"),
        ({"max_distance": math.inf}, ValueError, "max_distance must be finite"),
        ({"caffe_legacy": "yes"}, TypeError, "caffe_legacy must be a bool"),
    ],
)
def test_loss_curve_bad_input(kwargs, error, pattern):
    with pytest.raises(error, match=re.escape(pattern)):
        plot_loss_curve(**kwargs)


# --- plot_embedding --------------------------------------------------------------


def test_embedding_identity_draws_the_points():
    z, y = clusters(dim=2)
    tensor = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    _, ax = plot_embedding(tensor, torch.tensor(y))
    assert ax.get_title() == "network output (2-D)"
    assert len(ax.collections) == 3
    for c, collection in enumerate(ax.collections):
        np.testing.assert_array_equal(collection.get_offsets(), z[y == c])
    assert ax.get_aspect() == 1.0
    assert ax.get_adjustable() == "datalim"
    legend = ax.get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["0", "1", "2"]


def test_embedding_colours_differ_per_class():
    _, ax = plot_embedding(*clusters(dim=2))
    colours = {tuple(c.get_facecolor()[0]) for c in ax.collections}
    assert len(colours) == 3


@pytest.mark.parametrize(
    "names", [{0: "cat", 1: "dog", 2: "owl"}, ["cat", "dog", "owl"], ("cat", "dog", "owl")]
)
def test_embedding_class_names(names):
    _, ax = plot_embedding(*clusters(dim=2), class_names=names)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["cat", "dog", "owl"]


def test_embedding_pca_of_a_wide_embedding():
    z, y = clusters(dim=16)
    _, ax = plot_embedding(torch.tensor(z, dtype=torch.float32), y)  # auto -> PCA
    assert ax.get_title() == "PCA of the 16-D embedding"
    assert ax.get_xlabel().startswith("PC 1") and ax.get_ylabel().startswith("PC 2")
    expected = PCA(n_components=2).fit_transform(z.astype(np.float32).astype(np.float64))
    for c, collection in enumerate(ax.collections):
        offsets = np.asarray(collection.get_offsets())
        assert offsets.shape == (10, 2)
        # the sign of a principal axis is arbitrary: compare up to a sign per axis
        np.testing.assert_allclose(np.abs(offsets), np.abs(expected[y == c]), atol=1e-6)


def test_embedding_pca_of_a_2d_embedding_on_request():
    z, y = clusters(dim=2)
    _, ax = plot_embedding(z, y, method="pca")
    assert ax.get_title() == "PCA of the 2-D embedding"


def test_embedding_pca_of_constant_embeddings_draws_without_warning():
    fig, ax = plot_embedding(np.ones((4, 3)), [0, 0, 1, 1])
    assert ax.get_xlabel() == "PC 1"
    render(fig)


def test_embedding_tsne():
    z, y = clusters(n_per_class=10, dim=8)
    fig, ax = plot_embedding(z, y, method="tsne", seed=1)
    assert ax.get_title() == "t-SNE of the 8-D embedding"
    offsets = [np.asarray(c.get_offsets()) for c in ax.collections]
    assert [o.shape for o in offsets] == [(10, 2)] * 3
    assert all(np.isfinite(o).all() for o in offsets)
    render(fig)


def test_embedding_many_classes_skip_the_legend():
    z, y = clusters(n_per_class=2, dim=2, n_classes=25)
    fig, ax = plot_embedding(z, y)
    assert len(ax.collections) == 25
    assert ax.get_legend() is None
    render(fig)


@pytest.mark.parametrize(
    ("embeddings", "labels", "kwargs", "error", "pattern"),
    [
        (np.zeros((4, 1)), [0, 0, 1, 1], {}, ValueError, "embeddings must have at least 2"),
        (np.zeros(4), [0, 0, 1, 1], {}, ValueError, "embeddings must be 2-D"),
        (np.zeros((0, 2)), [], {}, ValueError, "embeddings must hold at least one row"),
        ([[0.0, math.nan]] * 2, [0, 1], {}, ValueError, "embeddings must be finite"),
        ([["a", "b"]], [0], {}, TypeError, "embeddings must hold real numbers"),
        ([[0.0, 1.0], [2.0]], [0, 1], {}, ValueError, "embeddings must be a rectangular array"),
        (np.zeros((4, 2)), [0, 1, 1], {}, ValueError, r"labels must have shape \(4,\)"),
        (np.zeros((2, 2)), [0.0, 1.0], {}, TypeError, "labels must be integer class labels"),
        (np.zeros((4, 3)), [0, 0, 1, 1], {"method": "identity"}, ValueError, "identity"),
        (np.zeros((4, 3)), [0, 0, 1, 1], {"method": "umap"}, ValueError, "method must be one"),
        (np.zeros((1, 3)), [0], {"method": "pca"}, ValueError, "at least 2 embeddings"),
        (np.ones((5, 3)), [0] * 5, {"method": "tsne"}, ValueError, "two distinct embeddings"),
        (np.zeros((2, 2)), [0, 1], {"class_names": {0: "a"}}, ValueError, "class_names"),
        (np.zeros((2, 2)), [0, 2], {"class_names": ["a", "b"]}, ValueError, "class_names"),
        (np.zeros((2, 2)), [0, 1], {"class_names": "ab"}, TypeError, "class_names"),
        (np.zeros((2, 2)), [0, 1], {"seed": -1}, ValueError, "seed must be >= 0"),
        (np.zeros((2, 2)), [0, 1], {"seed": 0.5}, TypeError, "seed must be an int"),
    ],
)
def test_embedding_bad_input(embeddings, labels, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        plot_embedding(embeddings, labels, **kwargs)


# --- plot_roc --------------------------------------------------------------------


def brute_force_tar(d, same, far):
    """Best TAR over every threshold t (rule d <= t) whose FAR does not exceed ``far``."""
    best = 0.0
    for t in np.unique(d):
        accepted = d <= t
        if accepted[same == 0].mean() <= far:
            best = max(best, accepted[same == 1].mean())
    return best


def test_roc_line_matches_sklearn():
    d, same = pairs()
    _, ax = plot_roc(torch.tensor(d), torch.tensor(same), label="model")
    fpr, tpr, _ = roc_curve(same, -d)
    line = ax.lines[0]
    np.testing.assert_array_equal(line.get_xdata(), fpr)
    np.testing.assert_array_equal(line.get_ydata(), tpr)
    auc = roc_auc_score(same, -d)
    assert line.get_label() == f"model (AUC = {auc:.3f})"
    assert ax.get_xscale() == "linear"
    chance = ax.lines[1]
    assert list(chance.get_xdata()) == [0, 1] and list(chance.get_ydata()) == [0, 1]


@pytest.mark.parametrize("fars", [(0.1, 0.01), (0.05,), ()])
def test_roc_marks_tar_at_far(fars):
    d, same = pairs(seed=3)
    d = np.round(d, 1)  # ties: several pairs per threshold
    _, ax = plot_roc(d, same, mark_fars=fars)
    marks = [line for line in ax.lines if line.get_marker() == "o"]
    assert len(marks) == len(fars)
    notes = [text for text in ax.texts if text.get_text().startswith("TAR")]
    assert len(notes) == len(fars)
    for far, mark, note in zip(fars, marks, notes, strict=True):
        tar = brute_force_tar(d, same, far)
        assert mark.get_ydata()[0] == pytest.approx(tar)
        assert mark.get_xdata()[0] <= far
        assert note.get_text() == f"TAR = {tar:.3f} @ FAR ≤ {far:g}"


def test_roc_perfect_separation():
    _, ax = plot_roc([0.1, 0.2, 0.8, 0.9], [True, True, False, False], mark_fars=(0.01,))
    assert ax.lines[0].get_label() == "ROC (AUC = 1.000)"
    marks = [line for line in ax.lines if line.get_marker() == "o"]
    assert marks[0].get_ydata()[0] == 1.0


def test_roc_several_curves_share_one_chance_line():
    d, same = pairs()
    fig, ax = plot_roc(d, same, label="A")
    plot_roc(d + 0.3 * np.random.default_rng(1).normal(size=d.size), same, label="B", ax=ax)
    chance = [line for line in ax.lines if line.get_label() == "chance"]
    assert len(chance) == 1
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend[0].startswith("A (AUC") and legend[1].startswith("B (AUC")
    assert legend[2] == "chance"
    render(fig)


@pytest.mark.parametrize(
    ("distances", "same", "kwargs", "error", "pattern"),
    [
        ([0.1, 0.2], [1, 1], {}, ValueError, "same must contain both similar"),
        ([0.1, 0.2], [0, 0], {}, ValueError, "same must contain both similar"),
        ([0.1, 0.2], [0, 2], {}, ValueError, r"same must be 0 .* or 1 .*, got other values \[2\]"),
        ([0.1, 0.2], [0.0, 0.5], {}, ValueError, "same must be 0"),
        ([0.1, 0.2, 0.3], [0, 1], {}, ValueError, r"same must have shape \(3,\)"),
        ([0.1, math.nan], [0, 1], {}, ValueError, "distances must be finite"),
        ([[0.1, 0.2]], [[0, 1]], {}, ValueError, "distances must be 1-D"),
        ([], [], {}, ValueError, "distances must hold at least one pair"),
        ("0.1", [0], {}, TypeError, "distances must be a tensor"),
        ([0.1, 0.2], [0, 1], {"label": 3}, TypeError, "label must be a str"),
        ([0.1, 0.2], [0, 1], {"mark_fars": (0.0,)}, ValueError, r"mark_fars must lie in \(0, 1\]"),
        ([0.1, 0.2], [0, 1], {"mark_fars": (1.5,)}, ValueError, "mark_fars must lie in"),
        ([0.1, 0.2], [0, 1], {"mark_fars": 0.01}, TypeError, "mark_fars must be a sequence"),
    ],
)
def test_roc_bad_input(distances, same, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        plot_roc(distances, same, **kwargs)


# --- plot_distance_histograms ----------------------------------------------------


def test_histograms_match_numpy():
    d, same = pairs()
    _, ax = plot_distance_histograms(torch.tensor(d, dtype=torch.float64), same, bins=20)
    edges = np.histogram_bin_edges(d, bins=20)
    similar, dissimilar = ax.patches
    for patch, value in ((similar, 1), (dissimilar, 0)):
        values, patch_edges, _ = patch.get_data()
        np.testing.assert_allclose(patch_edges, edges)
        expected, _ = np.histogram(d[same == value], bins=edges, density=True)
        np.testing.assert_allclose(values, expected)
        assert np.sum(values * np.diff(edges)) == pytest.approx(1.0)
    assert similar.get_label() == "similar pairs (y = 1)"
    assert dissimilar.get_label() == "dissimilar pairs (y = 0)"
    assert to_rgba(similar.get_facecolor())[:3] == RED[:3]
    assert to_rgba(dissimilar.get_facecolor())[:3] == BLUE[:3]
    assert ax.get_ylabel() == "density"


def test_histograms_threshold_and_edges():
    d, same = pairs()
    edges = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
    _, ax = plot_distance_histograms(d, same, threshold=0.75, bins=edges)
    (line,) = ax.lines
    assert list(line.get_xdata()) == [0.75, 0.75]
    assert line.get_label() == "threshold = 0.75"
    for patch, value in zip(ax.patches, (1, 0), strict=True):
        values, patch_edges, _ = patch.get_data()
        np.testing.assert_array_equal(patch_edges, edges)
        np.testing.assert_allclose(values, np.histogram(d[same == value], edges, density=True)[0])
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["similar pairs (y = 1)", "dissimilar pairs (y = 0)", "threshold = 0.75"]


def test_histograms_one_class_only():
    fig, ax = plot_distance_histograms([0.5, 0.7, 0.9], [0, 0, 0], bins=3)
    assert [p.get_label() for p in ax.patches] == ["dissimilar pairs (y = 0)"]
    render(fig)


@pytest.mark.parametrize(
    ("distances", "same", "kwargs", "error", "pattern"),
    [
        ([0.1, 0.2], [0, 3], {}, ValueError, "same must be 0"),
        ([0.1, 0.2], [0], {}, ValueError, r"same must have shape \(2,\)"),
        ([0.1, math.inf], [0, 1], {}, ValueError, "distances must be finite"),
        ([0.1, 0.2], [0, 1], {"bins": 0}, ValueError, "bins must be >= 1"),
        ([0.1, 0.2], [0, 1], {"bins": "auto"}, TypeError, "bins must be a number of bins"),
        ([0.1, 0.2], [0, 1], {"bins": [1.0, 0.5]}, ValueError, "bins as edges must increase"),
        ([0.1, 0.2], [0, 1], {"bins": [1.0]}, ValueError, "bins as edges must be 1-D"),
        ([0.1, 0.2], [0, 1], {"threshold": math.nan}, ValueError, "threshold must be finite"),
        ([0.1, 0.2], [0, 1], {"threshold": "0.5"}, TypeError, "threshold must be a real number"),
    ],
)
def test_histograms_bad_input(distances, same, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        plot_distance_histograms(distances, same, **kwargs)


# --- plot_history ----------------------------------------------------------------


def test_history_default_keys_are_the_losses():
    _, ax = plot_history(HISTORY)
    train, val = ax.lines
    assert (train.get_label(), val.get_label()) == ("train_loss", "val_loss")
    np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(train.get_ydata(), [0.9, 0.5, 0.3])
    np.testing.assert_array_equal(val.get_ydata(), [1.0, math.nan, 0.4])  # a gap at epoch 2
    assert train.get_linestyle() == "-" and val.get_linestyle() == "--"
    assert train.get_color() == val.get_color()
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "loss"


def test_history_chosen_keys():
    _, ax = plot_history(HISTORY, keys=["val_roc_auc", "train_loss"])
    auc, loss = ax.lines
    assert auc.get_label() == "val_roc_auc" and auc.get_linestyle() == "--"
    np.testing.assert_array_equal(auc.get_ydata(), [0.7, 0.8, 0.9])
    assert auc.get_color() != loss.get_color()
    assert ax.get_ylabel() == "value"


def test_history_non_finite_values_are_gaps():
    history = [{"epoch": e, "train_loss": v} for e, v in enumerate([1.0, math.inf, 0.5], 1)]
    fig, ax = plot_history(history)
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [1.0, math.inf, 0.5])
    render(fig)
    assert ax.get_ylim()[1] < 2.0


def test_history_accepts_tensor_and_numpy_values():
    history = [
        {"epoch": np.int64(1), "train_loss": torch.tensor(0.5)},
        {"epoch": 2, "train_loss": np.float32(0.25)},
    ]
    _, ax = plot_history(history)
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), [0.5, 0.25])


@pytest.mark.parametrize(
    ("history", "kwargs", "error", "pattern"),
    [
        ([], {}, ValueError, "history must hold at least one epoch"),
        ({"epoch": 1}, {}, TypeError, "history must be a list"),
        ([1, 2], {}, TypeError, r"history\[0\] must be a dict"),
        (
            [{"epoch": 1, "loss": 1.0}, {"loss": 0.5}],
            {},
            ValueError,
            r'history\[1\] has no "epoch"',
        ),
        ([{"epoch": "one", "loss": 1.0}], {}, TypeError, r'history\[0\]\["epoch"\]'),
        ([{"epoch": math.nan, "loss": 1.0}], {}, ValueError, "must be finite"),
        ([{"epoch": 1, "acc": 0.5}], {}, ValueError, r'no key containing "loss".*\[\'acc\'\]'),
        (HISTORY, {"keys": ["val_acc"]}, ValueError, r"keys \['val_acc'\] are not in history, av"),
        (HISTORY, {"keys": ["epoch"]}, ValueError, "are not in history"),
        (HISTORY, {"keys": "train_loss"}, TypeError, "keys must be a sequence"),
        (HISTORY, {"keys": []}, ValueError, "keys must name at least one key"),
        ([{"epoch": 1, "loss": "low"}], {}, TypeError, r"history\[0\]\['loss'\] must be a real"),
    ],
)
def test_history_bad_input(history, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        plot_history(history, **kwargs)


# --- save_figure -----------------------------------------------------------------


def test_save_figure_writes_a_png(tmp_path):
    fig, _ = plot_loss_curve()
    path = save_figure(fig, tmp_path / "loss.png", dpi=50)
    assert path == tmp_path / "loss.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert [p.name for p in tmp_path.iterdir()] == ["loss.png"]


def test_save_figure_accepts_a_str_path(tmp_path):
    fig, _ = plot_history(HISTORY)
    save_figure(fig, str(tmp_path / "history.PNG"))
    assert (tmp_path / "history.PNG").read_bytes()[:8] == PNG_SIGNATURE


def test_save_figure_refuses_to_overwrite(tmp_path):
    path = tmp_path / "roc.png"
    path.write_bytes(b"keep me")
    fig, _ = plot_roc(*pairs())
    with pytest.raises(FileExistsError, match=re.escape(str(path))):
        save_figure(fig, path)
    assert path.read_bytes() == b"keep me"
    save_figure(fig, path, overwrite=True, dpi=40)
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_save_figure_creates_no_folder(tmp_path):
    fig, _ = plot_loss_curve()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_figure(fig, tmp_path / "missing" / "loss.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("fig", "name", "kwargs", "error", "pattern"),
    [
        ("fig", "a.png", {}, TypeError, "fig must be a matplotlib Figure"),
        (None, "a.pdf", {}, ValueError, "path must end in .png"),
        (None, 3, {}, TypeError, "path must be a str or os.PathLike"),
        (None, "a.png", {"dpi": 0}, ValueError, "dpi must be > 0"),
        (None, "a.png", {"overwrite": 1}, TypeError, "overwrite must be a bool"),
    ],
)
def test_save_figure_bad_input(tmp_path, fig, name, kwargs, error, pattern):
    fig = Figure() if fig is None else fig
    path = tmp_path / name if isinstance(name, str) else name
    with pytest.raises(error, match=pattern):
        save_figure(fig, path, **kwargs)
    assert list(tmp_path.iterdir()) == []


# --- plot_score_histograms -------------------------------------------------------


def scored(seed: int = 0, n_normal: int = 80, n_anomalies: int = 20):
    rng = np.random.default_rng(seed)
    s = np.concatenate([rng.normal(0.0, 1.0, n_normal), rng.normal(3.0, 0.7, n_anomalies)])
    is_anomaly = np.concatenate([np.zeros(n_normal, dtype=int), np.ones(n_anomalies, dtype=int)])
    return s, is_anomaly


def test_score_histograms_follow_the_shared_contract():
    fig, ax = plot_score_histograms(*scored(), threshold=1.5)
    assert isinstance(fig, Figure) and isinstance(ax, Axes) and ax.figure is fig
    assert fig.get_layout_engine() is not None
    assert ax.get_title() == "anomaly scores" and ax.get_legend() is not None
    render(fig)
    fig = Figure()
    given = fig.add_subplot(1, 2, 2)
    out_fig, out_ax = plot_score_histograms(*scored(), ax=given)
    assert out_ax is given and out_fig is fig and len(fig.axes) == 1 and given.patches
    render(fig)
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes"):
        plot_score_histograms(*scored(), ax="not an axes")


def test_score_histograms_match_numpy():
    s, is_anomaly = scored()
    _, ax = plot_score_histograms(torch.tensor(s), torch.tensor(is_anomaly, dtype=torch.bool))
    edges = np.histogram_bin_edges(s, bins=40)  # the default: 40 bins over all scores
    normal, anomalies = ax.patches
    for patch, value in ((normal, 0), (anomalies, 1)):
        values, patch_edges, _ = patch.get_data()
        np.testing.assert_allclose(patch_edges, edges)
        expected, _ = np.histogram(s[is_anomaly == value], bins=edges, density=True)
        np.testing.assert_allclose(values, expected)
        assert np.sum(values * np.diff(edges)) == pytest.approx(1.0)
    assert normal.get_label() == "normal (n = 80)"
    assert anomalies.get_label() == "anomalies (n = 20)"
    assert to_rgba(normal.get_facecolor())[:3] == BLUE[:3]
    assert to_rgba(anomalies.get_facecolor())[:3] == RED[:3]
    assert ax.get_xlabel() == "anomaly score (higher = more anomalous)"
    assert ax.get_ylabel() == "density"


def test_score_histograms_threshold_edges_and_title():
    s, is_anomaly = scored(seed=1)
    edges = [-4.0, -1.0, 0.0, 1.0, 2.5, 6.0]
    _, ax = plot_score_histograms(s, is_anomaly, bins=edges, threshold=2.0, title="k-NN scores")
    (line,) = ax.lines
    assert list(line.get_xdata()) == [2.0, 2.0]
    assert line.get_label() == "threshold = 2"
    for patch, value in zip(ax.patches, (0, 1), strict=True):
        values, patch_edges, _ = patch.get_data()
        np.testing.assert_array_equal(patch_edges, edges)
        np.testing.assert_allclose(
            values, np.histogram(s[is_anomaly == value], edges, density=True)[0]
        )
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend == ["normal (n = 80)", "anomalies (n = 20)", "threshold = 2"]
    assert ax.get_title() == "k-NN scores"


def test_score_histograms_one_class_only_and_constant_scores():
    fig, ax = plot_score_histograms([0.5, 0.7, 0.9], [False, False, False], bins=3)
    assert [p.get_label() for p in ax.patches] == ["normal (n = 3)"]
    render(fig)
    fig, ax = plot_score_histograms([1.0, 1.0], [0, 1], bins=4)
    assert [p.get_label() for p in ax.patches] == ["normal (n = 1)", "anomalies (n = 1)"]
    render(fig)


def test_score_and_distance_histograms_share_their_drawing(monkeypatch):
    calls = []
    original = plots._draw_histograms

    def spy(ax, values, groups, edges, threshold):
        calls.append([label for _, _, label in groups])
        return original(ax, values, groups, edges, threshold)

    monkeypatch.setattr(plots, "_draw_histograms", spy)
    plot_distance_histograms(*pairs())
    plot_score_histograms(*scored())
    assert calls == [
        ["similar pairs (y = 1)", "dissimilar pairs (y = 0)"],
        ["normal (n = 80)", "anomalies (n = 20)"],
    ]


@pytest.mark.parametrize(
    ("scores", "is_anomaly", "kwargs", "error", "pattern"),
    [
        ([0.1, 0.2], [0, 3], {}, ValueError, r"is_anomaly must be 0 \(normal\) or 1"),
        ([0.1, 0.2], [0], {}, ValueError, r"is_anomaly must have shape \(2,\)"),
        ([0.1, math.nan], [0, 1], {}, ValueError, "scores must be finite"),
        ([], [], {}, ValueError, "scores must hold at least one score"),
        ([True, False], [0, 1], {}, TypeError, "scores must hold real-valued scores"),
        ("0.1", [0], {}, TypeError, "scores must be a tensor"),
        ([0.1, 0.2], [0, 1], {"bins": 0}, ValueError, "bins must be >= 1"),
        ([0.1, 0.2], [0, 1], {"bins": "auto"}, TypeError, "bins must be a number of bins"),
        ([0.1, 0.2], [0, 1], {"bins": [1.0, 0.5]}, ValueError, "bins as edges must increase"),
        ([0.1, 0.2], [0, 1], {"threshold": math.inf}, ValueError, "threshold must be finite"),
        ([0.1, 0.2], [0, 1], {"threshold": "1"}, TypeError, "threshold must be a real number"),
        ([0.1, 0.2], [0, 1], {"title": 3}, TypeError, "title must be a str or None, got int"),
    ],
)
def test_score_histograms_bad_input(scores, is_anomaly, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        plot_score_histograms(scores, is_anomaly, **kwargs)


def test_score_histograms_positional_options_are_refused():
    with pytest.raises(TypeError):
        plot_score_histograms([0.1, 0.2], [0, 1], None)  # type: ignore[misc]


# --- the log FAR axis ------------------------------------------------------------


def test_roc_log_axis_draws_the_same_curve_from_the_smallest_rate():
    d, same = pairs()  # 90 dissimilar pairs: rates 0, 1/90, ...
    _, linear = plot_roc(d, same, mark_fars=(0.05,))
    _, ax = plot_roc(d, same, mark_fars=(0.05,), far_axis="log")
    assert ax.get_xscale() == "log" and linear.get_xscale() == "linear"
    left = 10.0 ** math.floor(math.log10(0.5 / 90))  # 1e-3, below 1/90
    assert ax.get_xlim() == pytest.approx((left, 1.0))
    fpr, tpr, _ = roc_curve(same, -d)
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), np.maximum(fpr, left))
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), tpr)
    chance = next(line for line in ax.lines if line.get_label() == "chance")
    np.testing.assert_allclose(chance.get_xdata(), chance.get_ydata())
    assert chance.get_xdata()[0] == pytest.approx(left) and chance.get_xdata()[-1] == 1.0
    mark = next(line for line in ax.lines if line.get_marker() == "o")
    expected = next(line for line in linear.lines if line.get_marker() == "o")
    assert mark.get_ydata()[0] == expected.get_ydata()[0] == brute_force_tar(d, same, 0.05)
    assert mark.get_xdata()[0] == max(expected.get_xdata()[0], left)
    assert "log scale" in ax.get_xlabel()


def test_roc_log_axis_keeps_the_left_edge_of_an_earlier_curve():
    d, same = pairs()
    fig, ax = plot_roc(d, same, far_axis="log", label="A")  # 90 negatives: 1e-3
    plot_roc(d[:70], same[:70], far_axis="log", label="B", ax=ax)  # 10 negatives: 1e-2
    assert ax.get_xlim()[0] == pytest.approx(1e-3)
    render(fig)


def test_roc_far_axis_bad_input():
    with pytest.raises(ValueError, match=r"far_axis must be one of \['linear', 'log'\]"):
        plot_roc(*pairs(), far_axis="logit")


# --- plot_anomaly_roc ------------------------------------------------------------


def test_anomaly_roc_draws_each_score_in_its_colour():
    s, is_anomaly = scored()
    scores = {"centroid": s, "knn": -s, "isolation": s + 1.0}
    fig, ax = plot_anomaly_roc(scores, torch.tensor(is_anomaly), title="digit 8")
    curves = [line for line in ax.lines if line.get_label() != "chance"]
    assert [c.get_label().split(" (")[0] for c in curves] == ["centroid", "knn", "isolation"]
    for curve, values in zip(curves, scores.values(), strict=True):
        fpr, tpr, _ = roc_curve(is_anomaly, values)  # higher score = more anomalous
        np.testing.assert_array_equal(curve.get_xdata(), fpr)
        np.testing.assert_array_equal(curve.get_ydata(), tpr)
        assert curve.get_label().endswith(f"(AUC = {roc_auc_score(is_anomaly, values):.3f})")
    colors = [to_rgba(c.get_color()) for c in curves]
    assert colors[:2] == [to_rgba("C2"), to_rgba("C1")]  # centroid green, knn orange
    assert colors[2] not in (to_rgba("C0"), to_rgba("C1"), to_rgba("C2"))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[-1] == "chance" and len(legend) == 4
    assert ax.get_title() == "digit 8"
    assert ax.get_xlabel() == "false positive rate (normal samples flagged)"
    render(fig)


@pytest.mark.parametrize(
    ("scores", "is_anomaly", "kwargs", "error", "pattern"),
    [
        ({}, [0, 1], {}, ValueError, "scores must hold at least one score"),
        ([0.1, 0.2], [0, 1], {}, TypeError, "scores must be a mapping"),
        ({1: [0.1, 0.2]}, [0, 1], {}, TypeError, "scores' names must be str"),
        ({"knn": [0.1, math.nan]}, [0, 1], {}, ValueError, r"scores\['knn'\]: scores must be fin"),
        ({"knn": [0.1, 0.2]}, [0, 0], {}, ValueError, "is_anomaly must contain both"),
        ({"knn": [0.1, 0.2]}, [0, 1, 1], {}, ValueError, r"is_anomaly must have shape \(2,\)"),
        ({"knn": [0.1, 0.2]}, [0, 1], {"title": 1}, TypeError, "title must be a str or None"),
        ({"knn": [0.1, 0.2]}, [0, 1], {"ax": "here"}, TypeError, "ax must be a matplotlib Axes"),
    ],
)
def test_anomaly_roc_bad_input(scores, is_anomaly, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        plot_anomaly_roc(scores, is_anomaly, **kwargs)


# --- plot_history: legend names and title ----------------------------------------


def test_history_labels_and_title():
    _, ax = plot_history(
        HISTORY, keys=["val_roc_auc"], labels={"val_roc_auc": "validation ROC-AUC"}, title="val"
    )
    assert ax.lines[0].get_label() == "validation ROC-AUC" and ax.get_title() == "val"
    _, ax = plot_history(HISTORY, labels={"val_loss": "validation loss"})
    assert [line.get_label() for line in ax.lines] == ["train_loss", "validation loss"]


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"labels": ["a"]}, TypeError, "labels must be a mapping from key to legend name"),
        ({"labels": {"train_loss": 1}}, TypeError, "labels must be a mapping"),
        ({"title": 2}, TypeError, "title must be a str or None, got int"),
    ],
)
def test_history_bad_labels_and_title(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        plot_history(HISTORY, **kwargs)


# --- text is drawn as written ----------------------------------------------------

DOLLARS = r"$\foo$"  # mathtext would fail on the unknown command \foo


def test_a_class_named_like_mathtext_renders_as_written():
    z, y = clusters(dim=2)
    fig, ax = plot_embedding(z, y, class_names=[DOLLARS, "b$", "$c"])
    render(fig)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [DOLLARS, "b$", "$c"]
    assert not any(t.get_parse_math() for t in ax.get_legend().get_texts())


@pytest.mark.parametrize(
    "draw",
    [
        lambda: plot_score_histograms(*scored(), title=f"class {DOLLARS} is the anomaly"),
        lambda: plot_anomaly_roc({DOLLARS: scored()[0]}, scored()[1], title=DOLLARS),
        lambda: plot_roc(*pairs(), label=DOLLARS, far_axis="log"),
        lambda: plot_history(HISTORY, labels={"train_loss": DOLLARS}, title=DOLLARS),
    ],
    ids=["score_histograms", "anomaly_roc", "roc", "history"],
)
def test_titles_and_legends_with_dollars_render(draw):
    fig, ax = draw()
    render(fig)
    texts = [ax.title, *ax.get_legend().get_texts()]
    assert any(DOLLARS in t.get_text() for t in texts)


def test_without_literal_text_the_class_name_would_fail(monkeypatch):
    """The check above can fail: mathtext does reject the name."""
    monkeypatch.setattr(plots, "_literal_text", lambda ax: None)
    z, y = clusters(dim=2)
    fig, _ = plot_embedding(z, y, class_names=[DOLLARS, "b", "c"])
    with pytest.raises(ValueError, match="foo"):
        render(fig)


# --- subplots --------------------------------------------------------------------


def test_subplots_gives_panels_row_by_row():
    fig, axes = subplots(3, nrows=2, figsize=(9, 4))
    assert isinstance(fig, Figure) and fig.get_layout_engine() is not None
    assert len(axes) == 6 and all(ax.figure is fig for ax in axes)
    assert tuple(fig.get_size_inches()) == (9.0, 4.0)
    assert axes[1].get_subplotspec().colspan.start == 1  # the second panel of row 1
    assert axes[3].get_subplotspec().rowspan.start == 1
    for ax in axes[:2]:
        plot_loss_curve(ax=ax)
    render(fig)
    assert tuple(subplots(2)[0].get_size_inches()) == (11.0, 5.0)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "pattern"),
    [
        ((0,), {}, ValueError, "ncols must be >= 1"),
        ((1.5,), {}, TypeError, "ncols must be an int"),
        ((1,), {"nrows": 0}, ValueError, "nrows must be >= 1"),
        ((1,), {"figsize": 5}, TypeError, r"figsize must be \(width, height\)"),
        ((1,), {"figsize": (5, -1)}, ValueError, "figsize must be > 0"),
    ],
)
def test_subplots_bad_input(args, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        subplots(*args, **kwargs)
