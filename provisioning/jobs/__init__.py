"""Slow work a worker does for an account: the job row, its states, progress and error report."""
