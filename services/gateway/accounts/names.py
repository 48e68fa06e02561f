"""Names people may not take: reserved user ids, and names that pass for someone else's.

- **Reserved ids** (``admin``, ``root``, ``operator``, ``support``, ...): a page that says
  "@admin" or "@security" is believed. Sign-up refuses them; an operator may still make
  such an account on purpose (``dovecote admin gateway add``).
- **Lookalikes**: ``gr4ce`` calling itself "Grace Hopper", or "Grace Hopper" typed with
  a Cyrillic "er" for its p. Every id and display name has a *key*: case folded, accents
  dropped, digits and symbols read as the letters they imitate, Cyrillic and Greek letters that look
  Latin read as Latin, ``rn`` as ``m``, spaces and punctuation gone. A new person whose id
  or display name has the key of another person's id or display name is refused, with the
  name it imitates, so they pick another.

A small table, not Unicode's full confusables list (UTS #39): it covers what a person types
to pass for another here (ids are a-z 0-9 _ -; display names are free text), and it is
applied at sign-up only, so a false match costs a person one more try at a name.
"""

from __future__ import annotations

import unicodedata

RESERVED = frozenset(
    (
        "abuse",
        "account",
        "accounts",
        "admin",
        "administrator",
        "administrators",
        "anonymous",
        "api",
        "billing",
        "dovecote",
        "everyone",
        "gateway",
        "guest",
        "help",
        "helpdesk",
        "hostmaster",
        "info",
        "mail",
        "mailer-daemon",
        "me",
        "moderator",
        "moderators",
        "mod",
        "nobody",
        "noc",
        "no-reply",
        "noreply",
        "null",
        "official",
        "operations",
        "operator",
        "operators",
        "owner",
        "postmaster",
        "privacy",
        "root",
        "security",
        "self",
        "service",
        "services",
        "signin",
        "signout",
        "signup",
        "staff",
        "static",
        "support",
        "sysadmin",
        "system",
        "team",
        "undefined",
        "users",
        "webmaster",
        "ws",
        "www",
    )
)

# Characters that stand in for others: digits and symbols for letters, Cyrillic and Greek
# letters that look Latin (lower case: keys are case folded first).
_LOOKS_LIKE = str.maketrans(
    {
        "0": "o",
        "1": "l",
        "i": "l",
        "|": "l",
        "!": "l",
        "3": "e",
        "4": "a",
        "@": "a",
        "5": "s",
        "$": "s",
        "7": "t",
        "+": "t",
        "8": "b",
        "9": "g",
        "6": "b",
        "а": "a",
        "в": "b",
        "е": "e",
        "ё": "e",
        "к": "k",
        "м": "m",
        "н": "h",
        "о": "o",
        "р": "p",
        "с": "c",
        "т": "t",
        "у": "y",
        "х": "x",
        "і": "l",
        "ї": "l",
        "ј": "j",
        "ѕ": "s",
        "ԁ": "d",
        "ɡ": "g",
        "ӏ": "l",
        "α": "a",
        "β": "b",
        "ε": "e",
        "η": "n",
        "ι": "l",
        "κ": "k",
        "ν": "v",
        "ο": "o",
        "ρ": "p",
        "τ": "t",
        "υ": "u",
        "χ": "x",
        "ω": "w",
    }
)


def lookalike_key(text: str) -> str:
    """What ``text`` looks like to a reader: ``"Gr4ce  Hopper"`` and ``"grace-hopper"``
    have the same key, ``"gracehopper"``."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    read = bare.translate(_LOOKS_LIKE)
    letters = "".join(ch for ch in read if ch.isalnum())
    return letters.replace("rn", "m").replace("vv", "w")


def reserved(user_id: str) -> bool:
    """True for an id sign-up refuses: one of ``RESERVED``, also with ``_`` for ``-``."""
    return user_id in RESERVED or user_id.replace("_", "-") in RESERVED
