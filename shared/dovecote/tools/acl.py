"""Broker permissions generated from the topic registry and the services' declarations.

``python -m dovecote.tools.acl`` (run by ``make docs``) writes

- ``deploy/mosquitto/roles.json``: the dynamic-security plugin's roles (one per service,
  the observer, the operator, the admin) and default access, for review; ``dovecote logins
  init`` writes the plugin's file from the same source, with a login per worker;
- ``deploy/rabbitmq/permissions.sh``: the ``rabbitmqctl`` commands for RabbitMQ's users,
  vhost permissions and topic permissions (matched against the dotted AMQP form);

and ``--check`` fails when the committed files differ (a test runs it). Who may read and
write what is ``dovecote.tools.logins``: each service reads exactly what its workers
subscribe to and writes what the registry says it publishes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from dovecote.project import PROJECT
from dovecote.tools import logins, manifest
from dovecote.tools.client import TOOL_IDS
from dovecote.tools.logins import OBSERVER, OPERATOR, writable
from dovecote.tools.supervisor import discover

MOSQUITTO_ROLES = PROJECT / "deploy" / "mosquitto" / "roles.json"
RABBITMQ_PERMISSIONS = PROJECT / "deploy" / "rabbitmq" / "permissions.sh"
__all__ = ["OBSERVER", "OPERATOR", "services", "writable"]


def services() -> list[str]:
    """Every service folder: each is a user of the broker."""
    return sorted(discover())


def mosquitto_roles(root: str = "dovecote") -> str:
    return json.dumps(logins.roles_config(root), indent=2) + "\n"


def _amqp_regex(filters: list[str]) -> str:
    """MQTT filters as one regex over RabbitMQ's routing keys (``/`` becomes ``.``)."""
    alts = []
    for f in filters:
        parts = [
            "[^.]+" if lv == "+" else ".*" if lv == "#" else re.escape(lv) for lv in f.split("/")
        ]
        alts.append(r"\.".join(parts))
    return "^(" + "|".join(alts) + ")$"


def _queues(client_ids: str) -> str:
    """The MQTT plugin's session queues of the client ids that ``client_ids`` matches."""
    return f"mqtt-subscription-{client_ids}qos[01]"


def rabbitmq_permissions(root: str = "dovecote", vhost: str = "dovecote") -> str:
    # RabbitMQ 3.10 cannot tie a client id to a user: any user may connect with any id
    # (and so disconnect its holder). What it can bind is the session queue that id
    # resumes, mqtt-subscription-<client id>qos1: each user may declare, bind and consume
    # only the queues of its own ids, so another's session is never consumed.
    # It also takes $share/<group>/<filter> literally and checks its read permission as
    # such: allowed beside each filter, or a worker's start-up probe for shared
    # subscriptions (shared/capabilities.py) has its connection closed.
    tools = "|".join(sorted(TOOL_IDS))
    lines = [
        "#!/bin/sh",
        "# Dovecote's RabbitMQ users and permissions, generated from the topic registry by",
        "# `python -m dovecote.tools.acl` (make docs): do not edit. Run once on a node of the",
        "# cluster (users and permissions are cluster-wide), with each password in the",
        "# environment:",
        "#   DOVECOTE_PW_<SERVICE>=... sh permissions.sh",
        "# Topic permissions are matched against the AMQP routing key, where MQTT's / is a .",
        "# A user may use only its own MQTT session queues: a service's workers connect as",
        f"# {root}-<service>-<instance>, the observer and the operator with the tools' ids",
        f"# ({root}-<login>-<tool>-<8 hex digits>): neither may resume the other's session.",
        "set -eu",
        f"VHOST={vhost}",
        'rabbitmqctl add_vhost "$VHOST" 2>/dev/null || true',
        "",
        "user() {  # name, password, its session queues, write regex, read regex",
        '  rabbitmqctl add_user "$1" "$2" 2>/dev/null || rabbitmqctl change_password "$1" "$2"',
        "  # configure: its own MQTT session queues; write/read: amq.topic and those queues",
        '  rabbitmqctl set_permissions -p "$VHOST" "$1" "^$3$" '
        '"^(amq\\.topic|$3)$" "^(amq\\.topic|$3)$"',
        '  rabbitmqctl set_topic_permissions -p "$VHOST" "$1" amq.topic "$4" "$5"',
        "}",
        "",
    ]
    for who, grant in (
        (OBSERVER, logins.observer_grant(root)),
        (OPERATOR, logins.operator_grant(root)),
    ):
        own = _queues(f"{root}-{who}-({tools})-[0-9a-f]{{8}}")
        write = _amqp_regex(list(grant.write)) if grant.write else "^$"
        read = _amqp_regex([*grant.read, *(f"$share/+/{f}" for f in grant.read)])
        lines.append(f"user {who} \"$DOVECOTE_PW_{who.upper()}\" '{own}' '{write}' '{read}'")
    federation = manifest.load()
    for cls in (*federation, *federation.participants):
        service = cls.name
        if service in (OBSERVER, OPERATOR):  # its workers' ids would be the tools' ids
            raise ValueError(f"a service may not be called {service!r}: that is a login's")
        grant = logins.service_grant(cls, root)
        write = _amqp_regex(list(grant.write))
        read = _amqp_regex([*grant.read, *(f"$share/+/{f}" for f in grant.read)])
        # Its session queues, and its pool's queue on RabbitMQ (shared/dovecote/poolqueue.py).
        pool = re.escape(f"dovecote-pool.{root}.{service}")
        own = f"({_queues(f'{re.escape(root)}-{service}-[a-z0-9_-]+')}|{pool})"
        lines.append(
            f"user {service} \"$DOVECOTE_PW_{service.upper()}\" '{own}' '{write}' '{read}'"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    manifest.load()
    stale = []
    files = {MOSQUITTO_ROLES: mosquitto_roles(), RABBITMQ_PERMISSIONS: rabbitmq_permissions()}
    for path, text in files.items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(PROJECT)))
        elif not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(PROJECT)}")
    if stale:
        print(f"stale: {', '.join(stale)}; run `make docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
