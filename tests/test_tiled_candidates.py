"""The kernels of anchors against separate candidates equal brute-force loops.

Anchors ``x`` (B rows) are compared with candidates ``c`` (M rows, B != M): the rows of
every process gathered (``x = c[off:off + B]``, ``self_index = off + arange(B)``), or a
gallery. Candidate ``j`` is left out for anchor ``i`` where ``j == self_index[i]`` or
``x_ids[i] == c_ids[j]``. Each kernel is checked in float64 against a reference written
here with explicit loops over the pairs (and autograd for its gradients), over tile
sizes of one row, a few rows and every row; and, with ``x = c`` and
``self_index = arange(N)``, against the square kernels of the same module.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from contrastkit import _tiled

B, M, D, OFFSET = 7, 11, 3, 2
TILES = [1, 3, 64]
DISTANCES = ["euclidean", "squared_euclidean", "cosine"]
MARGINS = {"euclidean": 2.0, "squared_euclidean": 4.0, "cosine": 0.8}
# how the candidates are left out: by self_index, by ids (with duplicate ids), both, or
# by ids such that anchor 0 keeps no candidate at all
EXCLUSIONS = ["none", "self", "ids", "self+ids", "empty_row"]


def _case(exclusion: str, seed: int = 0, b: int = B, m: int = M):
    """Anchors, candidates, their labels and the exclusion arguments of one case."""
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(m, D, generator=g, dtype=torch.float64)
    c_labels = torch.randint(0, 3, (m,), generator=g)
    gathered = exclusion in ("self", "self+ids")
    if gathered:  # this process's rows among every process's
        x = c[OFFSET : OFFSET + b].clone()
        x_labels = c_labels[OFFSET : OFFSET + b].clone()
    else:  # anchors against a gallery
        x = torch.randn(b, D, generator=g, dtype=torch.float64)
        x_labels = torch.randint(0, 3, (b,), generator=g)
    opts: dict[str, torch.Tensor | None] = {"self_index": None, "x_ids": None, "c_ids": None}
    if gathered:
        opts["self_index"] = OFFSET + torch.arange(b)
    if exclusion in ("ids", "self+ids"):
        c_ids = torch.randint(0, 4, (m,), generator=g)  # duplicates: several per id
        x_ids = c_ids[OFFSET : OFFSET + b].clone() if gathered else torch.arange(b) % 5
        opts["x_ids"], opts["c_ids"] = x_ids, c_ids
    if exclusion == "empty_row":
        opts["c_ids"] = torch.zeros(m, dtype=torch.long)
        opts["x_ids"] = torch.tensor([0] + [1] * (b - 1))
    return x, c, x_labels, c_labels, opts


def _excluded(b: int, m: int, self_index=None, x_ids=None, c_ids=None) -> torch.Tensor:
    out = torch.zeros(b, m, dtype=torch.bool)
    for i, j in itertools.product(range(b), range(m)):
        by_self = self_index is not None and j == int(self_index[i])
        by_id = x_ids is not None and int(x_ids[i]) == int(c_ids[j])
        out[i, j] = by_self or by_id
    return out


def _distance(name: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """One pair's distance, from the two rows alone."""
    if name == "cosine":
        return (1.0 - (u / u.norm() * (v / v.norm())).sum()).clamp(0.0, 2.0)
    if name == "manhattan":
        return (u - v).abs().sum()
    squared = ((u - v) ** 2).sum()
    return squared if name == "squared_euclidean" else squared.sqrt()


class _Distances:
    """``d[i, j]`` computed pair by pair when first read (an excluded pair never is)."""

    def __init__(self, name: str, x: torch.Tensor, c: torch.Tensor) -> None:
        self.name, self.x, self.c, self.cache = name, x, c, {}

    def __getitem__(self, ij: tuple[int, int]) -> torch.Tensor:
        if ij not in self.cache:
            self.cache[ij] = _distance(self.name, self.x[ij[0]], self.c[ij[1]])
        return self.cache[ij]


def _grads(out: torch.Tensor, leaves, weights=None):
    total = out.sum() if weights is None else (out * weights).sum()
    grads = torch.autograd.grad(total, leaves, allow_unused=True, retain_graph=True)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(grads, leaves, strict=True)]


