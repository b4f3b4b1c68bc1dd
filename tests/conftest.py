"""Test-session settings.

Hypothesis draws new examples on every run; under CI (``CI`` set in the environment) it
draws them from a fixed seed instead, so that a CI run is reproducible and its result is
that of the change, not of the draw. Local runs keep exploring: an example they find is
a bug to fix and then a regression test to add (see
``test_functional.test_a_row_shorter_than_1e_12_is_divided_by_1e_12_like_torch_normalize``).
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
