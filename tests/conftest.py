"""Hypothesis profiles: `ci` (default, fast) and `thorough` (MINIFT_HYPOTHESIS=thorough)."""
import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("MINIFT_HYPOTHESIS", "ci"))
