"""``python -m dovecote_testing.cluster``: a three-node RabbitMQ cluster on this machine, one
node lost and brought back on demand (docs/deploying.md, "Try it").

    python -m dovecote_testing.cluster            # start it; in the foreground, Ctrl-C stops it
    python -m dovecote_testing.cluster kill b     # from another shell: kill -9 of node b
    python -m dovecote_testing.cluster stop b     # a clean shutdown of node b
    python -m dovecote_testing.cluster start b    # node b again, with its data: it rejoins
    python -m dovecote_testing.cluster status     # each node, and which the cluster says run

It is test support (the tests' ``cluster`` fixture starts the same nodes), not a ``dovecote``
subcommand: the tools never import test support (tests/test_layers.py).

The first holds every node as its own child: it reaps a node that dies, however (a
``kill -9`` of its pid from elsewhere included), says so, and at the end stops every node
and the cluster's epmd. The others are its clients: they send one line to it through a
Unix socket in the cluster's folder (``--dir``, default ``.dovecote/cluster``) and print
the answer. A node killed from elsewhere was left a zombie by the foreground process
before, and could not be started again from it (issue 22).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from dovecote.config import data_dir
from dovecote.tools.broker import BrokerUnavailable
from dovecote_testing.cluster import NODES, PrivateCluster

COMMAND = "python -m dovecote_testing.cluster"
SOCKET = "control.sock"
MARK = ".dovecote-cluster"  # a folder with this was made by this command
ACTIONS = ("kill", "stop", "start", "status")
ANSWER_TIMEOUT = 300.0  # seconds a client waits: starting a node takes 10-60 s


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        nargs="?",
        choices=ACTIONS,
        help="to a running cluster: kill (-9), stop or start one node, or its status; "
        "without: start a cluster",
    )
    parser.add_argument("node", nargs="?", choices=NODES, help="a, b or c")
    parser.add_argument(
        "--dir",
        help="the cluster's folder: its nodes' data and logs, and the socket its commands "
        "go through (default: .dovecote/cluster in the data folder)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    folder = Path(args.dir) if args.dir else data_dir() / "cluster"
    if args.action is None:
        if args.node is not None:
            print(f"{COMMAND}: a node needs an action: kill, stop or start", file=sys.stderr)
            return 2
        return serve(folder)
    if args.action != "status" and args.node is None:
        print(f"{COMMAND} {args.action}: which node? a, b or c", file=sys.stderr)
        return 2
    return ask(folder, " ".join(filter(None, (args.action, args.node))))


# --- a client: one command to the running cluster ---------------------------------------------


def ask(folder: Path, line: str) -> int:
    path = folder / SOCKET
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(ANSWER_TIMEOUT)
            s.connect(str(path))
            s.sendall(line.encode() + b"\n")
            answer = _read_all(s)
    except OSError as exc:
        print(
            f"{COMMAND}: no cluster answers at {path} ({exc}): start one with "
            f"`{COMMAND}{'' if folder == data_dir() / 'cluster' else f' --dir {folder}'}`",
            file=sys.stderr,
        )
        return 1
    print(answer, end="" if answer.endswith("\n") else "\n")
    return 1 if answer.startswith("error") else 0


def _read_all(s: socket.socket) -> str:
    chunks = []
    while chunk := s.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


# --- the cluster's own process ------------------------------------------------------------


def serve(folder: Path) -> int:
    refused = _claim(folder)
    if refused:
        print(f"{COMMAND}: {refused}", file=sys.stderr)
        return 1
    print(f"starting three RabbitMQ nodes in {folder} (~30-60 s)...", flush=True)
    began = time.monotonic()
    cluster = PrivateCluster(folder)
    try:
        cluster.start()
    except BrokerUnavailable as exc:
        print(f"{COMMAND}: {exc}", file=sys.stderr)
        return 1
    stopped = False

    def stop(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        control(cluster, folder, lambda: stopped, ready=lambda: _hello(cluster, folder, began))
    finally:
        print("stopping the cluster", flush=True)
        cluster.stop()
    return 0


def control(
    cluster: PrivateCluster,
    folder: Path,
    stopped: Callable[[], bool],
    ready: Callable[[], None] = lambda: None,
) -> None:
    """Until ``stopped()``: answer the commands that come on the folder's socket, and reap
    (and report) the nodes that die unasked. ``ready`` once the socket listens."""
    path = folder / SOCKET
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listening:
        listening.bind(str(path))
        try:
            listening.listen()
            listening.settimeout(0.5)  # and look for dead nodes this often
            ready()
            while not stopped():
                for name, code in cluster.reap():
                    print(
                        f"node {name} died ({_exit(code)}); `{COMMAND} start {name}` "
                        "starts it again with its data",
                        flush=True,
                    )
                try:
                    conn, _ = listening.accept()
                except TimeoutError:
                    continue
                with conn, contextlib.suppress(OSError):
                    conn.settimeout(10)
                    line = conn.recv(1024).decode(errors="replace").strip()
                    answer = Controller(cluster).do(line)
                    print(f"[{line}] {answer}", flush=True)
                    conn.sendall(answer.encode() + b"\n")
        finally:
            path.unlink(missing_ok=True)


def _claim(folder: Path) -> str | None:
    """Make ``folder`` ours for a fresh cluster: None, or why not. A previous cluster's
    folder (our mark in it, nothing answering on its socket) is emptied first."""
    if (folder / SOCKET).exists() and _answers(folder / SOCKET):
        return f"a cluster already runs from {folder}: `{COMMAND} status` asks it"
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARK).exists():
            return f"{folder} is not empty and was not made by {COMMAND}: pick --dir"
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARK).write_text(f"made by {COMMAND}: emptied when it starts again\n")
    return None


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def _hello(cluster: PrivateCluster, folder: Path, began: float) -> None:
    where = "" if folder == data_dir() / "cluster" else f" --dir {folder}"
    print(f"clustered in {time.monotonic() - began:.0f} s:")
    for name, node in zip(NODES, cluster.nodes, strict=True):
        print(f"  node {name}: {node.name}  MQTT {node.port}  AMQP {node.amqp_port}")
    print(f"export MQTT_URL={cluster.url}")
    print(f"export DOVECOTE_AMQP_URL='{cluster.amqp_url}'")
    print("then, e.g.: dovecote run builder resizer=2 gateway   (Ctrl-C here stops the cluster)")
    print(
        f"lose a node from another shell: {COMMAND} kill a{where}   (or stop a), "
        f"then: {COMMAND} start a{where}; {COMMAND} status{where}",
        flush=True,
    )


def _exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class Controller:
    """One command line to the cluster: what happened, in one line (``error: ...`` if not)."""

    def __init__(self, cluster: PrivateCluster) -> None:
        self.cluster = cluster

    def do(self, line: str) -> str:
        action, _, name = line.partition(" ")
        name = name.strip()
        if action == "status":
            return self.status()
        if action not in ACTIONS or name not in NODES:
            return f"error: {line!r}: say kill, stop or start, and a, b or c"
        node = self.cluster.node(name)
        began = time.monotonic()
        if action in ("kill", "stop"):
            if not node.running:
                return f"error: node {name} is not running"
            pid = node.process.pid if node.process else 0
            if action == "kill":
                self.cluster.kill(name)
                return f"node {name} killed (kill -9 of pid {pid} and its group), reaped"
            self.cluster.stop_node(name)
            return f"node {name} stopped cleanly in {time.monotonic() - began:.1f} s"
        if node.running:
            return f"error: node {name} is running"
        try:
            self.cluster.restart(name)
        except (BrokerUnavailable, ValueError) as exc:
            return f"error: node {name} did not start: {exc}"
        return f"node {name} started and back in the cluster in {time.monotonic() - began:.1f} s"

    def status(self) -> str:
        running = self.cluster.running_nodes()
        lines = []
        for name, node in zip(NODES, self.cluster.nodes, strict=True):
            state = f"running (pid {node.process.pid})" if node.running and node.process else "down"
            clustered = "in the cluster" if node.name in running else "not in the cluster"
            lines.append(f"node {name}: {node.name}  MQTT {node.port}  {state}, {clustered}")
        return "\n".join(lines)
