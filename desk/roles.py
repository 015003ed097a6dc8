"""The desk's roles and what each may do: a controller reads, finance operations act on
exceptions, an admin also manages users."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    CONTROLLER = "controller"
    OPERATIONS = "operations"
    ADMIN = "admin"


#: Every role may read; these may act on exceptions (assign, comment, ignore, reopen, re-validate).
ACTORS = frozenset({Role.OPERATIONS, Role.ADMIN})


def can_act(role: str) -> bool:
    return role in ACTORS


def parse_role(text: str) -> Role:
    try:
        return Role(text.strip().lower())
    except ValueError:
        raise ValueError(
            f"unknown role {text!r}: expected {', '.join(r.value for r in Role)}"
        ) from None
