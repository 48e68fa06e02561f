"""The ``dovecote`` command: run the federation (and, as it grows, watch and poke the bus)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import sys
from pathlib import Path

from dovecote.config import ConfigError, Settings, data_dir
from dovecote.tools import (
    admin,
    broker,
    deadletter,
    logins,
    publish,
    runlock,
    scaffold,
    supervisor,
    tail,
    trace,
)


def cmd_run(args: argparse.Namespace) -> int:
    known = supervisor.discover()
    try:
        plan = supervisor.parse_plan(args.services, known)
    except ValueError as exc:
        print(f"dovecote run: {exc}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    folder = Path(args.data_dir).resolve() if args.data_dir else data_dir(env).resolve()
    env["DOVECOTE_DATA_DIR"] = str(folder)  # the workers' stores, the broker, the lock
    # First of all: a second generation in this folder would take the first one's client
    # ids (sessions), port and stores.
    lock = runlock.RunLock(folder)
    try:
        lock_fd = lock.acquire(["dovecote", "run", *args.services])
    except runlock.AlreadyRunning as exc:
        print(f"dovecote run: {exc}", file=sys.stderr)
        return 1
    try:
        return _run(plan, env, folder, lock, lock_fd)
    finally:
        lock.release()


def _run(
    plan: dict[str, int], env: dict[str, str], folder: Path, lock: runlock.RunLock, lock_fd: int
) -> int:
    try:
        choice = broker.choose(env, folder / "broker")
    except broker.BrokerUnavailable as exc:
        print(f"dovecote run: {exc}", file=sys.stderr)
        return 1
    env["MQTT_URL"] = choice.url
    # Services authenticate to each other's REST resources (the resizer storing thumbnails
    # at the gateway) with this; a run with none configured gets a fresh one of its own.
    fresh_token = not env.get("DOVECOTE_SERVICE_TOKEN", "").strip()
    if fresh_token:
        env["DOVECOTE_SERVICE_TOKEN"] = secrets.token_urlsafe(32)
    # The gateway encrypts sessions with this (a Fernet key); a fresh one per run signs
    # everyone out when the run stops. The demo people's password, the same way.
    fresh_key = not env.get("DOVECOTE_SESSION_KEY", "").strip()
    if fresh_key:
        env["DOVECOTE_SESSION_KEY"] = base64.urlsafe_b64encode(os.urandom(32)).decode()
    fresh_password = not env.get("DEMO_PASSWORD", "").strip()
    if fresh_password:
        env["DEMO_PASSWORD"] = secrets.token_urlsafe(9)
    # The operations page is for operators; on a demo run that is Ada. A scraper reads
    # /metrics with this token (a fresh one per run when none is set).
    env["OPERATORS"] = env.get("OPERATORS", "").strip() or "ada"
    fresh_metrics = not env.get("METRICS_TOKEN", "").strip()
    if fresh_metrics:
        env["METRICS_TOKEN"] = secrets.token_urlsafe(24)
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        print(f"dovecote run: configuration error: {exc}", file=sys.stderr)
        if choice.private:
            choice.private.stop()
        return 2
    sup = supervisor.Supervisor(plan, env, keep_fds=(lock_fd,), on_spawn=lock.record)
    sup.say(f"broker: {choice.description}")
    b = settings.broker
    sup.say(f"watch the bus:  mosquitto_sub -h {b.host} -p {b.port} -t '{settings.root}/#' -v")
    if "gateway" in plan:
        url, password = settings.public_url, env["DEMO_PASSWORD"]
        sup.say(f"dashboard:      {url}/")
        sup.say(
            f"sign in:        {url}/signin as ada or grace (they follow each other), "
            f"password {password}"
            + ("   (a fresh DEMO_PASSWORD: set one to keep it)" if fresh_password else "")
        )
        sup.say(
            f"scripts:        make a token on {url}/account, then "
            f"curl -H 'Authorization: Bearer <token>' -F file=@cat.jpg {url}/api/images"
        )
        sup.say(f"operations:     {url}/operations (operators: {env['OPERATORS']})")
        sup.say(
            f"metrics:        curl -H 'Authorization: Bearer {env['METRICS_TOKEN']}' {url}/metrics"
            + ("   (a fresh METRICS_TOKEN: set one to keep it)" if fresh_metrics else "")
        )
    if fresh_token:
        sup.say("service token:  a fresh DOVECOTE_SERVICE_TOKEN for this run (set one to keep it)")
    if fresh_key:
        sup.say("session key:    a fresh DOVECOTE_SESSION_KEY: sessions end with this run")
    sup.say(
        "workers:        "
        + ", ".join(f"{s}×{n}" for s, n in plan.items())
        + "   (Ctrl-C stops everything)"
    )
    try:
        code = asyncio.run(sup.run())
    finally:
        if choice.private:
            sup.say("stopping the private broker")
            try:
                choice.private.stop()
            except KeyboardInterrupt:  # Ctrl-C again: no waiting for it to save
                choice.private.kill()
                raise
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dovecote", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the federation: every service, or a selection")
    run.add_argument(
        "services",
        nargs="*",
        metavar="SERVICE[=N]",
        help="e.g. builder resizer=3 gateway=2 (default: every service once)",
    )
    run.add_argument(
        "--data-dir",
        default=None,
        help="where this run keeps its data: every store, a private broker's, the run lock "
        "(default: DOVECOTE_DATA_DIR, else .dovecote/ in the project folder)",
    )
    run.set_defaults(func=cmd_run)
    for command in (
        scaffold,
        tail,
        publish,
        deadletter,
        trace,
        logins,
        admin,
    ):  # each module adds its own subcommand
        command.add_command(sub)
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:  # Ctrl-C before the supervisor took signals over
        print(f"dovecote {args.command}: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
