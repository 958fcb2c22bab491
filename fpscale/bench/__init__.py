"""Scenarios, the run, NIST 1:N metrics, projection, reports and the CLI.

The flow: ``scenario`` -> ``run`` (steps, executors, checkpoints, planner)
-> ``measure`` (metrics, ladder, projection) -> ``store`` (results folder,
typed summary) -> ``report``; ``tools`` holds the commands beside a run and
``cli`` the ``fpscale`` command line. Importing it points numba's cache as
``fpscale`` explains.
"""