def _leaves(*tensors):
    return [t.detach().clone().requires_grad_(True) for t in tensors]


def _close(got, expected):
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)


# --------------------------------------------------------------------------------------
# row_logsumexp with masks


def _masked_reference(a, b, extra, self_index, row_ids, column_ids, keep_index):
    n, k_all = a.shape[0], b.shape[0]
    masked = torch.zeros(n, k_all, dtype=torch.bool)
    for i, j in itertools.product(range(n), range(k_all)):
        if self_index is not None and j == int(self_index[i]):
            masked[i, j] = True
        if row_ids is not None and j < column_ids.shape[0]:
            kept = keep_index is not None and j == int(keep_index[i])
            if int(row_ids[i]) == int(column_ids[j]) and not kept:
                masked[i, j] = True
    s = (a @ b.T).masked_fill(masked, float("-inf"))
    if extra is not None:
        s = torch.cat([s, extra], dim=1)
    return s


@pytest.mark.parametrize("rows", TILES)
@pytest.mark.parametrize("with_extra", [False, True])
@pytest.mark.parametrize("masks", ["self", "ids", "ids+keep", "all"])
@pytest.mark.parametrize("upstream", ["hinted", "hint_not_followed", "deferred"])
def test_row_logsumexp_masks(rows, with_extra, masks, upstream):
    g = torch.Generator().manual_seed(3)
    n, k_all = 6, 9  # column_ids label the first 7 of the 9 columns
    a = torch.randn(n, D, generator=g, dtype=torch.float64)
    b = torch.randn(k_all, D, generator=g, dtype=torch.float64)
    extra = torch.randn(n, 2, generator=g, dtype=torch.float64) if with_extra else None
    self_index = torch.tensor([2, 0, 8, 5, 5, 1]) if masks in ("self", "all") else None
    row_ids = column_ids = keep_index = None
    if masks != "self":
        row_ids = torch.tensor([0, 1, 1, 2, 3, 9])
        column_ids = torch.tensor([1, 0, 1, 2, 1, 3, 0])  # row 5's id is on no column
        if masks in ("ids+keep", "all"):
            keep_index = torch.tensor([1, 0, 8, 3, 2, 4])  # 8: past column_ids
    opts = {
        "self_index": self_index,
        "row_ids": row_ids,
        "column_ids": column_ids,
        "keep_index": keep_index,
    }
    leaves = _leaves(a, b) + ([] if extra is None else _leaves(extra))
    e = leaves[2] if extra is not None else None
    expected = torch.logsumexp(_masked_reference(*leaves[:2], e, **opts), dim=1)
    weights = {
        "hinted": torch.full((n,), 1.5, dtype=torch.float64),
        "hint_not_followed": torch.linspace(-1.0, 2.0, n, dtype=torch.float64),
        "deferred": torch.linspace(-1.0, 2.0, n, dtype=torch.float64),
    }[upstream]
    expected_grads = _grads(expected, leaves, weights)
    hint = None if upstream == "deferred" else torch.ones(n, dtype=torch.float64)
    got_leaves = _leaves(*[t.detach() for t in leaves])
    got_e = got_leaves[2] if extra is not None else None
    got = _tiled.row_logsumexp(*got_leaves[:2], rows=rows, extra=got_e, hint=hint, **opts)
    _close(got, expected)
    got_grads = _grads(got, got_leaves, weights)
    for got_grad, expected_grad in zip(got_grads, expected_grads, strict=True):
        _close(got_grad, expected_grad)


