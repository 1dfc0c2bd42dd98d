"""Benchmarks of optimizers on real networks: tasks, tuning, seeds, time-to-target, reports."""
