"""Settings from the environment, built once.

Everything has a default that works on a fresh checkout (the *embedded* mode): an SQLite database and
an artifact folder under ``XSTILTS_HOME`` (default ``./.xstilts``), data from ``XSTILTS_DATA_DIR``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path


def _path_list(value: str) -> tuple[Path, ...]:
    return tuple(Path(p).expanduser().resolve() for p in value.split(os.pathsep) if p)


@dataclass(frozen=True)
class Settings:
    home: Path
    data_dir: Path | None
    cache_dir: Path
    artifacts_dir: Path
    database_url: str
    model_roots: tuple[Path, ...] = field(default_factory=tuple)
    broker_url: str = "redis://127.0.0.1:6379/0"
    # API keys as {name: sha256 hex of the key}; from XSTILTS_API_KEYS="name:sha256hex,..."
    api_keys: dict[str, str] = field(default_factory=dict)
    lease_seconds: float = 60.0

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("XSTILTS_HOME", ".xstilts")).expanduser().resolve()
        data = os.environ.get("XSTILTS_DATA_DIR")
        cache = Path(os.environ.get("XSTILTS_CACHE_DIR", Path.home() / ".cache" / "xstilts"))
        artifacts = Path(os.environ.get("XSTILTS_ARTIFACTS_DIR", home / "artifacts"))
        db = os.environ.get("XSTILTS_DATABASE_URL", f"sqlite:///{home / 'xstilts.db'}")
        roots = _path_list(os.environ.get("XSTILTS_MODEL_ROOTS", ""))
        keys = dict(
            item.split(":", 1)
            for item in os.environ.get("XSTILTS_API_KEYS", "").split(",")
            if ":" in item
        )
        return cls(
            home=home,
            data_dir=Path(data).expanduser().resolve() if data else None,
            cache_dir=cache.expanduser().resolve(),
            artifacts_dir=artifacts.expanduser().resolve(),
            database_url=db,
            model_roots=roots,
            broker_url=os.environ.get("XSTILTS_BROKER_URL", "redis://127.0.0.1:6379/0"),
            api_keys=keys,
            lease_seconds=float(os.environ.get("XSTILTS_LEASE_SECONDS", "60")),
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
