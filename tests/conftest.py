import bench  # noqa: F401  (points numba's cache at a per-version folder before numba loads)
from hypothesis import HealthCheck, settings

# numba compiles on first call: allow slow first examples
settings.register_profile("fpscale", deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fpscale")
