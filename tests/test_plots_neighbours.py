"""``plot_neighbours`` and ``plot_embedding`` without labels."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from contrastkit.plots import plot_embedding, plot_neighbours


def test_the_grid_has_a_row_per_query_and_draws_each_image():
    q, n = torch.rand(2, 3, 6, 6), torch.rand(2, 4, 3, 6, 6)
    fig, axes = plot_neighbours(
        q, n, similarities=torch.rand(2, 4), query_titles=["a", "b"],
        neighbour_titles=[["a", "b", "a", "a"], ["b", "b", "a", "b"]], title="$x$ grid",
    )  # fmt: skip
    assert len(axes) == 2 * 5
    np.testing.assert_allclose(axes[0].images[0].get_array(), q[0].permute(1, 2, 0).numpy())
    np.testing.assert_allclose(axes[5 + 3].images[0].get_array(), n[1, 2].permute(1, 2, 0).numpy())
    # the query's class framed in green, another in red
    assert axes[1].spines["left"].get_edgecolor()[:3] != axes[2].spines["left"].get_edgecolor()[:3]
    assert axes[3].spines["left"].get_edgecolor() == axes[1].spines["left"].get_edgecolor()
    assert "b" in axes[2].get_xlabel()
    fig.savefig(io.BytesIO(), format="png")  # the $ of the title is drawn as written


def test_one_channel_is_drawn_in_grey_and_values_are_clipped():
    q = torch.full((1, 1, 4, 4), 2.0)
    _fig, axes = plot_neighbours(q, torch.zeros(1, 1, 1, 4, 4) - 1)
    assert axes[0].images[0].get_array().max() == 1.0
    assert axes[1].images[0].get_array().min() == 0.0
    assert axes[0].images[0].get_cmap().name == "gray"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"queries": torch.rand(2, 2, 4, 4)}, ValueError, "queries must be images"),
        ({"neighbours": torch.rand(2, 3, 4, 4)}, ValueError, "neighbours must be images"),
        ({"neighbours": torch.rand(3, 2, 1, 4, 4)}, ValueError, "neighbours must have shape"),
        ({"similarities": torch.rand(2, 3)}, ValueError, "similarities must have shape"),
        ({"query_titles": ["a"]}, ValueError, "query_titles must have shape"),
        ({"query_titles": "ab"}, TypeError, "query_titles must be a sequence"),
        ({"neighbour_titles": [["a"], ["b"]]}, ValueError, "neighbour_titles must have shape"),
        ({"title": 3}, TypeError, "title must be a str"),
        ({"queries": torch.full((2, 1, 4, 4), float("nan"))}, ValueError, "queries must be finite"),
        ({"queries": "images"}, TypeError, "queries must be a tensor"),
    ],
)
def test_bad_inputs_are_refused_naming_the_argument(kwargs, error, match):
    args = {"queries": torch.rand(2, 1, 4, 4), "neighbours": torch.rand(2, 2, 1, 4, 4)}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        plot_neighbours(**args)


def test_an_embedding_map_without_labels_is_one_colour_without_legend():
    z = torch.randn(30, 5, generator=torch.Generator().manual_seed(0))
    _fig, ax = plot_embedding(z, None)
    assert len(ax.collections) == 1 and len(ax.collections[0].get_offsets()) == 30
    assert ax.get_legend() is None
    assert ax.get_title() == "PCA of the 5-D embedding (30 samples, no labels)"
