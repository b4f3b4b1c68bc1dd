"""Tests for ``contrastkit.evaluation.retrieval``: precision@1, recall@k and MAP@R.

Three references:

* a deliberately naive double loop that ranks the gallery with ``sorted()`` on
  ``(distance, index)`` keys, written from the definitions; inputs with ties use small
  integer coordinates, so that the library's float32 distances and the reference's
  exact ones order (and tie) the same way;
* the implementation before top-k (every row of distances sorted in full), kept in
  ``benchmarks/retrieval.py``: the top-k implementation must give its values bit for
  bit, ties, chunking and overflowed distances included;
* :func:`torch.sort` with ``stable=True`` for the private top-k helpers.

The faiss backend is tested where faiss can be imported (``pip install faiss-cpu``);
those tests are skipped, and say so, where it cannot.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from contrastkit.distances import DistanceName, distance_matrix
from contrastkit.evaluation import retrieval
from contrastkit.evaluation.retrieval import (
    map_at_r,
    precision_at_1,
    recall_at_k,
    retrieval_metrics,
)

FAST = settings(max_examples=25, deadline=None)
BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "retrieval.py"
FAISS_MISSING = "faiss is not installed (pip install faiss-cpu): the faiss backend is not tested"


def _load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("benchmark_retrieval", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


full_sort_retrieval = _load_benchmark().full_sort_retrieval

# --------------------------------------------------------------------------------------
# Naive references
# --------------------------------------------------------------------------------------


def _ref_distance(u: Sequence[float], v: Sequence[float], name: str) -> float:
    if name == "euclidean":
        return math.sqrt(math.fsum((a - b) ** 2 for a, b in zip(u, v, strict=True)))
    if name == "squared_euclidean":
        return math.fsum((a - b) ** 2 for a, b in zip(u, v, strict=True))
    if name == "manhattan":
        return math.fsum(abs(a - b) for a, b in zip(u, v, strict=True))
    if name == "cosine":
        dot = math.fsum(a * b for a, b in zip(u, v, strict=True))
        nu = math.sqrt(math.fsum(a * a for a in u))
        nv = math.sqrt(math.fsum(b * b for b in v))
        return 1.0 - dot / (nu * nv)
    raise KeyError(name)


def _ref_retrieval(
    queries: list[list[float]],
    query_labels: list[int],
    gallery: list[list[float]] | None,
    gallery_labels: list[int] | None,
    name: DistanceName,
    ks: Sequence[int],
) -> dict[str, float]:
    loo = gallery is None
    items = queries if gallery is None else gallery
    item_labels = query_labels if gallery_labels is None else gallery_labels
    p1, recall, ap_total, n_valid = 0.0, dict.fromkeys(ks, 0.0), 0.0, 0
    for qi, q in enumerate(queries):
        candidates = [j for j in range(len(items)) if not (loo and j == qi)]
        ranked = sorted(candidates, key=lambda j: (_ref_distance(q, items[j], name), j))
        rel = [1 if item_labels[j] == query_labels[qi] else 0 for j in ranked]
        r = sum(rel)
        if r == 0:
            continue
        n_valid += 1
        p1 += rel[0]
        for k in ks:
            recall[k] += 1 if any(rel[:k]) else 0
        hits, ap = 0, 0.0
        for i in range(1, r + 1):
            hits += rel[i - 1]
            if rel[i - 1]:
                ap += hits / i
        ap_total += ap / r
    out = {"precision_at_1": p1 / n_valid}
    for k in ks:
        out[f"recall_at_{k}"] = recall[k] / n_valid
    out["map_at_r"] = ap_total / n_valid
    return out


# --------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------


@st.composite
def labelled_points(draw: st.DrawFn) -> tuple[list[list[float]], list[int]]:
    """Small integer embeddings (ties likely) and labels with at least one repeated class."""
    n = draw(st.integers(2, 12))
    dim = draw(st.integers(1, 3))
    coords = st.lists(st.integers(-3, 3).map(float), min_size=dim, max_size=dim)
    emb = draw(st.lists(coords, min_size=n, max_size=n))
    labels = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    labels[1] = labels[0]
    return emb, labels


# --------------------------------------------------------------------------------------
# Retrieval against the double-loop reference
# --------------------------------------------------------------------------------------


def _all_metrics(emb, labels, ks, **kwargs) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return retrieval_metrics(emb, labels, ks=ks, **kwargs)


def _assert_close(a: dict[str, float], b: dict[str, float]) -> None:
    assert list(a) == list(b)
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-12), key


@FAST
@given(labelled_points(), st.sampled_from(["euclidean", "squared_euclidean", "manhattan"]))
def test_retrieval_matches_reference_with_ties(
    data: tuple[list[list[float]], list[int]], name: DistanceName
) -> None:
    emb, labels = data
    ks = sorted({1, min(2, len(emb) - 1), len(emb) - 1})
    expected = _ref_retrieval(emb, labels, None, None, name, ks)
    got = retrieval_metrics(torch.tensor(emb), torch.tensor(labels), distance=name, ks=ks)
    _assert_close(got, expected)
    assert precision_at_1(emb, labels, distance=name) == got["precision_at_1"]
    assert map_at_r(emb, labels, distance=name) == got["map_at_r"]
    for k in ks:
        assert recall_at_k(emb, labels, k=k, distance=name) == got[f"recall_at_{k}"]


@FAST
@given(labelled_points(), labelled_points())
def test_retrieval_gallery_mode_matches_reference(
    queries: tuple[list[list[float]], list[int]], gallery: tuple[list[list[float]], list[int]]
) -> None:
    q, ql = queries
    g, gl = gallery
    dim = min(len(q[0]), len(g[0]))
    q = [row[:dim] for row in q]
    g = [row[:dim] for row in g]
    if not any(label in gl for label in ql):
        with pytest.raises(ValueError, match="relevant"):
            retrieval_metrics(q, ql, ks=(1,), gallery=g, gallery_labels=gl)
        return
    ks = sorted({1, len(g)})
    expected = _ref_retrieval(q, ql, g, gl, "euclidean", ks)
    got = retrieval_metrics(
        torch.tensor(q), torch.tensor(ql), ks=ks, gallery=torch.tensor(g), gallery_labels=gl
    )
    _assert_close(got, expected)


def test_retrieval_cosine_matches_reference() -> None:
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(30, 5))
    labels = rng.integers(0, 6, size=30)
    gallery = rng.normal(size=(17, 5))
    gallery_labels = rng.integers(0, 6, size=17)
    ks = (1, 3, 10)
    got = retrieval_metrics(emb, labels, distance="cosine", ks=ks)
    _assert_close(got, _ref_retrieval(emb.tolist(), labels.tolist(), None, None, "cosine", ks))
    got = retrieval_metrics(
        emb, labels, distance="cosine", ks=ks, gallery=gallery, gallery_labels=gallery_labels
    )
    expected = _ref_retrieval(
        emb.tolist(), labels.tolist(), gallery.tolist(), gallery_labels.tolist(), "cosine", ks
    )
    _assert_close(got, expected)


def test_retrieval_tiny_case_by_hand() -> None:
    # 1-D points; 9.0 is the only sample of class 2, so its query is left out.
    emb = [[0.0], [0.1], [1.0], [1.3], [2.0], [9.0]]
    labels = [0, 0, 1, 1, 0, 2]
    out = retrieval_metrics(emb, labels, ks=(1, 2, 3, 5))
    # query 2.0 ranks 1.3, 1.0 (class 1) before 0.1, 0.0 (class 0): R = 2, AP = 0
    # queries 0.0 and 0.1: R = 2, relevant at rank 1 only: AP = 1/2; queries 1.0, 1.3: AP = 1
    assert out == {
        "precision_at_1": 0.8,
        "recall_at_1": 0.8,
        "recall_at_2": 0.8,
        "recall_at_3": 1.0,
        "recall_at_5": 1.0,
        "map_at_r": 0.6,
    }


def test_retrieval_ties_go_to_the_lower_gallery_index() -> None:
    query = [[0.0, 0.0]]
    gallery = [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]  # all at distance 1
    assert precision_at_1(query, [5], gallery=gallery, gallery_labels=[5, 6, 6]) == 1.0
    assert precision_at_1(query, [6], gallery=gallery, gallery_labels=[5, 6, 6]) == 0.0
    assert map_at_r(query, [6], gallery=gallery, gallery_labels=[5, 6, 6]) == pytest.approx(
        (0 + 1 / 2) / 2
    )
    # leave-one-out: the query itself is skipped, even when a duplicate precedes it
    emb = [[0.0], [0.0], [0.0]]
    assert precision_at_1(emb, [1, 2, 1]) == 0.5  # query 0 -> 1 (miss), query 2 -> 0 (hit)


def test_retrieval_is_the_same_in_any_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    emb = torch.from_numpy(rng.integers(-2, 3, size=(25, 3)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 4, size=25))
    full = retrieval_metrics(emb, labels, ks=(1, 4))
    gallery = retrieval_metrics(
        emb[:10], labels[:10], ks=(1, 4), gallery=emb, gallery_labels=labels
    )
    for elements in (1, 30, 100):
        monkeypatch.setattr(retrieval, "_CHUNK_ELEMENTS", elements)
        assert retrieval_metrics(emb, labels, ks=(1, 4)) == full
        again = retrieval_metrics(
            emb[:10], labels[:10], ks=(1, 4), gallery=emb, gallery_labels=labels
        )
        assert again == gallery


@FAST
@given(labelled_points())
def test_retrieval_properties(data: tuple[list[list[float]], list[int]]) -> None:
    emb, labels = data
    ks = list(range(1, len(emb)))
    out = retrieval_metrics(emb, labels, ks=ks)
    assert all(0.0 <= v <= 1.0 for v in out.values())
    assert out["precision_at_1"] == out["recall_at_1"]
    recalls = [out[f"recall_at_{k}"] for k in ks]
    assert recalls == sorted(recalls)
    assert recalls[-1] == 1.0  # every kept query has a relevant item somewhere
    # squared Euclidean ranks exactly as Euclidean
    assert retrieval_metrics(emb, labels, ks=ks, distance="squared_euclidean") == out


def test_retrieval_accepts_grad_and_half_inputs() -> None:
    rng = np.random.default_rng(3)
    emb = torch.from_numpy(rng.integers(-2, 3, size=(12, 2)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 3, size=12))
    expected = retrieval_metrics(emb, labels, ks=(1, 2))
    leaf = emb.clone().requires_grad_(True)
    assert retrieval_metrics(leaf, labels, ks=(1, 2)) == expected
    assert retrieval_metrics(emb.half(), labels.numpy(), ks=(1, 2)) == expected
    assert retrieval_metrics(emb.numpy().astype(np.float64), labels.tolist(), ks=(1, 2)) == expected


# --------------------------------------------------------------------------------------
# Top-k against the full sort it replaces: the same values, bit for bit
# --------------------------------------------------------------------------------------

DISTANCES = ["euclidean", "squared_euclidean", "cosine", "manhattan"]


def _data(kind: str, n: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clustered floats (few ties), float64 clusters, or a small integer grid (many ties)."""
    rng = np.random.default_rng(seed)
    labels = torch.from_numpy(rng.integers(0, classes, size=n))
    if kind == "grid":  # coordinates in {-2, ..., 2}: ties and duplicates everywhere
        return torch.from_numpy(rng.integers(-2, 3, size=(n, 4)).astype(np.float32)), labels
    centres = rng.normal(size=(classes, 6))
    emb = centres[labels.numpy()] + 0.8 * rng.normal(size=(n, 6))
    return torch.from_numpy(emb.astype(np.float64 if kind == "clusters64" else np.float32)), labels


