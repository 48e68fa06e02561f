"""The ``dovecote`` command: run the federation (and, as it grows, watch and poke the bus)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path

from dovecote.config import ConfigError, Settings, data_dir
from dovecote.federation import FederationError
from dovecote.tools import (
    admin,
    broker,
    contract,
    deadletter,
    logins_command,
    publish,
    run_secrets,
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
    private_port = args.private_broker
    if private_port is None and env.get("PRIVATE_BROKER_PORT", "").strip():
        try:
            private_port = int(env["PRIVATE_BROKER_PORT"])
        except ValueError:
            print("dovecote run: PRIVATE_BROKER_PORT must be a port number", file=sys.stderr)
            return 2
    if private_port is not None and not 0 <= private_port <= 65535:
        print(f"dovecote run: no port {private_port}: use 0-65535", file=sys.stderr)
        return 2
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
        return _run(plan, env, folder, lock, lock_fd, args.fresh_secrets, private_port)
    finally:
        lock.release()


def _run(
    plan: dict[str, int],
    env: dict[str, str],
    folder: Path,
    lock: runlock.RunLock,
    lock_fd: int,
    fresh_secrets: bool = False,
    private_port: int | None = None,
) -> int:
    try:
        kept = run_secrets.settle(env, folder, fresh=fresh_secrets)
        choice = broker.choose(env, folder / "broker", private_port=private_port)
    except (broker.BrokerUnavailable, run_secrets.SecretsFileError) as exc:
        print(f"dovecote run: {exc}", file=sys.stderr)
        return 1
    env["MQTT_URL"] = choice.url
    # The operations page is for operators; on a demo run that is Ada.
    env["OPERATORS"] = env.get("OPERATORS", "").strip() or "ada"
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
        )
        sup.say(
            f"scripts:        make a token on {url}/account, then "
            f"curl -H 'Authorization: Bearer <token>' -F file=@cat.jpg {url}/api/images"
        )
        sup.say(f"operations:     {url}/operations (operators: {env['OPERATORS']})")
        sup.say(
            f"metrics:        curl -H 'Authorization: Bearer {env['METRICS_TOKEN']}' {url}/metrics"
        )
    sup.say(secrets_line(kept))
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


def secrets_line(kept: run_secrets.Origins) -> str:
    """Which secrets this run made or reused, where they are kept, how to replace them."""
    by_origin: dict[str, list[str]] = {}
    for name in run_secrets.MAKERS:
        by_origin.setdefault(kept[name], []).append(name)
    parts = []
    if by_origin.get("new"):
        parts.append(f"made {', '.join(by_origin['new'])}")
    if by_origin.get("kept"):
        parts.append(f"reused {', '.join(by_origin['kept'])} from the last run")
    if by_origin.get("env"):
        parts.append(f"took {', '.join(by_origin['env'])} from the environment")
    where = kept.path
    with contextlib.suppress(ValueError):  # shorter when under the folder it runs from
        where = where.relative_to(Path.cwd())
    if set(by_origin) == {"env"}:
        return f"secrets:        {parts[0]}; none kept"
    return (
        f"secrets:        {'; '.join(parts)}; kept in {where} (0600) for the next run; "
        "--fresh-secrets makes new ones (and signs everyone out)"
    )


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
    run.add_argument(
        "--fresh-secrets",
        action="store_true",
        help="replace the kept demo password, session key, service and metrics tokens "
        "(run-secrets.json in the data folder): signs everyone out",
    )
    run.add_argument(
        "--private-broker",
        type=int,
        default=None,
        metavar="PORT",
        help="start a private Mosquitto on PORT (0: any free port) even if another broker is "
        "configured or answers on 1883 (default: PRIVATE_BROKER_PORT if set)",
    )
    run.set_defaults(func=cmd_run)
    for command in (
        scaffold,
        tail,
        publish,
        deadletter,
        trace,
        logins_command,
        admin,
        contract,
    ):  # each module adds its own subcommand
        command.add_command(sub)
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:  # Ctrl-C before the supervisor took signals over
        print(f"dovecote {args.command}: interrupted", file=sys.stderr)
        return 130
    except FederationError as exc:  # which services? the manifest is missing or wrong
        print(f"dovecote {args.command}: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
