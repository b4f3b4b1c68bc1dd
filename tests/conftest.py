"""Test-session settings.

Hypothesis draws new examples on every run; under CI (``CI`` set in the environment) it
draws them from a fixed seed instead, so that a CI run is reproducible and its result is
that of the change, not of the draw. Local runs keep exploring: an example they find is
a bug to fix and then a regression test to add (see
``test_functional.test_a_row_shorter_than_1e_12_is_divided_by_1e_12_like_torch_normalize``).
"""

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from process_group import ProcessGroups

settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def process_groups() -> Iterator[ProcessGroups]:
    """Groups of 2 and 3 gloo processes, each spawned once per session (on first use)."""
    groups = ProcessGroups()
    yield groups
    groups.close()