@pytest.mark.slow
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("kind", ["clusters", "clusters64", "grid"])
@pytest.mark.parametrize("with_gallery", [False, True], ids=["leave-one-out", "gallery"])
def test_topk_gives_the_full_sort_values_bit_for_bit(
    distance: DistanceName, kind: str, with_gallery: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    emb, labels = _data(kind, 120, 7, seed=len(distance) + len(kind))
    if with_gallery:
        queries, query_labels = emb[:50], labels[:50]
        gallery, gallery_labels = emb[50:], labels[50:]
    else:
        queries, query_labels, gallery, gallery_labels = emb, labels, None, labels
    ks = (1, 3, 10)
    kwargs = {"distance": distance, "gallery": gallery, "gallery_labels": gallery_labels}
    if gallery is None:
        kwargs = {"distance": distance}
    for elements in (700, 1 << 22):  # a few queries per chunk, all of them
        monkeypatch.setattr(retrieval, "_CHUNK_ELEMENTS", elements)
        expected = full_sort_retrieval(
            queries, query_labels, gallery, gallery_labels, distance, ks, chunk_elements=elements
        )
        for fraction in (0.0, 0.5, 1.0):  # always a full sort, the default, always top-k
            monkeypatch.setattr(retrieval, "_TOPK_MAX_FRACTION", fraction)
            got = retrieval_metrics(queries, query_labels, ks=ks, **kwargs)  # type: ignore[arg-type]
            assert got == expected, (elements, fraction)
            assert precision_at_1(queries, query_labels, **kwargs) == got["precision_at_1"]  # type: ignore[arg-type]
            assert recall_at_k(queries, query_labels, k=3, **kwargs) == got["recall_at_3"]  # type: ignore[arg-type]
            assert map_at_r(queries, query_labels, **kwargs) == got["map_at_r"]  # type: ignore[arg-type]


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_huge_rows_rank_as_in_a_full_sort(fraction: float, monkeypatch: pytest.MonkeyPatch) -> None:
    # float32 squares of these rows overflow; the distances, computed on rows scaled by a
    # power of two, stay finite, and the top-K ranking equals the full sort's
    emb = torch.tensor([[3e19], [3e19], [0.0], [1.0], [2.0], [-3e19], [5.0], [3.0]])
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 1, 0])
    assert distance_matrix(emb[:1], emb).isfinite().all()
    monkeypatch.setattr(retrieval, "_TOPK_MAX_FRACTION", fraction)
    expected = full_sort_retrieval(emb, labels, None, labels, "euclidean", (1, 2, 5))
    assert retrieval_metrics(emb, labels, ks=(1, 2, 5)) == expected
    expected = full_sort_retrieval(emb[:3], labels[:3], emb, labels, "euclidean", (1, 2, 5))
    got = retrieval_metrics(emb[:3], labels[:3], ks=(1, 2, 5), gallery=emb, gallery_labels=labels)
    assert got == expected


