"""Fixtures: the real-broker ones come from the project's own pytest plugin."""

from __future__ import annotations

import pytest

pytest_plugins = ["dovecote.testing.plugin", "tests.fixtures", "tests.chaos"]


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `make test` spreads the tests over pytest-xdist workers (--dist loadgroup). Every
    # worker starts its own private broker; the RabbitMQ tests share one worker, so the
    # suite starts one RabbitMQ node (heavy on 2 cores), not one per worker.
    # The cluster tests share one worker too, and one cluster (three nodes).
    for item in items:
        callspec = getattr(item, "callspec", None)
        if item.get_closest_marker("cluster") is not None:
            item.add_marker(pytest.mark.xdist_group("cluster"))
        elif callspec is not None and callspec.params.get("broker") == "rabbitmq":
            item.add_marker(pytest.mark.xdist_group("rabbitmq"))