@pytest.mark.parametrize("rows", [1, 4])
@pytest.mark.parametrize("hint", [None, "ones"])
def test_row_logsumexp_fully_masked_row_is_minus_inf_with_zero_gradient(rows, hint):
    g = torch.Generator().manual_seed(4)
    a, b = _leaves(torch.randn(4, D, generator=g), torch.randn(5, D, generator=g))
    # row 1: its id on the 4 labelled columns, itself the fifth; the others keep some
    opts = {
        "self_index": torch.tensor([0, 4, 2, 3]),
        "row_ids": torch.tensor([0, 7, 3, 2]),
        "column_ids": torch.tensor([7, 7, 7, 7]),
    }
    h = torch.ones(4) if hint else None
    got = _tiled.row_logsumexp(a, b, rows=rows, hint=h, **opts)
    assert got[1] == float("-inf")
    assert torch.isfinite(got[[0, 2, 3]]).all()
    weights = torch.tensor([0.5, 1.0, 2.0, -1.0])
    ga, gb = torch.autograd.grad(got, [a, b], grad_outputs=weights)
    assert torch.isfinite(ga).all() and torch.isfinite(gb).all()
    assert (ga[1] == 0).all()
    # the other rows: the plain log-sum-exp of what they keep
    a0, b0 = _leaves(a, b)
    keep = [0, 2, 3]
    s = _masked_reference(a0[keep], b0, None, opts["self_index"][keep], None, None, None)
    ref = torch.logsumexp(s, dim=1)
    torch.testing.assert_close(got[keep], ref.detach())
    ra, rb = torch.autograd.grad(ref, [a0, b0], grad_outputs=weights[keep])
    torch.testing.assert_close(ga, ra)
    torch.testing.assert_close(gb, rb)


def test_row_logsumexp_masks_gradcheck():
    g = torch.Generator().manual_seed(5)
    a = torch.randn(4, D, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, D, generator=g, dtype=torch.float64, requires_grad=True)
    extra = torch.randn(4, 2, generator=g, dtype=torch.float64, requires_grad=True)
    opts = {
        "self_index": torch.tensor([3, 0, 5, 1]),
        "row_ids": torch.tensor([0, 1, 2, 2]),
        "column_ids": torch.tensor([2, 0, 1, 2, 0]),
        "keep_index": torch.tensor([1, 2, 0, 4]),
    }
    assert torch.autograd.gradcheck(
        lambda a, b, e: _tiled.row_logsumexp(a, b, rows=3, extra=e, **opts), (a, b, extra)
    )


def test_row_logsumexp_ids_come_together():
    a = torch.randn(3, D)
    with pytest.raises(ValueError, match="row_ids and column_ids"):
        _tiled.row_logsumexp(a, a, rows=2, row_ids=torch.arange(3))


# --------------------------------------------------------------------------------------
# contrastive sum


def _contrastive_reference(x, c, x_labels, c_labels, name, margin, caffe_legacy, excluded):
    d = _Distances(name, x, c)
    total = x.new_zeros(())
    count = 0
    for i, j in itertools.product(range(x.shape[0]), range(c.shape[0])):
        if excluded[i, j]:
            continue
        count += 1
        if x_labels[i] == c_labels[j]:
            total = total + d[i, j] ** 2
        elif caffe_legacy:
            total = total + (margin - d[i, j] ** 2).clamp_min(0.0)
        else:
            total = total + (margin - d[i, j]).clamp_min(0.0) ** 2
    return total, count


@pytest.mark.parametrize("rows", TILES)
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("caffe_legacy", [False, True])
@pytest.mark.parametrize("exclusion", EXCLUSIONS)
def test_cross_contrastive_sum(rows, distance, caffe_legacy, exclusion):
    x, c, x_labels, c_labels, opts = _case(exclusion)
    margin = MARGINS[distance]
    excluded = _excluded(B, M, **opts)
    lx, lc = _leaves(x, c)
    expected, expected_count = _contrastive_reference(
        lx, lc, x_labels, c_labels, distance, margin, caffe_legacy, excluded
    )
    expected_grads = _grads(expected, [lx, lc], 1.7)
    gx, gc = _leaves(x, c)
    got, count = _tiled.cross_contrastive_sum(
        gx, gc, x_labels, c_labels, distance=distance, margin=margin,
        caffe_legacy=caffe_legacy, rows=rows, **opts,
    )  # fmt: skip
    assert count.dtype == torch.long and not count.requires_grad
    assert int(count) == expected_count == int((~excluded).sum())
    _close(got, expected)
    for got_grad, expected_grad in zip(_grads(got, [gx, gc], 1.7), expected_grads, strict=True):
        _close(got_grad, expected_grad)


# --------------------------------------------------------------------------------------
# batch-all triplet sums


