"""What the command needs beyond the library: the ``app`` extra, checked before any work.

``pip install contrastkit`` installs the library (torch, numpy, safetensors, tqdm); the
command's evaluation, figures and image readers need scikit-learn, matplotlib and Pillow,
which ``pip install "contrastkit[app]"`` adds. :func:`check_app_extra` finds a missing one
without importing anything, so that the command can say so in one line before it starts.
"""

from __future__ import annotations

import importlib.util

__all__ = ["APP_EXTRA", "MissingExtraError", "check_app_extra", "missing_app_packages"]

# The importable module of each distribution of the ``app`` extra.
APP_EXTRA = {"sklearn": "scikit-learn", "matplotlib": "matplotlib", "PIL": "pillow"}


class MissingExtraError(RuntimeError):
    """A package of the ``app`` extra is not installed; the message says how to get it."""


def missing_app_packages() -> list[str]:
    """The distributions of the ``app`` extra that cannot be imported, in order."""
    return [
        distribution
        for module, distribution in APP_EXTRA.items()
        if importlib.util.find_spec(module) is None
    ]


def check_app_extra() -> None:
    """Raise :class:`MissingExtraError` naming what is missing and the command to install it."""
    missing = missing_app_packages()
    if missing:
        raise MissingExtraError(
            f"the contrastkit command needs {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: "
            "pip install 'contrastkit[app]'"
        )
