"""Fixtures: the real-broker ones come from the project's own pytest plugin."""

from __future__ import annotations

pytest_plugins = ["shared.testing", "tests.fixtures", "tests.chaos"]