def _batch_all_reference(x, c, x_labels, c_labels, name, margin, excluded):
    d = _Distances(name, x, c)
    per_anchor, count_all, count_nonzero = [], 0, 0
    for i in range(x.shape[0]):
        kept = [j for j in range(c.shape[0]) if not excluded[i, j]]
        positives = [j for j in kept if c_labels[j] == x_labels[i]]
        negatives = [j for j in kept if c_labels[j] != x_labels[i]]
        count_all += len(positives) * len(negatives)
        total = x.new_zeros(())
        for p, n in itertools.product(positives, negatives):
            hinge = (d[i, p] - d[i, n] + margin).clamp_min(0.0)
            count_nonzero += int(hinge > 0)
            total = total + hinge
        per_anchor.append(total)
    return torch.stack(per_anchor), count_all, count_nonzero


@pytest.mark.parametrize("rows", TILES)
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("exclusion", EXCLUSIONS)
@pytest.mark.parametrize("eager", [True, False])
def test_cross_batch_all_sums(rows, distance, exclusion, eager):
    x, c, x_labels, c_labels, opts = _case(exclusion, seed=1)
    margin = MARGINS[distance]
    excluded = _excluded(B, M, **opts)
    lx, lc = _leaves(x, c)
    expected, count_all, count_nonzero = _batch_all_reference(
        lx, lc, x_labels, c_labels, distance, margin, excluded
    )
    assert 0 < count_nonzero < count_all  # the case has hinges on both sides of 0
    gx, gc = _leaves(x, c)
    got, got_all, got_nonzero = _tiled.cross_batch_all_sums(
        gx, gc, x_labels, c_labels, distance=distance, margin=margin, rows=rows, eager=eager,
        **opts,
    )  # fmt: skip
    assert (int(got_all), int(got_nonzero)) == (count_all, count_nonzero)
    assert got_all.dtype == got_nonzero.dtype == torch.long
    _close(got, expected.detach())
    # a constant upstream weight (a mean: the eager gradient), then per-anchor weights
    for weights in (torch.tensor(0.25, dtype=x.dtype), torch.linspace(-1, 2, B).double()):
        expected_grads = _grads(expected, [lx, lc], weights)
        got_grads = _grads(got, [gx, gc], weights)
        for got_grad, expected_grad in zip(got_grads, expected_grads, strict=True):
            _close(got_grad, expected_grad)


def test_cross_batch_all_eager_gradient_is_reused(monkeypatch):
    x, c, x_labels, c_labels, opts = _case("self+ids")
    calls = []
    original = _tiled._cross_batch_all_pass

    def counting(*args, **kwargs):
        calls.append(args[8] is not None)  # weights: a gradient is built
        return original(*args, **kwargs)

    monkeypatch.setattr(_tiled, "_cross_batch_all_pass", counting)
    gx, gc = _leaves(x, c)
    kwargs = {"distance": "euclidean", "margin": 2.0, "rows": 3, **opts}
    per_anchor, *_ = _tiled.cross_batch_all_sums(gx, gc, x_labels, c_labels, eager=True, **kwargs)
    torch.autograd.grad(per_anchor.mean(), [gx, gc])
    assert calls == [True]  # built in the forward, scaled in backward
    per_anchor, *_ = _tiled.cross_batch_all_sums(gx, gc, x_labels, c_labels, eager=True, **kwargs)
    torch.autograd.grad((per_anchor * torch.arange(B)).sum(), [gx, gc])
    assert calls == [True, True, True]  # not proportional: computed again with the weights


# --------------------------------------------------------------------------------------
# gradcheck, duplicates


