"""Commands beside a single run: sweeps, backend scaling, population
statistics and re-projection of a finished run."""
