"""The broker's logins: who connects as which client id, and reads and writes what.

Everything here is derived from the topic registry and the services' ``@handles``
declarations, never listed by hand:

- a **service** reads exactly what its workers subscribe to (``Service.filters``: its
  handlers, its command inbox, the presence query; plus the runtime's start-up probe) and
  writes the topics whose registry publisher it is, with its own name in the slots every
  service publishes (``services/<itself>/+``, ``deadletter/<itself>``);
- the **observer** reads the whole root (dashboards, ``mosquitto_sub``) and writes nothing;
- the **operator** (``dovecote deadletter``, ``dovecote trace``) writes the operators'
  commands and reads their replies; a service marked ``Service.operator`` (the gateway, for
  its operations page) writes them too;
- a **person** reads ``users/<them>/notifications`` and nothing else (their own device);
- a **participant** (a service in another language, ``dovecote.federation``) is a service:
  it reads what the manifest says it subscribes to, and writes what it publishes.

On Mosquitto every login is a client of the dynamic-security plugin pinned to **one client
id** (the plugin refuses the login with any other): a worker's login ``<service>-<instance>``
to ``<root>-<service>-<instance>``, the id its worker connects with. Since every login is
pinned, no login can take another's session (issue 11). A pinned login has one id, so a
worker does not run its start-up probe on a second connection there:
``DOVECOTE_BROKER_CAPABILITIES`` states what the broker can do instead.

``dynsec_config`` writes the plugin's whole file before the broker starts (``dovecote
logins init``); ``mint_person`` adds a person's login to a running broker through the
plugin's control topic (``dovecote logins person``), as an admin login.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from dovecote import topics
from dovecote.config import BrokerAddress
from dovecote.errors import DovecoteError
from dovecote.federation import Participant
from dovecote.mqtt import Connection, Message
from dovecote.service import Service
from dovecote.tools import manifest

OBSERVER = "observer"
OPERATOR = "operator"  # the person at `dovecote deadletter`: publisher "operator" topics
ADMIN = "admin"  # the dynamic-security plugin's administrator (mints logins)
PERSON_PREFIX = "person-"  # a person's login: person-<their id>
CONTROL = "$CONTROL/dynamic-security/v1"
# The plugin's own hashing (Mosquitto 2.0.11): PBKDF2-SHA512, a 12-byte salt.
_SALT_BYTES = 12
_ITERATIONS = 101
_ADMIN_ACLS = [
    ("publishClientSend", CONTROL),
    ("publishClientReceive", f"{CONTROL}/response"),
    ("subscribePattern", f"{CONTROL}/response"),
]


class LoginError(DovecoteError, RuntimeError):
    """The broker refused a change of logins; ``str()`` says what it answered."""


@dataclass(frozen=True)
class Grant:
    """What one login may do: MQTT filters it may subscribe to, topics it may publish."""

    read: tuple[str, ...]
    write: tuple[str, ...]


@dataclass(frozen=True)
class Login:
    """One broker login, pinned to one client id."""

    username: str
    password: str
    client_id: str
    role: str  # the dynamic-security role that holds its grant

    def url(self, scheme: str, host: str, port: int) -> str:
        """Its ``MQTT_URL`` (the password is URL-safe: ``secrets.token_urlsafe``)."""
        return f"{scheme}://{self.username}:{self.password}@{host}:{port}"


# --- grants, from the registry and the services' declarations -------------------------------


def writable(publisher: str, root: str) -> list[str]:
    """The MQTT filters ``publisher`` (a service, or the operator) may publish to."""
    out: list[str] = []
    mine = (OPERATOR,) if publisher == OPERATOR else (publisher, "*")
    cls = manifest.load().by_name.get(publisher) if publisher != OPERATOR else None
    if cls is not None and cls.operator:
        mine = (*mine, OPERATOR)
    for t in topics.all_topics():
        if t.publisher not in mine:
            continue
        # Its own name fills {service} only in the topics every service publishes (its
        # presence, its dead letters); in a topic of its own, {service} names another
        # service (the deadletters' commands/{service}/redeliver), so any is allowed.
        own_slot = t.publisher == "*"
        params = {p: (publisher if own_slot and p == "service" else "+") for p in t.params}
        levels = [params[lv[1:-1]] if lv.startswith("{") else lv for lv in t.levels]
        out.append("/".join([root, *levels]))
    return sorted(set(out))


def service_grant(cls: type[Service] | Participant, root: str) -> Grant:
    """A service reads what its workers subscribe to, and the start-up probe's topics (a
    Python worker's; a participant runs no probe)."""
    if isinstance(cls, Participant):
        return Grant(tuple(cls.filters(root)), tuple(writable(cls.name, root)))
    read = {*cls.filters(root), topics.PROBE.filter(root)}
    return Grant(tuple(sorted(read)), tuple(writable(cls.name, root)))


