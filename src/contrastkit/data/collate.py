"""A DataLoader collate for texts: strings in, token tensors out, numbers as tensors.

:class:`TokenizeTexts` turns a list of samples (a text; a pair of texts and a score or
label; an anchor, a positive and negatives; a text and its class) into one batch of
the same structure, each text field a mapping of token tensors that
:class:`contrastkit.models.TextEncoder` embeds. All the texts of a batch are padded to
one length, so that an objective embeds the fields of a batch in one forward pass
(:func:`contrastkit.training.embed_parts` joins mappings of one shape). torch only: the
tokenizer is any callable with the Hugging Face signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["TokenizeTexts"]


class TokenizeTexts:
    """Collate samples whose fields are texts or numbers into token tensors and tensors.

    A sample is a ``str``, or a tuple or list whose items are each a ``str`` (a text),
    a number or a 0-d tensor (a label or score), the same kinds at the same positions
    in every sample. The batch is a mapping of token tensors for a batch of texts, or a
    tuple with one item per field: a mapping of token tensors ``(B, T)`` per text field,
    ``torch.long`` for integer fields and ``torch.float32`` for real ones.

    Args:
        tokenizer: a Hugging Face tokenizer (called as ``tokenizer(texts, padding=...,
            truncation=True, max_length=..., return_tensors="pt")``).
        max_length: tokens kept per text (longer texts are truncated).

    Example:
        >>> class Chars:  # any callable with a tokenizer's signature
        ...     def __call__(self, texts, padding, truncation, max_length, return_tensors):
        ...         n = min(max(map(len, texts)), max_length)
        ...         ids = [[ord(c) for c in t[:n]] + [0] * (n - len(t[:n])) for t in texts]
        ...         mask = [[1] * len(t[:n]) + [0] * (n - len(t[:n])) for t in texts]
        ...         return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
        >>> collate = TokenizeTexts(Chars(), max_length=8)
        >>> a, b, y = collate([("hi", "hello", 1), ("yo", "hey", 0)])
        >>> a["input_ids"].shape, b["input_ids"].shape, y
        (torch.Size([2, 5]), torch.Size([2, 5]), tensor([1, 0]))
    """

    def __init__(self, tokenizer: Any, *, max_length: int = 128) -> None:
        if not callable(tokenizer):
            raise TypeError(f"tokenizer must be callable, got {type(tokenizer).__name__}")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an integer >= 2, got {max_length!r}")
        self.tokenizer, self.max_length = tokenizer, max_length

    def tokens(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """The token tensors of ``texts``, padded to the longest (at most ``max_length``)."""
        out = self.tokenizer(
            list(texts),
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {k: v for k, v in dict(out).items() if isinstance(v, Tensor)}

    def __call__(self, samples: Sequence[Any]) -> Any:
        """One batch from a list of samples (see the class notes)."""
        if not samples:
            raise ValueError("a batch must hold at least one sample, got none")
        if all(isinstance(s, str) for s in samples):
            return self.tokens(samples)
        if not all(isinstance(s, tuple | list) for s in samples):
            raise TypeError(
                "TokenizeTexts takes texts, or tuples of texts and numbers, got "
                f"{sorted({type(s).__name__ for s in samples})}"
            )
        width = len(samples[0])
        if any(len(s) != width for s in samples):
            raise ValueError(
                f"every sample of a batch must have {width} fields, got "
                f"{sorted({len(s) for s in samples})}"
            )
        fields = list(zip(*samples, strict=True))
        texts = [i for i, f in enumerate(fields) if all(isinstance(v, str) for v in f)]
        for i, field in enumerate(fields):
            if i not in texts and any(isinstance(v, str) for v in field):
                raise TypeError(f"field {i} of the samples mixes texts and other values")
        out: list[Any] = [None] * width
        if texts:  # one padding length for every text of the batch
            joined = self.tokens([v for i in texts for v in fields[i]])
            n = len(samples)
            for j, i in enumerate(texts):
                out[i] = {k: v[j * n : (j + 1) * n] for k, v in joined.items()}
        for i, field in enumerate(fields):
            if out[i] is None:
                out[i] = _numbers(i, field)
        return tuple(out)


def _numbers(index: int, field: Sequence[Any]) -> Tensor:
    values = [v.item() if isinstance(v, Tensor) and v.dim() == 0 else v for v in field]
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return torch.tensor(values, dtype=torch.long)
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return torch.tensor(values, dtype=torch.float32)
    kinds = sorted({type(v).__name__ for v in values})
    raise TypeError(f"field {index} of the samples must hold texts or numbers, got {kinds}")
