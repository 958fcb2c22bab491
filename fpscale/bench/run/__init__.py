"""Running a scenario: the step order, where the work executes, checkpoints,
the memory plan. ``fpscale.bench.run.steps.run_scenario`` is the entry point."""
