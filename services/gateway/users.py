"""The demo user directory, served over REST as AS2 ``Person`` objects.

Subscribers that need a user (their name, their followers) GET it by its URL: the seed's
"REST call to fetch John Doe". The directory is a JSON file (``USERS_FILE``) or the
built-in demo users below.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from dovecote.topics import check_id

DEMO_USERS: list[dict[str, Any]] = [
    {"id": "ada", "name": "Ada Lovelace", "follows": ["grace", "linus"]},
    {"id": "grace", "name": "Grace Hopper", "follows": ["ada"]},
    {"id": "linus", "name": "Linus Torvalds", "follows": ["ada", "grace"]},
]


@dataclass(frozen=True)
class User:
    id: str
    name: str
    follows: tuple[str, ...]


class Directory:
    def __init__(self, users: list[dict[str, Any]], base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.users = {
            u["id"]: User(check_id(u["id"], "user id"), str(u["name"]), tuple(u["follows"]))
            for u in users
        }
        for user in self.users.values():
            unknown = set(user.follows) - set(self.users)
            if unknown:
                raise ValueError(f"user {user.id} follows unknown users {sorted(unknown)}")

    @classmethod
    def load(cls, path: str | None, base_url: str) -> Directory:
        users = orjson.loads(Path(path).read_bytes()) if path else DEMO_USERS
        return cls(users, base_url)

    @property
    def default(self) -> User:
        return next(iter(self.users.values()))

    def url(self, user_id: str) -> str:
        return f"{self.base_url}/users/{user_id}"

    def actor(self, user: User) -> dict[str, Any]:
        """The user as an activity's actor: small, with URLs to fetch the rest."""
        return {
            "type": "Person",
            "id": self.url(user.id),
            "name": user.name,
            "preferredUsername": user.id,  # the id a per-user topic level is made of
            "followers": f"{self.url(user.id)}/followers",
        }

    def person(self, user: User) -> dict[str, Any]:
        return {
            "@context": "https://www.w3.org/ns/activitystreams",
            **self.actor(user),
            "following": f"{self.url(user.id)}/following",
            "icon": {
                "type": "Image",
                "mediaType": "image/svg+xml",
                "url": f"{self.base_url}/users/{user.id}/avatar.svg",
            },
        }

    def followers(self, user: User) -> list[User]:
        return [u for u in self.users.values() if user.id in u.follows]
