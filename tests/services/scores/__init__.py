"""A test service with retained state on a topic with a parameter (tests/test_runtime.py)."""
