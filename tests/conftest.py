"""Shared test configuration: Hypothesis profiles and paths.

Profiles (select with ``HYPOTHESIS_PROFILE=name`` or ``pytest --hypothesis-profile=name``):

- ``default``: a moderate number of examples, for the everyday run (< 10 minutes on 2 cores).
- ``thorough``: many more examples, for people verifying refimpl itself.
- ``ci``: like default but derandomized, so CI is repeatable.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.register_profile(
    "ci",
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
