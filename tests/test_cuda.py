"""The losses on a CUDA device: same values as on the CPU, errors for mixed devices.

These run only where PyTorch sees a CUDA device (CI has none; they are run by hand on a
GPU machine, see the notes of the core issue).
"""

from __future__ import annotations

import pytest
import torch

import contrastkit.functional as F

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


CALLS = [
    (
        "contrastive",
        lambda a, b, c: F.contrastive_loss(a, b, torch.tensor([1, 0] * 8, device=a.device)),
    ),
    ("triplet", lambda a, b, c: F.triplet_loss(a, b, c, margin=0.5)),
    ("info_nce", lambda a, b, c: F.info_nce(a, b, negatives=c)),
    ("clip", lambda a, b, c: F.info_nce(a, b, symmetric=True)),
    ("nt_xent", lambda a, b, c: F.nt_xent(a, b)),
    ("supcon", lambda a, b, c: F.supcon(a, torch.arange(16, device=a.device) % 4)),
    (
        "cosine",
        lambda a, b, c: F.cosine_similarity_loss(a, b, torch.linspace(-1, 1, 16, device=a.device)),
    ),
]


@pytest.mark.parametrize(("name", "fn"), CALLS, ids=[c[0] for c in CALLS])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(name, fn, dtype):
    inputs = [randn(16, 8, seed=i).to(dtype) for i in range(3)]
    expected = fn(*inputs)
    on_gpu = [t.cuda().requires_grad_() for t in inputs]
    loss = fn(*on_gpu)
    assert loss.device.type == "cuda"
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(loss.cpu(), expected, rtol=tol, atol=tol)
    loss.backward()
    grads = [t.grad for t in on_gpu if t.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_mixed_devices_are_refused():
    a = randn(4, 3).cuda()
    with pytest.raises(ValueError, match="same device"):
        F.triplet_loss(a, a.cpu(), a, margin=1.0)
    with pytest.raises(ValueError, match="same device"):
        F.supcon(a, torch.tensor([0, 0, 1, 1]))
