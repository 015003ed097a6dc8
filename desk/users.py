"""Desk users: argon2id password hashes (argon2-cffi) in the staging table `desk_users`, and
the admin command that adds them.

    stagepost-desk-user add NAME --role controller|operations|admin [--email E] [--proxy-only]
    stagepost-desk-user disable NAME
    stagepost-desk-user list

The password is read from the terminal (or stdin when piped), never from the command line.
`--proxy-only` makes a user without a password, who signs in through the trusted proxy header.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from desk.roles import Role, parse_role
from staging_models.db import StagingDB, staging_db
from staging_models.desk_tables import desk_users

_HASHER = PasswordHasher()  # argon2id with the library's current parameters
#: A hash verified when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _HASHER.hash("stagepost-desk-no-such-user")
MIN_PASSWORD = 12


@dataclass(frozen=True)
class User:
    username: str
    role: Role
    email: str | None = None


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a desk password has at least {MIN_PASSWORD} characters")
    return _HASHER.hash(password)


def add_user(
    db: StagingDB,
    username: str,
    role: str,
    *,
    password: str | None,
    email: str | None = None,
    created_by: str = "admin",
) -> User:
    """Create (or replace the password and role of) a desk user."""
    name = username.strip()
    if not name or any(c.isspace() for c in name):
        raise ValueError("a user name is one word without spaces")
    r = parse_role(role)
    values = dict(
        password_hash=hash_password(password) if password is not None else None,
        role=r.value,
        email=email,
        active=True,
        created_at=datetime.now(UTC),
        created_by=created_by,
    )
    with db.begin() as conn:
        conn.execute(sa.delete(desk_users).where(desk_users.c.username == name))
        conn.execute(sa.insert(desk_users).values(username=name, **values))
    return User(name, r, email)


def find_user(db: StagingDB, username: str) -> tuple[User, str | None] | None:
    """The active user of that name, with its password hash (None: proxy-only)."""
    with db.engine.connect() as conn:
        row = conn.execute(
            sa.select(desk_users.c.role, desk_users.c.email, desk_users.c.password_hash).where(
                desk_users.c.username == username, desk_users.c.active
            )
        ).first()
    if row is None:
        return None
    return User(username, Role(row.role), row.email), row.password_hash


def authenticate(db: StagingDB, username: str, password: str) -> User | None:
    """The user if the password is theirs; None otherwise (same work either way)."""
    found = find_user(db, username.strip())
    stored = found[1] if found else None
    try:
        _HASHER.verify(stored or _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if found is None or stored is None:
        return None
    return found[0]


def disable_user(db: StagingDB, username: str) -> bool:
    with db.begin() as conn:
        done = conn.execute(
            sa.update(desk_users).where(desk_users.c.username == username).values(active=False)
        )
    return done.rowcount > 0


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise SystemExit("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="stagepost-desk-user", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    add = sub.add_parser("add", help="add a user, or set a user's password and role")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--email")
    add.add_argument("--proxy-only", action="store_true", help="no password: proxy sign-in")
    off = sub.add_parser("disable", help="a user can no longer sign in")
    off.add_argument("username")
    sub.add_parser("list", help="the users and their roles")
    args = ap.parse_args(argv)
    db = staging_db()
    if args.cmd == "add":
        password = None if args.proxy_only else _read_password()
        try:
            user = add_user(
                db,
                args.username,
                args.role,
                password=password,
                email=args.email,
                created_by=getpass.getuser(),
            )
        except ValueError as e:
            print(f"refused: {e}", file=sys.stderr)
            return 2
        print(f"{user.username}: {user.role.value}")
        return 0
    if args.cmd == "disable":
        if not disable_user(db, args.username):
            print(f"no user {args.username!r}", file=sys.stderr)
            return 1
        print(f"{args.username}: disabled")
        return 0
    for row in db.query_df(
        "SELECT username, role, active, email FROM desk_users ORDER BY 1"
    ).itertuples():
        print(
            f"{row.username}\t{row.role}\t{'active' if row.active else 'disabled'}\t{row.email or ''}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