@st.composite
def tied_rows(draw: st.DrawFn) -> tuple[torch.Tensor, int]:
    """Rows of distances with many ties (and some inf and NaN), and a k."""
    rows = draw(st.integers(1, 4))
    m = draw(st.integers(1, 25))
    pool = st.sampled_from([0.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, math.inf, math.nan])
    values = draw(st.lists(st.lists(pool, min_size=m, max_size=m), min_size=rows, max_size=rows))
    return torch.tensor(values), draw(st.integers(1, m))


@FAST
@given(tied_rows())
def test_smallest_is_the_start_of_a_stable_sort(data: tuple[torch.Tensor, int]) -> None:
    d, k = data
    expected = torch.sort(d, dim=1, stable=True).indices[:, :k]
    for fraction in (0.0, 1.0):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(retrieval, "_TOPK_MAX_FRACTION", fraction)
            assert torch.equal(retrieval._smallest(d, k), expected)


@FAST
@given(st.data())
def test_drop_self_keeps_the_first_k_others(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 5))
    k = data.draw(st.integers(1, 6))
    ranking = torch.stack([torch.randperm(k + 3)[: k + 1] for _ in range(n)])
    rows = torch.tensor(data.draw(st.lists(st.integers(0, k + 2), min_size=n, max_size=n)))
    expected = [
        [j for j in row if j != q][:k]
        for row, q in zip(ranking.tolist(), rows.tolist(), strict=True)
    ]
    assert retrieval._drop_self(ranking, rows, k).tolist() == expected


