"""``dovecote logins init|person``: the broker's logins written before it starts, and a
person's minted on a running one (what each login may do: ``dovecote.tools.logins``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from dovecote import topics
from dovecote.config import ConfigError, Settings, parse_mqtt_url
from dovecote.logs import setup_logging
from dovecote.tools import manifest
from dovecote.tools.logins import (
    ADMIN,
    SHARED_AND_RETAINED,
    Login,
    LoginError,
    dynsec_config,
    mint_person,
    person_grant,
    standing_logins,
)


def worker_env(login: Login, url: str) -> str:
    """A login's environment file: what its process needs to connect as it."""
    lines = [f"MQTT_URL={url}", f"MQTT_CLIENT_ID={login.client_id}"]
    lines.append(f"DOVECOTE_BROKER_CAPABILITIES={SHARED_AND_RETAINED}")
    return "\n".join(lines) + "\n"


def parse_workers(specs: list[str], known: list[str]) -> dict[str, int]:
    """``["gateway=2", "builder"]`` -> {"gateway": 2, "builder": 1}; empty: each once."""
    if not specs:
        return dict.fromkeys(known, 1)
    out: dict[str, int] = {}
    for spec in specs:
        name, _, count = spec.partition("=")
        if name not in known:
            raise ValueError(f"unknown service {name!r}; known: {', '.join(known)}")
        if not (count or "1").isdigit() or not 1 <= int(count or "1") <= 64:
            raise ValueError(f"bad worker count in {spec!r} (1-64)")
        out[name] = int(count or "1")
    return out


def cmd_init(args: argparse.Namespace) -> int:
    """Write the plugin's file and one environment file per login (mode 0600)."""
    try:
        workers = parse_workers(args.workers, manifest.load().logins())
        broker = parse_mqtt_url(args.url)
        topics.check_id(args.root, "root")
    except (ValueError, ConfigError, topics.TopicError) as exc:
        print(f"dovecote logins init: {exc}", file=sys.stderr)
        return 2
    every = standing_logins(args.root, workers)
    target = Path(args.file)
    if target.exists() and not args.force:
        print(f"dovecote logins init: {target} exists (--force replaces it)", file=sys.stderr)
        return 1
    env_dir = Path(args.env_dir)
    env_dir.mkdir(parents=True, exist_ok=True)
    _write_secret(target, json.dumps(dynsec_config(args.root, every), indent=2) + "\n")
    for login in every:
        url = login.url(broker.scheme, broker.host, broker.port)
        _write_secret(env_dir / f"{login.username}.env", worker_env(login, url))
    print(f"wrote {target} and {len(every)} login(s) to {env_dir}/<login>.env")
    return 0


def _write_secret(path: Path, text: str) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


def cmd_person(args: argparse.Namespace) -> int:
    """Mint a person's device login on the running broker, as the admin (MQTT_URL)."""
    try:
        settings = Settings.from_env()
        topics.check_id(args.person, "person")
    except (ConfigError, topics.TopicError) as exc:
        print(f"dovecote logins person: {exc}", file=sys.stderr)
        return 2
    setup_logging("ERROR")
    admin_id = settings.get_str("MQTT_CLIENT_ID", f"{settings.root}-{ADMIN}")
    try:
        login = asyncio.run(mint_person(settings.broker, admin_id, args.person, settings.root))
    except LoginError as exc:
        print(f"dovecote logins person: {exc}", file=sys.stderr)
        return 1
    topic = person_grant(args.person, settings.root).read[0]
    print(
        json.dumps(
            {
                "username": login.username,
                "password": login.password,
                "clientId": login.client_id,
                "topic": topic,
            },
            indent=2,
        )
    )
    return 0


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("logins", help="the broker's logins (Mosquitto's dynamic security)")
    verbs = p.add_subparsers(dest="verb", required=True)
    init = verbs.add_parser("init", help="the plugin's file and a login per worker (offline)")
    init.add_argument("file", help="the plugin's file to write (plugin_opt_config_file)")
    init.add_argument(
        "--workers", nargs="*", default=[], metavar="SERVICE[=N]", help="default: each once"
    )
    init.add_argument("--url", required=True, help="the broker, as workers reach it")
    init.add_argument("--env-dir", required=True, help="where each login's .env goes")
    init.add_argument("--root", default="dovecote", help="the topic root (DOVECOTE_ROOT)")
    init.add_argument("--force", action="store_true", help="replace an existing file")
    init.set_defaults(func=cmd_init)
    person = verbs.add_parser(
        "person", help="a person's own login: reads users/<person>/notifications only"
    )
    person.add_argument("person", help="the person's id, e.g. ada")
    person.set_defaults(func=cmd_person)
