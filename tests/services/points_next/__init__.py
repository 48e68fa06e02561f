"""The next version of points, for tests/test_rolling_upgrade.py: services/points run with
the next contract (``topics.py`` here: an award gains an optional field), which it fills."""