def test_topk_is_used_while_k_is_small_against_the_gallery(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    topk = torch.topk

    def counting_topk(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args[1])
        return topk(*args, **kwargs)

    monkeypatch.setattr(torch, "topk", counting_topk)
    emb, labels = _data("clusters", 200, 20, seed=5)  # R = class size - 1: about 9
    r_max = int(torch.bincount(labels).max()) - 1
    retrieval_metrics(emb, labels, ks=(1, 5))
    assert calls == [r_max + 2]  # one chunk; K = R, the query itself, and one to see ties
    calls.clear()
    precision_at_1(emb, labels)
    assert calls == [3]  # K = 1, the query itself and one more
    calls.clear()
    retrieval_metrics(emb, torch.zeros(200, dtype=torch.long), ks=(1,))  # R = 199
    assert calls == []  # K beyond half the gallery: a full sort


def test_memory_is_bounded_by_the_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    shapes: list[tuple[int, ...]] = []
    distances = retrieval._Distances.__call__

    def recording(self, rows):  # type: ignore[no-untyped-def]
        out = distances(self, rows)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(retrieval._Distances, "__call__", recording)
    monkeypatch.setattr(retrieval, "_CHUNK_ELEMENTS", 1000)
    emb, labels = _data("clusters", 300, 10, seed=6)
    retrieval_metrics(emb, labels)
    assert len(shapes) == 100 and all(shape == (3, 300) for shape in shapes)


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chunk_distances_are_those_of_distance_matrix(
    distance: DistanceName, dtype: torch.dtype
) -> None:
    # the gallery's norms are computed once; every chunk's distances must not change
    emb, _ = _data("clusters", 90, 5, seed=8)
    emb = torch.cat((emb, torch.zeros(2, emb.shape[1]))).to(dtype)  # zero rows for cosine
    gallery = emb.flip(0)
    distances = retrieval._Distances(emb, gallery, distance)
    for rows in (torch.arange(0, 7), torch.arange(7, 92, 3), torch.tensor([91])):
        expected = distance_matrix(emb[rows], gallery, distance)
        assert torch.equal(distances(rows), expected)


# --------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------


def test_without_faiss_auto_is_torch_and_faiss_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    emb, labels = _data("clusters", 60, 4, seed=7)
    expected = retrieval_metrics(emb, labels)
    monkeypatch.setattr(retrieval, "_import_faiss", lambda: None)
    monkeypatch.setattr(retrieval, "_FaissSearch", None)  # any use of faiss would fail
    assert retrieval_metrics(emb, labels, backend="auto") == expected
    assert map_at_r(emb, labels, backend="auto") == expected["map_at_r"]
    with pytest.raises(ImportError, match=r"backend='faiss' needs the faiss package"):
        retrieval_metrics(emb, labels, backend="faiss")
    with pytest.raises(ImportError, match=r"pip install faiss-cpu"):
        precision_at_1(emb, labels, backend="faiss")


@pytest.fixture
def faiss() -> ModuleType:
    return pytest.importorskip("faiss", reason=FAISS_MISSING)


def _integer_points(n: int, distance: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer points in 3-D whose distances never tie within a row, and labels.

    Squared distances from [-50, 50]³, L1 distances from [-2000, 2000]³: either way exact
    integers in float32. A drawn point is kept only if its distances to the points kept
    so far differ from one another and from every distance already in those points' rows.
    """
    rng = np.random.default_rng(seed)
    scale = 2000 if distance == "manhattan" else 50
    points: list[np.ndarray] = []
    rows: list[set[int]] = []  # the distances of each kept point
    while len(points) < n:
        p = rng.integers(-scale, scale + 1, size=3)
        diff = np.array(points).reshape(-1, 3) - p
        found = (np.abs(diff) if distance == "manhattan" else diff**2).sum(1).tolist()
        if len(set(found)) < len(found) or any(
            f in row for f, row in zip(found, rows, strict=True)
        ):
            continue
        for f, row in zip(found, rows, strict=True):
            row.add(f)
        points.append(p)
        rows.append(set(found))
    return (
        torch.from_numpy(np.array(points, dtype=np.float32)),
        torch.from_numpy(rng.integers(0, 5, size=n)),
    )


def _exact(q: torch.Tensor, g: torch.Tensor, distance: str) -> np.ndarray:
    diff = q.numpy().astype(np.int64)[:, None, :] - g.numpy().astype(np.int64)[None, :, :]
    return np.abs(diff).sum(-1) if distance == "manhattan" else (diff**2).sum(-1)


def _ties_per_row(d: np.ndarray, leave_one_out: bool) -> int:
    if leave_one_out:
        d = np.where(np.eye(len(d), dtype=bool), -1, d)  # the query's own entry aside
    return max(len(row) - len(np.unique(row)) for row in d)


@pytest.mark.parametrize("distance", ["euclidean", "squared_euclidean", "manhattan"])
@pytest.mark.parametrize(("elements", "searched"), [(1 << 22, 4096), (200, 7)])
def test_faiss_gives_the_torch_values_without_ties(
    faiss: ModuleType,
    distance: DistanceName,
    elements: int,
    searched: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # small integer coordinates: float32 distances are exact in torch and faiss alike
    monkeypatch.setattr(retrieval, "_CHUNK_ELEMENTS", elements)
    monkeypatch.setattr(retrieval, "_FAISS_QUERIES", searched)
    emb, labels = _integer_points(60, distance, seed=11)
    assert _ties_per_row(_exact(emb, emb, distance), leave_one_out=True) == 0
    ks = (1, 2, 10)
    expected = retrieval_metrics(emb, labels, distance=distance, ks=ks)
    got = retrieval_metrics(emb, labels, distance=distance, ks=ks, backend="faiss")
    assert got == expected
    assert map_at_r(emb.double(), labels, distance=distance, backend="faiss") == got["map_at_r"]
    q, ql, g, gl = emb[:30], labels[:30], emb[30:], labels[30:]
    assert _ties_per_row(_exact(q, g, distance), leave_one_out=False) == 0
    kwargs = {"distance": distance, "ks": ks, "gallery": g, "gallery_labels": gl}
    expected = retrieval_metrics(q, ql, **kwargs)  # type: ignore[arg-type]
    assert retrieval_metrics(q, ql, backend="faiss", **kwargs) == expected  # type: ignore[arg-type]


def test_faiss_cosine_gives_the_torch_values_where_distances_are_apart(
    faiss: ModuleType,
) -> None:
    emb, labels = _data("clusters", 40, 4, seed=12)
    d = 1 - torch.nn.functional.cosine_similarity(
        emb.double()[:, None, :], emb.double()[None, :, :], dim=-1
    )
    gaps = torch.diff(torch.sort(d, dim=1).values, dim=1)
    assert float(gaps.min()) > 1e-5  # far above float32 rounding: no two can swap
    expected = retrieval_metrics(emb, labels, distance="cosine", ks=(1, 4))
    assert retrieval_metrics(emb, labels, distance="cosine", ks=(1, 4), backend="faiss") == expected


def test_faiss_with_ties_within_a_class(faiss: ModuleType) -> None:
    # Exact ties only between duplicates of one label: whichever order faiss gives them,
    # the relevance of each rank is the same. Twelve copies of one point: each query's
    # nearest K + 1 items may leave the query itself out, which must not matter either.
    emb, labels = _integer_points(40, "squared_euclidean", seed=13)
    emb = torch.cat((emb, emb, emb[:1].repeat(10, 1)))
    labels = torch.cat((labels, labels, labels[:1].repeat(10)))
    expected = retrieval_metrics(emb, labels, distance="squared_euclidean", ks=(1, 3))
    got = retrieval_metrics(emb, labels, distance="squared_euclidean", ks=(1, 3), backend="faiss")
    assert got == expected


def test_auto_takes_faiss_where_it_is_installed(
    faiss: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    searched: list[int] = []
    nearest = retrieval._FaissSearch.nearest

    def spy(self, rows, k, leave_one_out):  # type: ignore[no-untyped-def]
        searched.append(rows.numel())
        return nearest(self, rows, k, leave_one_out)

    monkeypatch.setattr(retrieval._FaissSearch, "nearest", spy)
    emb, labels = _integer_points(50, "euclidean", seed=11)
    expected = retrieval_metrics(emb, labels, ks=(1, 2))
    assert searched == []
    assert retrieval_metrics(emb, labels, ks=(1, 2), backend="auto") == expected
    assert searched == [50]


# --------------------------------------------------------------------------------------
# Bad input: every case names the argument
# --------------------------------------------------------------------------------------

EMB, LAB = [[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1]

RETRIEVAL_BAD = [
    ("embeddings", lambda: precision_at_1([0.0, 1.0], [0, 0]), ValueError),
    ("embeddings", lambda: precision_at_1([[0, 1], [1, 0]], [0, 0]), TypeError),
    ("embeddings", lambda: precision_at_1(np.zeros((0, 2)), []), ValueError),
    ("embeddings", lambda: precision_at_1([[0.0], [math.nan]], [0, 0]), ValueError),
    ("embeddings", lambda: precision_at_1("emb", [0, 0]), TypeError),
    ("labels", lambda: precision_at_1(EMB, [0, 0, 1]), ValueError),
    ("labels", lambda: precision_at_1(EMB, [0.0, 0.0, 1.0, 1.0]), TypeError),
    ("labels", lambda: precision_at_1(EMB, [0, 1, 2, 3]), ValueError),
    ("labels", lambda: map_at_r([[0.0]], [0]), ValueError),
    ("distance", lambda: precision_at_1(EMB, LAB, distance="cosinus"), ValueError),  # type: ignore[arg-type]
    ("distance", lambda: map_at_r(EMB, LAB, distance=2), TypeError),  # type: ignore[arg-type]
    ("gallery_labels", lambda: precision_at_1(EMB, LAB, gallery=EMB), ValueError),
    ("gallery", lambda: precision_at_1(EMB, LAB, gallery_labels=LAB), ValueError),
    (
        "gallery",
        lambda: precision_at_1(EMB, LAB, gallery=[[0.0, 1.0]], gallery_labels=[0]),
        ValueError,
    ),
    ("gallery_labels", lambda: map_at_r(EMB, LAB, gallery=EMB, gallery_labels=[0]), ValueError),
    ("relevant", lambda: map_at_r(EMB, LAB, gallery=EMB, gallery_labels=[5, 5, 5, 5]), ValueError),
    ("k", lambda: recall_at_k(EMB, LAB, k=0), ValueError),
    ("k", lambda: recall_at_k(EMB, LAB, k=1.0), TypeError),  # type: ignore[arg-type]
    ("k", lambda: recall_at_k(EMB, LAB, k=True), TypeError),
    ("k", lambda: recall_at_k(EMB, LAB, k=4), ValueError),  # 3 others per query
    ("k", lambda: recall_at_k(EMB, LAB, k=5, gallery=EMB, gallery_labels=LAB), ValueError),
    (r"ks\[1\]", lambda: retrieval_metrics(EMB, LAB, ks=(1, 4)), ValueError),
    (r"ks\[0\]", lambda: retrieval_metrics(EMB, LAB, ks=(-1,)), ValueError),
    ("ks", lambda: retrieval_metrics(EMB, LAB, ks=()), ValueError),
    ("ks", lambda: retrieval_metrics(EMB, LAB, ks=3), TypeError),  # type: ignore[arg-type]
    ("ks", lambda: retrieval_metrics(EMB, LAB, ks=(1, 1)), ValueError),
    ("k", lambda: retrieval_metrics(EMB, LAB), ValueError),  # default ks go up to 10
    ("backend", lambda: precision_at_1(EMB, LAB, backend="numpy"), ValueError),  # type: ignore[arg-type]
    ("backend", lambda: map_at_r(EMB, LAB, backend=1), TypeError),  # type: ignore[arg-type]
    ("backend", lambda: retrieval_metrics(EMB, LAB, ks=(1,), backend=None), TypeError),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("name", "call", "error"),
    RETRIEVAL_BAD,
    ids=[f"{i}-{case[0]}" for i, case in enumerate(RETRIEVAL_BAD)],
)
def test_bad_input_names_the_argument(
    name: str, call: Callable[[], object], error: type[Exception]
) -> None:
    with pytest.raises(error, match=name):
        call()


def test_module_imports_neither_matplotlib_nor_faiss_and_is_re_exported() -> None:
    import contrastkit.metrics
    from contrastkit.evaluation import metrics

    tree = ast.parse(inspect.getsource(retrieval))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported.isdisjoint({"matplotlib", "faiss", "sklearn"})
    public = {"map_at_r", "precision_at_1", "recall_at_k", "retrieval_metrics"}
    assert set(retrieval.__all__) == public | {"RetrievalBackend"}
    for name in public:
        assert getattr(metrics, name) is getattr(retrieval, name)
        assert getattr(contrastkit.metrics, name) is getattr(retrieval, name)
