"""Owners' accounts: passwords for the pages, API keys for programs.

Passwords are hashed with scrypt (memory-hard, in the standard library) and a random
salt per password. API keys are long random strings, so one SHA-256 is enough to
store them: a stolen table yields no key. A key is shown once, when it is made; the
owner can make several (one per script or machine) and revoke each.

Example:
    >>> stored = hash_password("correct horse battery staple")
    >>> stored.startswith("scrypt$")
    True
    >>> check_password(stored, "correct horse battery staple"), check_password(stored, "wrong")
    (True, False)
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from microtasks.errors import Conflict, NotFound, ValidationError
from microtasks.models import ApiKey, Owner, utcnow

#: scrypt cost: 2**15 x 8 x 128 bytes = 32 MiB and about 50 ms per check.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MIN_PASSWORD = 10
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,79}$")
KEY_PREFIX = "mt_"
#: ``last_used_at`` is written at most this often per key, so API calls stay read-only.
LAST_USED_RESOLUTION = timedelta(minutes=5)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=64 * 1024**2)
    encode = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encode(salt).decode()}${encode(digest).decode()}"


def check_password(stored: str | None, password: str) -> bool:
    try:
        method, n, r, p, salt, digest = (stored or "").split("$")
    except ValueError:
        return False
    if method != "scrypt":
        return False
    expected = base64.b64decode(digest)
    actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                            maxmem=64 * 1024**2, dklen=len(expected))
    return hmac.compare_digest(actual, expected)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_credentials(username: str, password: str) -> None:
    if not USERNAME.match(username):
        raise ValidationError("A username has 3 to 80 letters, digits, dots, dashes or underscores, "
                              "starting with a letter or digit.", field="username")
    if len(password) < MIN_PASSWORD:
        raise ValidationError(f"A password needs at least {MIN_PASSWORD} characters.", field="password")


def create_owner(session: Session, name: str, username: str | None = None,
                 password: str | None = None) -> tuple[Owner, str]:
    """Create an owner with a first API key; returns it with the key, which is shown this once."""
    owner = Owner(name=name)
    if username is not None or password is not None:
        check_credentials(username or "", password or "")
        if session.scalars(select(Owner.id).where(Owner.username == username)).first() is not None:
            raise Conflict(f"The username {username!r} is taken.", field="username")
        owner.username, owner.password_hash = username, hash_password(password or "")
    session.add(owner)
    session.flush()
    _, key = create_api_key(session, owner, "first key")
    return owner, key


def authenticate(session: Session, username: str, password: str) -> Owner | None:
    """The owner with this username and password, or None (the same work is done for unknown names)."""
    owner = session.scalars(select(Owner).where(Owner.username == username)).first()
    stored = owner.password_hash if owner is not None else _dummy_hash()
    return owner if check_password(stored, password) and owner is not None else None


def set_password(owner: Owner, current: str, new: str) -> None:
    if not check_password(owner.password_hash, current):
        raise ValidationError("The current password is not right.", field="current_password")
    check_credentials(owner.username or "", new)
    owner.password_hash = hash_password(new)


def create_api_key(session: Session, owner: Owner, name: str) -> tuple[ApiKey, str]:
    """A new key for ``owner``; returns the stored row and the key itself (never stored)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(owner_id=owner.id, name=name.strip()[:100], prefix=key[:10], key_hash=hash_key(key))
    session.add(row)
    session.flush()
    return row, key


def owner_for_key(session: Session, key: str) -> Owner | None:
    """The owner of a key that is not revoked; notes when the key was last used."""
    row = session.execute(
        select(ApiKey.id, ApiKey.last_used_at, Owner).join(Owner, Owner.id == ApiKey.owner_id)
        .where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    ).first()
    if row is None:
        return None
    key_id, last_used, owner = row
    now = utcnow()
    if last_used is None or _aware(last_used) < now - LAST_USED_RESOLUTION:
        session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
    return owner


def api_keys(session: Session, owner: Owner) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).where(ApiKey.owner_id == owner.id).order_by(ApiKey.id)))


def revoke_api_key(session: Session, owner: Owner, key_id: int) -> ApiKey:
    row = session.get(ApiKey, key_id)
    if row is None or row.owner_id != owner.id:
        raise NotFound(f"No API key {key_id}.")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; they are UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))
