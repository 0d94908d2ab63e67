"""Hypothesis profiles: `ci` (default: fast, and derandomized so that every CI run checks
the same examples) and `thorough` (MINIFT_HYPOTHESIS=thorough: many random examples)."""
import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=400, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("MINIFT_HYPOTHESIS", "ci"))