@pytest.mark.parametrize("distance", DISTANCES)
def test_cross_kernels_gradcheck(distance):
    x, c, x_labels, c_labels, opts = _case("self+ids", seed=2, b=4, m=6)
    x.requires_grad_(True)
    c.requires_grad_(True)
    margin = MARGINS[distance]
    for caffe_legacy in (False, True):
        assert torch.autograd.gradcheck(
            lambda x, c, legacy=caffe_legacy: _tiled.cross_contrastive_sum(
                x, c, x_labels, c_labels, distance=distance, margin=margin,
                caffe_legacy=legacy, rows=3, **opts,
            )[0],
            (x, c),
        )  # fmt: skip
    for eager in (False, True):
        assert torch.autograd.gradcheck(
            lambda x, c, eager=eager: _tiled.cross_batch_all_sums(
                x, c, x_labels, c_labels, distance=distance, margin=margin, rows=3,
                eager=eager, **opts,
            )[0],
            (x, c),
        )  # fmt: skip


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("rows", [1, 64])
def test_zero_distances_and_duplicate_rows_have_finite_gradients(distance, rows):
    x, c, x_labels, c_labels, opts = _case("self", seed=3)
    c[7] = c[3]  # a duplicated candidate: another anchor's zero distance
    c[9] = 0.0  # a zero row
    x = c[OFFSET : OFFSET + B].clone()
    x[0] = c[5]  # an anchor on another candidate
    x_labels[0] = c_labels[5]
    margin = MARGINS[distance]
    for legacy in (False, True):
        gx, gc = _leaves(x, c)
        total, _ = _tiled.cross_contrastive_sum(
            gx, gc, x_labels, c_labels, distance=distance, margin=margin,
            caffe_legacy=legacy, rows=rows, **opts,
        )  # fmt: skip
        grads = _grads(total, [gx, gc])
        assert torch.isfinite(total) and all(torch.isfinite(g).all() for g in grads)
    for eager in (False, True):
        gx, gc = _leaves(x, c)
        per_anchor, *_ = _tiled.cross_batch_all_sums(
            gx, gc, x_labels, c_labels, distance=distance, margin=margin, rows=rows,
            eager=eager, **opts,
        )  # fmt: skip
        grads = _grads(per_anchor, [gx, gc], torch.linspace(0.5, 1.5, B).double())
        assert torch.isfinite(per_anchor).all() and all(torch.isfinite(g).all() for g in grads)


# --------------------------------------------------------------------------------------
# batch-hard indices


@pytest.mark.parametrize("rows", TILES)
@pytest.mark.parametrize("distance", [*DISTANCES, "manhattan"])
@pytest.mark.parametrize("exclusion", EXCLUSIONS)
@pytest.mark.parametrize("data", ["random", "grid"])
def test_cross_batch_hard_indices(rows, distance, exclusion, data):
    x, c, x_labels, c_labels, opts = _case(exclusion, seed=4)
    if data == "grid":  # exact distances, many ties: the lowest index wins
        g = torch.Generator().manual_seed(7)
        if distance == "cosine":  # axis directions at several lengths
            axes = torch.cat([torch.eye(D), -torch.eye(D)]).double()
            grid = axes[torch.randint(0, 2 * D, (M + B,), generator=g)]
            grid = grid * torch.randint(1, 4, (M + B, 1), generator=g)
        else:
            grid = torch.randint(-2, 3, (M + B, D), generator=g).double()
        c = grid[:M]
        x = grid[M:] if opts["self_index"] is None else c[OFFSET : OFFSET + B].clone()
    excluded = _excluded(B, M, **opts)
    d = _Distances(distance, x, c)
    farthest, closest, valid = _tiled.cross_batch_hard_indices(
        x, c, x_labels, c_labels, distance=distance, rows=rows, **opts
    )
    for i in range(B):
        kept = [j for j in range(M) if not excluded[i, j]]
        positives = [j for j in kept if c_labels[j] == x_labels[i]]
        negatives = [j for j in kept if c_labels[j] != x_labels[i]]
        assert bool(valid[i]) == bool(positives and negatives)
        if positives:
            top = max(float(d[i, j]) for j in positives)
            assert int(farthest[i]) == min(j for j in positives if float(d[i, j]) == top)
        if negatives:
            low = min(float(d[i, j]) for j in negatives)
            assert int(closest[i]) == min(j for j in negatives if float(d[i, j]) == low)
    if exclusion == "empty_row":
        assert not valid[0] and valid[1:].any()


def test_cross_batch_hard_without_candidates():
    x = torch.randn(3, D)
    farthest, closest, valid = _tiled.cross_batch_hard_indices(
        x, x[:0], torch.zeros(3), torch.zeros(0), distance="euclidean", rows=2
    )
    assert farthest.tolist() == closest.tolist() == [0, 0, 0] and not valid.any()