def observer_grant(root: str) -> Grant:
    return Grant((f"{root}/#",), ())


def operator_grant(root: str) -> Grant:
    replies = (topics.DEADLETTER_REPLY.filter(root), topics.TRACE_REPLY.filter(root))
    return Grant(replies, tuple(writable(OPERATOR, root)))


def person_grant(person: str, root: str) -> Grant:
    reads = manifest.load().person_reads
    return Grant(tuple(t.address(root, user=person) for t in reads), ())


def grants(root: str) -> dict[str, Grant]:
    """Every standing login kind's grant, by role name (people's are made when minted)."""
    out = {role_name(root, OBSERVER): observer_grant(root)}
    out[role_name(root, OPERATOR)] = operator_grant(root)
    federation = manifest.load()
    for who in (*federation, *federation.participants):
        out[role_name(root, who.name)] = service_grant(who, root)
    return out


def role_name(root: str, who: str) -> str:
    return f"{root}-{who}"


# --- logins ---------------------------------------------------------------------------------


def password() -> str:
    return secrets.token_urlsafe(24)


def worker_login(service: str, instance: str, root: str, secret: str | None = None) -> Login:
    """A worker's login: its client id is the one the runtime gives that worker."""
    topics.check_id(service, "service")
    topics.check_id(instance, "instance")
    return Login(
        f"{service}-{instance}",
        secret or password(),
        f"{root}-{service}-{instance}",
        role_name(root, service),
    )


def tool_login(who: str, root: str, secret: str | None = None) -> Login:
    """The observer's or the operator's login (set ``MQTT_CLIENT_ID`` to its client id)."""
    return Login(who, secret or password(), f"{root}-{who}", role_name(root, who))


def person_login(person: str, root: str, secret: str | None = None) -> Login:
    topics.check_id(person, "person")
    name = f"{PERSON_PREFIX}{person}"
    return Login(name, secret or password(), f"{root}-{name}", role_name(root, name))


# --- the dynamic-security plugin's file and commands ----------------------------------------


def role_acls(grant: Grant) -> list[dict[str, Any]]:
    """A grant as the plugin's ACLs. The plugin checks a shared subscription as written
    (``$share/<group>/<filter>``), so each read filter is also allowed in that form."""
    acls: list[dict[str, Any]] = []
    for f in grant.read:
        acls.append({"acltype": "subscribePattern", "topic": f, "allow": True})
        acls.append({"acltype": "subscribePattern", "topic": f"$share/+/{f}", "allow": True})
        acls.append({"acltype": "publishClientReceive", "topic": f, "allow": True})
    for f in grant.write:
        acls.append({"acltype": "publishClientSend", "topic": f, "allow": True})
    return acls


DEFAULT_ACCESS = {  # nothing that a role does not grant (the plugin's default receives all)
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}


def roles_config(root: str) -> dict[str, Any]:
    """The standing roles and default access: what ``make docs`` commits for review."""
    roles = [{"rolename": n, "acls": role_acls(g)} for n, g in grants(root).items()]
    roles.append({"rolename": role_name(root, ADMIN), "acls": admin_acls()})
    return {"defaultACLAccess": DEFAULT_ACCESS, "roles": roles}


