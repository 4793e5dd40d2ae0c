"""Data feeds, evolution rules, the evolution cycle and the scheduler daemon."""
