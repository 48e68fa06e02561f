"""Broker permissions generated from the topic registry: each service publishes only its own.

``python -m dovecote.tools.acl`` (run by ``make docs``) writes

- ``deploy/mosquitto/acl``: a Mosquitto ``acl_file`` with one ``user`` block per service;
- ``deploy/rabbitmq/permissions.sh``: the ``rabbitmqctl`` commands for RabbitMQ's users,
  vhost permissions and topic permissions (matched against the dotted AMQP form);

and ``--check`` fails when the committed files differ (a test runs it). A service may read
everything under the root, and write the topics whose registry publisher is that service,
plus the topics every service publishes (``*``) with its own name filled in. The user
``observer`` may only read (dashboards, ``mosquitto_sub``); the user ``operator`` may read,
and write the operators' commands (``dovecote deadletter``), nothing else.
"""

from __future__ import annotations

import argparse
import re
import sys

from dovecote import topics
from dovecote.project import PROJECT
from dovecote.tools.docs import load_service_topics
from dovecote.tools.supervisor import discover

MOSQUITTO_ACL = PROJECT / "deploy" / "mosquitto" / "acl"
RABBITMQ_PERMISSIONS = PROJECT / "deploy" / "rabbitmq" / "permissions.sh"
OBSERVER = "observer"
OPERATOR = "operator"  # the person at `dovecote deadletter`: publisher "operator" topics


def services() -> list[str]:
    """Every service folder: each is a user of the broker."""
    return sorted(discover())


def writable(service: str, root: str) -> list[str]:
    """The MQTT filters ``service`` (or the operator) may publish to."""
    out: list[str] = []
    mine = (OPERATOR,) if service == OPERATOR else (service, "*")
    for t in topics.all_topics():
        if t.publisher not in mine:
            continue
        # Its own name fills {service} only in the topics every service publishes (its
        # presence, its dead letters); in a topic of its own, {service} names another
        # service (the deadletters' commands/{service}/redeliver), so any is allowed.
        own_slot = t.publisher == "*"
        params = {p: (service if own_slot and p == "service" else "+") for p in t.params}
        levels = [params[lv[1:-1]] if lv.startswith("{") else lv for lv in t.levels]
        out.append("/".join([root, *levels]))
    return sorted(set(out))


def mosquitto_acl(root: str = "dovecote") -> str:
    lines = [
        "# Dovecote's Mosquitto ACL, generated from the topic registry by",
        "# `python -m dovecote.tools.acl` (make docs): do not edit. Each service connects as the",
        "# user of its own name (MQTT_URL=mqtt://<service>:<password>@host) and may publish",
        "# only its own topics. Mosquitto checks a $share/<group>/<filter> subscription",
        "# against <filter>. A denied publish from an MQTT 3.1.1 client still gets its",
        "# PUBACK and is dropped; at log_type debug the broker logs 'Denied PUBLISH'.",
        "",
        f"user {OBSERVER}",
        f"topic read {root}/#",
        "",
        f"user {OPERATOR}",
        f"topic read {root}/#",
        *(f"topic write {f}" for f in writable(OPERATOR, root)),
    ]
    for service in services():
        lines += ["", f"user {service}", f"topic read {root}/#"]
        lines += [f"topic write {f}" for f in writable(service, root)]
    return "\n".join(lines) + "\n"


def _amqp_regex(filters: list[str]) -> str:
    """MQTT filters as one regex over RabbitMQ's routing keys (``/`` becomes ``.``)."""
    alts = []
    for f in filters:
        parts = [
            "[^.]+" if lv == "+" else ".*" if lv == "#" else re.escape(lv) for lv in f.split("/")
        ]
        alts.append(r"\.".join(parts))
    return "^(" + "|".join(alts) + ")$"


def rabbitmq_permissions(root: str = "dovecote", vhost: str = "dovecote") -> str:
    # RabbitMQ 3.10 takes $share/<group>/<filter> literally and checks its read permission
    # as such: allowed, or a worker's start-up probe for shared subscriptions (shared/
    # capabilities.py) has its connection closed, and the worker cannot start.
    read_all = _amqp_regex([f"{root}/#", f"$share/+/{root}/#"])
    lines = [
        "#!/bin/sh",
        "# Dovecote's RabbitMQ users and permissions, generated from the topic registry by",
        "# `python -m dovecote.tools.acl` (make docs): do not edit. Run once on a node of the",
        "# cluster (users and permissions are cluster-wide), with each password in the",
        "# environment:",
        "#   DOVECOTE_PW_<SERVICE>=... sh permissions.sh",
        "# Topic permissions are matched against the AMQP routing key, where MQTT's / is a .",
        "set -eu",
        f"VHOST={vhost}",
        'rabbitmqctl add_vhost "$VHOST" 2>/dev/null || true',
        "",
        "user() {  # name, password, write regex",
        '  rabbitmqctl add_user "$1" "$2" 2>/dev/null || rabbitmqctl change_password "$1" "$2"',
        "  # configure: its own MQTT session queues; write/read: amq.topic only",
        '  rabbitmqctl set_permissions -p "$VHOST" "$1" "^mqtt-subscription-.*" '
        '"^(amq\\.topic|mqtt-subscription-.*)$" "^(amq\\.topic|mqtt-subscription-.*)$"',
        f'  rabbitmqctl set_topic_permissions -p "$VHOST" "$1" amq.topic "$3" \'{read_all}\'',
        "}",
        "",
        f"user {OBSERVER} \"$DOVECOTE_PW_{OBSERVER.upper()}\" '^$'",
        f'user {OPERATOR} "$DOVECOTE_PW_{OPERATOR.upper()}" '
        f"'{_amqp_regex(writable(OPERATOR, root))}'",
    ]
    for service in services():
        regex = _amqp_regex(writable(service, root))
        lines.append(f"user {service} \"$DOVECOTE_PW_{service.upper()}\" '{regex}'")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args(argv)
    load_service_topics()
    stale = []
    files = {MOSQUITTO_ACL: mosquitto_acl(), RABBITMQ_PERMISSIONS: rabbitmq_permissions()}
    for path, text in files.items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(PROJECT)))
        else:
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}; run `make docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
