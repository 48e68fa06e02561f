"""A person as the federation sees them: AS2 shapes (an activity's actor, a Person, a
Collection of people) under the gateway's public URL, which ``directory.py`` serves and the
features put in what they publish. Apart from the routes so the context can hold it."""

from __future__ import annotations

from typing import Any

from dovecote import activity as act
from services.gateway.accounts.credentials import Person


class Directory:
    """AS2 shapes of a person, under the gateway's public URL."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def url(self, person_id: str) -> str:
        return f"{self.base_url}/users/{person_id}"

    def actor(self, person: Person) -> act.Actor:
        """The person as an activity's actor: small, with URLs to fetch the rest."""
        return act.Actor(
            type="Person",
            id=self.url(person.id),
            name=person.name,
            preferredUsername=person.id,  # the id a per-user topic level is made of
            followers=f"{self.url(person.id)}/followers",
        )

    def person(self, person: Person) -> dict[str, Any]:
        return {
            "@context": act.AS_CONTEXT,
            **act.to_builtins(self.actor(person)),
            "following": f"{self.url(person.id)}/following",
            "icon": {
                "type": "Image",
                "mediaType": "image/svg+xml",
                "url": f"{self.url(person.id)}/avatar.svg",
            },
        }

    def collection(self, url: str, people: list[Person]) -> dict[str, Any]:
        return {
            "@context": act.AS_CONTEXT,
            "id": url,
            "type": "Collection",
            "totalItems": len(people),
            "items": [act.to_builtins(self.actor(p)) for p in people],
        }