def admin_acls() -> list[dict[str, Any]]:
    return [{"acltype": t, "topic": topic, "allow": True} for t, topic in _ADMIN_ACLS]


def hashed(secret: str, salt: bytes | None = None) -> dict[str, Any]:
    """A password as the plugin stores it."""
    salt = salt or secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, _ITERATIONS, 64)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": _ITERATIONS,
    }


def dynsec_config(root: str, logins: Iterable[Login]) -> dict[str, Any]:
    """The plugin's whole file: the roles and every login, pinned to its client id."""
    config = roles_config(root)
    config["clients"] = [
        {
            "username": login.username,
            "clientid": login.client_id,
            "roles": [{"rolename": login.role}],
            **hashed(login.password),
        }
        for login in logins
    ]
    return config


def standing_logins(root: str, workers: dict[str, int]) -> list[Login]:
    """An admin, the observer, the operator and one login per worker of ``workers``."""
    out = [tool_login(ADMIN, root), tool_login(OBSERVER, root), tool_login(OPERATOR, root)]
    for service, count in sorted(workers.items()):
        out += [worker_login(service, str(n), root) for n in range(1, count + 1)]
    return out


async def control(
    broker: BrokerAddress, client_id: str, commands: list[dict[str, Any]], timeout: float = 10.0
) -> list[dict[str, Any]]:
    """Send commands to the plugin as an admin login; its answers, or ``LoginError``."""
    answered: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def on_message(msg: Message) -> None:
        if msg.topic == f"{CONTROL}/response" and not answered.done():
            answered.set_result(msg.payload)

    conn = Connection(
        broker, client_id, on_message=on_message, clean_session=True, manual_ack=False
    )
    conn.start()
    try:
        await conn.wait_connected(timeout)
        granted = conn.subscribe(f"{CONTROL}/response", 1)
        assert granted is not None
        if (await asyncio.wait_for(granted, timeout))[0] >= 0x80:
            raise LoginError(f"{broker.username} may not administer logins")
        conn.publish(CONTROL, orjson.dumps({"commands": commands}), 1)
        reply = orjson.loads(await asyncio.wait_for(answered, timeout))
    except TimeoutError:
        raise LoginError(
            f"no answer from the dynamic-security plugin at {broker.redacted()} within "
            f"{timeout:g} s (is it loaded, and are these an admin's credentials?)"
        ) from None
    finally:
        await conn.stop(2)
    results: list[dict[str, Any]] = reply.get("responses", [])
    return results


def check(results: list[dict[str, Any]], may_fail: tuple[str, ...] = ()) -> None:
    """``LoginError`` for every answer that is an error, except the commands named."""
    failed = [r for r in results if r.get("error") and r.get("command") not in may_fail]
    if failed:
        raise LoginError("; ".join(f"{r.get('command')}: {r['error']}" for r in failed))


def person_commands(login: Login, person: str, root: str) -> list[dict[str, Any]]:
    """Replace any earlier login of that person: a fresh password, the same pinned id."""
    acls = role_acls(person_grant(person, root))
    return [
        {"command": "deleteClient", "username": login.username},
        {"command": "deleteRole", "rolename": login.role},
        {"command": "createRole", "rolename": login.role, "acls": acls},
        {
            "command": "createClient",
            "username": login.username,
            "password": login.password,
            "clientid": login.client_id,
            "roles": [{"rolename": login.role}],
        },
    ]


async def mint_person(admin: BrokerAddress, admin_client_id: str, person: str, root: str) -> Login:
    """A login of ``person``'s own, for their device: it reads their notifications only.

    Minting again replaces the previous one (the old password stops working at once).
    """
    login = person_login(person, root)
    results = await control(admin, admin_client_id, person_commands(login, person, root))
    check(results, may_fail=("deleteClient", "deleteRole"))  # nothing to replace: fine
    return login


SHARED_AND_RETAINED = "shared-subscriptions,retained-to-wildcards"  # Mosquitto 2.x
