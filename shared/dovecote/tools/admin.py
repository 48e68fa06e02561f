"""``dovecote admin <service> ...``: a service's own operator commands, run where it runs.

A service that has commands for operators (the gateway's accounts: ``dovecote admin gateway
add alice --operator``) keeps them in ``services/<name>/admin.py``; this runs that module
from the project folder, with this environment, as ``dovecote run`` runs the services
themselves: the library imports no service. ``dovecote admin`` alone lists who has one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from dovecote.project import PROJECT
from dovecote.tools import manifest


def services_with_admin() -> list[str]:
    federation = manifest.load()
    return [n for n in federation.names() if (federation.folder(n) / "admin.py").is_file()]


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "admin",
        help="a service's operator commands: dovecote admin gateway add alice --operator",
        add_help=False,  # --help goes to the service's own command
    )
    p.add_argument("service", nargs="?", help="a service with commands of its own")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="its command and arguments")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    known = services_with_admin()
    if args.service not in known:
        said = f"no admin commands for {args.service!r}; " if args.service else ""
        print(
            f"dovecote admin: {said}services with some: {', '.join(known) or 'none'} "
            "(e.g. dovecote admin gateway --help)",
            file=sys.stderr,
        )
        return 2
    module = f"{manifest.load().module(args.service)}.admin"
    return subprocess.call([sys.executable, "-m", module, *args.rest], cwd=PROJECT)
