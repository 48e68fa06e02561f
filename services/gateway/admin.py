"""``dovecote admin gateway``: the operator's side of the accounts, where the gateway runs.

    dovecote admin gateway add alice --operator       # a password typed twice (or stdin)
    dovecote admin gateway operator alice [--revoke]  # make a person an operator, or not
    dovecote admin gateway invite [--days 7]          # a sign-up link, for SIGNUP=invite
    dovecote admin gateway signout alice              # end every sign-in (a lost laptop)
    dovecote admin gateway list                       # who has an account, who operates

It opens the accounts store the gateway uses (``DATABASE_URL``, else ``ACCOUNTS_DB``, else
``$DOVECOTE_DATA_DIR/accounts.sqlite3``), so run it with the gateway's environment. What it
changes counts at once for every request; the sockets of sign-ins it ends are closed by each
gateway within ``SIGNIN_SWEEP`` seconds (60).
``python -m services.gateway.admin`` is the same command (``dovecote admin gateway`` runs it).
"""

from __future__ import annotations

import argparse
import getpass
import secrets
import sys

from dovecote.config import ConfigError, Settings
from dovecote.errors import StoreUnavailable
from services.gateway.accounts import credentials
from services.gateway.accounts.credentials import Refused
from services.gateway.accounts.people import People

ADMIN = "dovecote admin gateway"  # also who made an invitation made here


def open_store(settings: Settings) -> People:
    return People.of(settings).open()


def read_password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, made here): typed twice at a terminal, one line of stdin, or made up."""
    if args.generate:
        return secrets.token_urlsafe(12), True
    if sys.stdin.isatty():
        first = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != first:
            raise Refused("the two passwords differ")
        return first, False
    return sys.stdin.readline().rstrip("\n"), False


def cmd_add(store: People, args: argparse.Namespace) -> int:
    password, made = read_password(args)
    user_id = credentials.valid_user_id(args.name)
    hashed = credentials.hash_password(password)
    person = store.add(user_id, credentials.display_name(args.display or user_id), hashed)
    if args.operator:
        store.set_operator(person.id, True)
    role = " (an operator)" if args.operator else ""
    print(f"made {person.id}{role}, shown as {person.name!r}")
    if made:
        print(f"password: {password}")
    return 0


def cmd_operator(store: People, args: argparse.Namespace) -> int:
    if not store.set_operator(args.name, not args.revoke):
        print(f"{ADMIN}: no account {args.name!r}", file=sys.stderr)
        return 1
    print(f"{args.name} is {'no longer ' if args.revoke else ''}an operator")
    return 0


def cmd_invite(store: People, args: argparse.Namespace, settings: Settings) -> int:
    invite, code = store.invites.make(ADMIN, args.days)
    print(f"{settings.public_url}/signup?invite={code}")
    print(f"(one account, until {invite.expires}; counts where SIGNUP=invite)")
    return 0


def cmd_signout(store: People, args: argparse.Namespace) -> int:
    if store.get(args.name) is None:
        print(f"{ADMIN}: no account {args.name!r}", file=sys.stderr)
        return 1
    ended = store.signins.end_all(args.name)
    print(f"ended {len(ended)} sign-in(s) of {args.name}; their pages close within a minute")
    return 0


def cmd_list(store: People) -> int:
    for person in store.all(100_000):
        print(f"{person.id:<24} {'operator' if person.operator else '':<9} {person.name}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=ADMIN, description="Accounts, operators, invitations.")
    sub = top.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="make an account (a password typed twice, or stdin)")
    add.add_argument("name", help="the user id: a-z 0-9 _ -")
    add.add_argument("--display", help="the display name (default: the user id)")
    add.add_argument("--operator", action="store_true", help="an operator")
    add.add_argument("--generate", action="store_true", help="make up a password and print it")
    operator = sub.add_parser("operator", help="make a person an operator (--revoke: undo)")
    operator.add_argument("name")
    operator.add_argument("--revoke", action="store_true")
    invite = sub.add_parser("invite", help="a sign-up link for one person (SIGNUP=invite)")
    invite.add_argument("--days", type=int, default=7, choices=range(1, 91), metavar="1-90")
    signout = sub.add_parser("signout", help="end every sign-in of a person")
    signout.add_argument("name")
    sub.add_parser("list", help="everyone with an account")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        store = open_store(settings)
    except ConfigError as exc:
        print(f"{ADMIN}: configuration error: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"{ADMIN}: {exc}; try again when it is back", file=sys.stderr)
        return 1
    try:
        if args.command == "add":
            return cmd_add(store, args)
        if args.command == "operator":
            return cmd_operator(store, args)
        if args.command == "invite":
            return cmd_invite(store, args, settings)
        if args.command == "signout":
            return cmd_signout(store, args)
        return cmd_list(store)
    except ValueError as exc:  # credentials.Refused, invites.Refused: said for a person
        print(f"{ADMIN}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
