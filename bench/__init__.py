"""Benchmarks that print figures. Run from the repository root as `python -m bench.NAME` (`make bench` runs
them all), so `tests.fakes` imports as a package: no path tricks."""
