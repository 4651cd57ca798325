"""Comparing runs: `python -m metareward.compare <runs or multirun dirs>` prints their table and plots."""
