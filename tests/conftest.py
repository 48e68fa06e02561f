"""Fixtures: the real-broker ones come from the project's own pytest plugin."""

from __future__ import annotations

from typing import Any

import pytest

pytest_plugins = ["dovecote_testing.plugin", "tests.fixtures", "tests.chaos"]


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The fast loop (make check: --no-broker) installs nothing: a test that needs what
    # `make test` installs with npm (the official AsyncAPI parser) is left out of it, and
    # counted as deselected, not passed; `make test` installs it and runs it.
    # So are the tests that measure fresh interpreters (~9 s of CPU), to keep it fast.
    if config.getoption("no_broker"):
        left_out = [
            item
            for item in items
            if item.get_closest_marker("npm") or item.get_closest_marker("fresh_process")
        ]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = [item for item in items if item not in left_out]
    # `make test` spreads the tests over pytest-xdist workers (--dist loadgroup). Every
    # worker starts its own private brokers when a test first needs one (a RabbitMQ node
    # each: ~16 s, ~130 MB). The cluster tests share one worker and one cluster (three
    # nodes): three clusters on two cores would starve everything else. The RabbitMQ tests
    # are not grouped: on one worker they made the suite's long pole (16 min 47 s measured,
    # the cluster tests beside them), spread they run beside the Mosquitto ones.
    for item in items:
        if item.get_closest_marker("cluster") is not None:
            if xdist_group(item.nodeid) is None:
                raise pytest.UsageError(
                    f"{item.nodeid} is marked cluster: add its file to CLUSTER_FILES "
                    "(tests/conftest.py), or its worker starts a cluster of its own"
                )
            item.add_marker(pytest.mark.xdist_group("cluster"))


CLUSTER_FILES = ("tests/test_cluster.py::", "tests/test_two_machines.py::")


def xdist_group(nodeid: str) -> str | None:
    """The group a test runs in, told from its id alone (the scheduler sees nothing else):
    the tests on the cluster (marked ``cluster``, in these files: a test marked so in
    another file would start a second cluster on another worker, ~25 s and three nodes)."""
    return "cluster" if nodeid.startswith(CLUSTER_FILES) else None


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` groups the tests above: xdist 3.8 reads a group from the id it
    rewrites at collection, ``<id>@<group>``, and pytest 9 ids no longer take that rewrite
    (``Node.nodeid`` is ``str(self._id)``), so the marks above went unread and every worker
    started its own cluster (measured: three clusters in one make test)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ByGroup(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid) or super()._split_scope(nodeid)

    return ByGroup(config, log)