def test_ids_come_together():
    x, c, x_labels, c_labels, _ = _case("none")
    kw = {"rows": 2, "x_ids": torch.arange(B)}
    with pytest.raises(ValueError, match="x_ids and c_ids"):
        _tiled.cross_contrastive_sum(
            x, c, x_labels, c_labels, distance="cosine", margin=1.0, caffe_legacy=False, **kw
        )
    with pytest.raises(ValueError, match="x_ids and c_ids"):
        _tiled.cross_batch_all_sums(
            x, c, x_labels, c_labels, distance="cosine", margin=1.0, eager=True, **kw
        )
    with pytest.raises(ValueError, match="x_ids and c_ids"):
        _tiled.cross_batch_hard_indices(x, c, x_labels, c_labels, distance="cosine", **kw)


# --------------------------------------------------------------------------------------
# x = c, self_index = arange(N): the square kernels


@pytest.mark.parametrize("rows", [1, 4, 64])
@pytest.mark.parametrize("distance", DISTANCES)
def test_candidates_equal_to_the_anchors_give_the_square_kernels(rows, distance):
    g = torch.Generator().manual_seed(6)
    n = 13
    z = torch.randn(n, D, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (n,), generator=g)
    own = torch.arange(n)
    margin = MARGINS[distance]
    weights = torch.linspace(-1, 2, n).double()
    for legacy in (False, True):
        opts = {"distance": distance, "margin": margin, "caffe_legacy": legacy, "rows": rows}
        (square_z,), (cross_z,) = _leaves(z), _leaves(z)
        square = _tiled.all_pairs_contrastive_sum(square_z, labels, **opts)
        cross, count = _tiled.cross_contrastive_sum(
            cross_z, cross_z, labels, labels, self_index=own, **opts
        )
        assert int(count) == n * (n - 1)
        _close(cross / 4, square)
        _close(_grads(cross / 4, [cross_z])[0], _grads(square, [square_z])[0])
    for eager in (False, True):
        opts = {"distance": distance, "margin": margin, "rows": rows, "eager": eager}
        (square_z,), (cross_z,) = _leaves(z), _leaves(z)
        square = _tiled.batch_all_triplet_sums(square_z, labels, **opts)
        cross = _tiled.cross_batch_all_sums(
            cross_z, cross_z, labels, labels, self_index=own, **opts
        )
        _close(cross[0], square[0])
        assert (int(cross[1]), int(cross[2])) == (int(square[1]), int(square[2]))
        _close(_grads(cross[0], [cross_z], weights)[0], _grads(square[0], [square_z], weights)[0])
    z[5] = z[2]  # a tie
    labels[5] = labels[2]
    for name in (distance, "manhattan"):
        square = _tiled.batch_hard_indices(z, labels, distance=name, rows=rows)
        cross = _tiled.cross_batch_hard_indices(
            z, z, labels, labels, distance=name, rows=rows, self_index=own
        )
        for s, t in zip(square, cross, strict=True):
            assert torch.equal(s, t)


# --------------------------------------------------------------------------------------
# torch.compile: the masks and the cross kernels make no decision on the host


@pytest.mark.slow
@pytest.mark.filterwarnings(
    "ignore:.*autograd.function.Function.* should not be instantiated:DeprecationWarning"
)
def test_masks_and_cross_kernels_compile_into_one_graph():
    x, c, x_labels, c_labels, opts = _case("self+ids", seed=8)
    x, c = x.float(), c.float()

    def loss(x, c):
        lse = _tiled.row_logsumexp(
            x, c, rows=3, hint=torch.ones(B), self_index=opts["self_index"],
            row_ids=opts["x_ids"], column_ids=opts["c_ids"][:9], keep_index=torch.arange(B),
        )  # fmt: skip
        total, _ = _tiled.cross_contrastive_sum(
            x, c, x_labels, c_labels, distance="euclidean", margin=2.0, caffe_legacy=False,
            rows=3, **opts,
        )  # fmt: skip
        per_anchor, _, _ = _tiled.cross_batch_all_sums(
            x, c, x_labels, c_labels, distance="cosine", margin=0.8, rows=3, eager=True, **opts
        )
        return lse.sum() + total + per_anchor.sum()

    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    leaves, compiled_leaves = _leaves(x, c), _leaves(x, c)
    expected, got = loss(*leaves), compiled(*compiled_leaves)
    torch.testing.assert_close(got, expected)
    for g, e in zip(_grads(got, compiled_leaves), _grads(expected, leaves), strict=True):
        torch.testing.assert_close(g, e)
