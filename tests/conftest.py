"""Suite-wide settings: Hypothesis is derandomized under CI (one fixed example stream, no
example database) so a failure there reproduces from the printed blob."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# The conformance suites' counts in the terminal summary (see that module).
from tests.conformance.reporting import (  # noqa: F401
    pytest_runtest_logreport,
    pytest_terminal_summary,
)

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, print_blob=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
