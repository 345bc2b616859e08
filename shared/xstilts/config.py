"""Settings: every ``XSTILTS_*`` environment variable, read and checked in one place.

Everything has a default that works on a fresh checkout (the *embedded* mode): an SQLite database and
an artifact folder under ``XSTILTS_HOME`` (default ``~/.xstilts``), data from ``XSTILTS_DATA_DIR``
(default: the folder named in ``$XSTILTS_HOME/data-dir``, which set-up writes).
A bad value stops start-up with a :class:`SettingsError` whose message starts with the variable's
name and says what would be valid; nothing is silently dropped. The README's settings table lists
the same variables.

Keyword arguments override the environment (``Settings(home=..., database_url=...)``), which is how
tests and benchmarks build settings of their own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from xstilts.errors import XstiltsError

ENV_PREFIX = "XSTILTS_"
# The database backends the code and its migrations are written and tested for. A bare
# ``postgresql://`` is accepted and given the psycopg (3) driver: SQLAlchemy's default for it is
# psycopg2, which this package does not install.
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")
# Celery's broker: Redis only, because the queues are Redis lists that /readyz pings and KEDA scales on.
BROKER_SCHEMES = ("redis",)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _split_url(
    value: str, schemes: tuple[str, ...], example: str, listed_with: str = ""
) -> tuple[str, str]:
    """(scheme, the rest) of a URL whose scheme is one of ``schemes``; else a ValueError listing
    them. Only the scheme is shown: the rest of the URL may hold a password."""
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in schemes:
        got = f"unknown scheme {scheme!r}" if sep else "not a URL (no '<scheme>://')"
        valid = ", ".join(s + listed_with for s in schemes)
        raise ValueError(f"{got}; valid schemes: {valid} ({example})")
    return scheme, rest


# The owner of experiments made on the command line (run, study): the name of the key that
# `xstilts serve` makes, so the embedded API shows them.
LOCAL_OWNER = "local"


def env_var(field: str) -> str:
    """The environment variable that sets a :class:`Settings` field (``lease_seconds`` -> ``XSTILTS_LEASE_SECONDS``)."""
    return ENV_PREFIX + field.upper()


class SettingsError(XstiltsError, ValueError):
    """One or more settings have a bad value. The message starts with the variable's name."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems  # (variable, what is wrong with it)
        super().__init__("; ".join(f"{var}: {why}" for var, why in problems))

    @classmethod
    def from_validation(cls, error: ValidationError) -> SettingsError:
        problems = []
        for e in error.errors(include_url=False):
            if e["type"] == "default_factory_not_called":
                continue  # a default under XSTILTS_HOME: the error about XSTILTS_HOME says it all
            # Our own validators raise ValueError with a finished sentence; pydantic's own checks
            # (numbers, literals) say what they expected, and we add what they got.
            if e["type"] == "value_error":
                why = str(e["ctx"]["error"])
            else:
                field = str(e["loc"][0]) if e["loc"] else ""
                # URLs may carry a password: never echo them into a log.
                shown = "" if field in _SECRET_BEARING else f" (got {e['input']!r})"
                why = f"{e['msg']}{shown}"
            if e["loc"]:
                problems.append((env_var(str(e["loc"][0])), why))
            else:
                # Model-level checks involve several variables and name them in the message.
                var, _, rest = why.partition(": ")
                problems.append((var, rest))
        return cls(problems)


_SECRET_BEARING = {"database_url", "broker_url", "api_keys"}


def _resolve(path: Path) -> Path:
    return path.expanduser().resolve()


DATA_DIR_FILE = "data-dir"  # in XSTILTS_HOME: the default data folder, one path


def _configured_data_dir(home: Path) -> Path | None:
    try:
        text = (Path(home).expanduser() / DATA_DIR_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return Path(text) if text else None


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "xstilts"


class Settings(BaseSettings):
    """Where state lives and how the services reach each other. Build it with :func:`get_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        # Compose turns an unset `${VAR:-}` into an empty string: that means "use the default".
        env_ignore_empty=True,
        extra="forbid",
        frozen=True,
    )

    # Declared before the fields whose defaults live under it (pydantic validates in order).
    home: Path = Field(default_factory=lambda: Path.home() / ".xstilts")
    # Default: the folder named in $XSTILTS_HOME/data-dir (scripts/setup.sh writes it), if any.
    data_dir: Path | None = Field(default_factory=lambda data: _configured_data_dir(data["home"]))
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    artifacts_dir: Path = Field(default_factory=lambda data: data["home"] / "artifacts")
    database_url: str = Field(
        default_factory=lambda data: f"sqlite:///{data['home'] / 'xstilts.db'}"
    )
    # Folders ``local:`` models may come from; the environment gives them os.pathsep-separated.
    model_roots: Annotated[tuple[Path, ...], NoDecode] = ()
    # Folders a spec's ``data.path`` may name (os.pathsep-separated); default: ``data_dir`` alone.
    data_roots: Annotated[tuple[Path, ...], NoDecode] = ()
    # The most work one experiment may plan: seeds, and stages over all seeds.
    max_seeds: Annotated[int, Field(ge=1, le=1024)] = 64
    max_stages: Annotated[int, Field(ge=1, le=100_000)] = 2000
    # The API answers 503 to a request still running after this (a hung database).
    request_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 20.0
    # Work one request of a key may start, estimated before planning (xstilts.experiments.quotas):
    # stage links over its experiments and seeds, GiB of models its training stages keep, and the
    # key's experiments queued or running at once.
    quota_stages: Annotated[int, Field(ge=1, le=10_000_000)] = 20_000
    quota_disk_gib: Annotated[float, Field(gt=0, le=1_048_576)] = 200.0
    quota_live_experiments: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    # Heavy requests (comparisons, report pages, study results) computed at once by one API
    # process; one more is answered 429 with Retry-After (xstilts.api.heavy).
    heavy_requests: Annotated[int, Field(ge=1, le=64)] = 2
    # The HTTP server's limits (xstilts.api.server; `xstilts serve` and `python -m services.api`).
    # A connection that has not sent a complete request line and headers this long after it
    # connected (kept alive: after the first byte of its next request) is closed; uvicorn alone
    # never closes one.
    http_header_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    # An idle keep-alive connection is closed after this many seconds (uvicorn's timeout_keep_alive).
    http_keep_alive_s: Annotated[int, Field(ge=1, le=3600)] = 5
    # A request that arrives while this many connections are open, or this many requests are
    # running, is answered 503 (uvicorn's limit_concurrency). Idle and half-open connections
    # count too, so a low value lets a flood of cheap connections turn everyone away: it is a
    # backstop against overload (about 5 KiB per open connection), not a per-client limit.
    http_max_concurrency: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    # Longest request line plus headers, in bytes; a longer one gets 431 (default 16 KiB).
    http_max_header_bytes: Annotated[int, Field(ge=1024, le=1_048_576)] = 16384
    broker_url: str = "redis://127.0.0.1:6379/0"
    # API keys as {name: sha256 hex of the key}; from XSTILTS_API_KEYS="name:sha256hex,..."
    api_keys: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    # How long a running stage may go without a heartbeat before another runner may take it over.
    lease_seconds: float = 60.0
    # The comparison cache (<artifacts>/comparisons) that gc keeps (`xstilts gc` and the service's
    # collection every 6 hours): results used within this many days, then the most recently used
    # that fit in this many MiB (0 keeps none).
    comparisons_max_age_days: Annotated[float, Field(gt=0, le=36500)] = 30.0
    comparisons_max_mib: Annotated[float, Field(ge=0, le=1_048_576)] = 512.0
    # Data-parallel replicas a worker runs one training stage on (DistributedDataParallel: one per
    # GPU of the node with NCCL; CPU processes with gloo). Stages that select a checkpoint on the
    # English dev set train in one process.
    processes_per_stage: Annotated[int, Field(ge=1, le=64)] = 1
    # Stages one GPU worker runs at once, one process each: the size of its Celery pool. How many
    # of them really run together is decided by memory, stage by stage (xstilts.runtime.gpu_budget).
    # 8 (six XLM-R Large target stages at batch 32 fit an H200 with room); 1 when one stage spreads
    # over every GPU (processes_per_stage > 1).
    stages_per_gpu: Annotated[int, Field(ge=1, le=64)] = Field(
        default_factory=lambda data: 1 if data.get("processes_per_stage", 1) > 1 else 8
    )
    # The GPU memory, in GiB, that the stages on one GPU share. Default: 90% of what the GPU had
    # free when its first stage asked. Set, it also gives a machine without a GPU a budget (tests).
    gpu_memory_gib: Annotated[float | None, Field(gt=0, le=65536)] = None
    # How the API runs stages: on Celery workers, or in a background thread of its own process.
    executor: Literal["celery", "thread"] = "celery"
    # "production" refuses settings that only make sense on one machine (an SQLite database).
    env: Literal["development", "production"] = "development"

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as e:
            # A plain XstiltsError: the CLI prints it and exits 2; a service stops with it at start-up.
            raise SettingsError.from_validation(e) from None

    @field_validator("home", "cache_dir", "artifacts_dir")
    @classmethod
    def _resolve_path(cls, value: Path) -> Path:
        path = _resolve(value)
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path} is a file; give a folder (it is created if missing)")
        return path

    @field_validator("data_dir")
    @classmethod
    def _resolve_optional_path(cls, value: Path | None) -> Path | None:
        return None if value is None else _resolve(value)

    @field_validator("model_roots", "data_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(Path(p) for p in value.split(os.pathsep) if p.strip())
        return value

    @field_validator("model_roots", "data_roots")
    @classmethod
    def _resolve_roots(cls, value: tuple[Path, ...]) -> tuple[Path, ...]:
        return tuple(_resolve(p) for p in value)

    @property
    def allowed_data_roots(self) -> tuple[Path, ...]:
        """Where ``data.path`` may point: ``data_roots``, else the data folder itself."""
        if self.data_roots:
            return self.data_roots
        return (self.data_dir,) if self.data_dir else ()

    def server_paths(self) -> list[tuple[Path, str]]:
        """Configured folders and the variable that names each, longest first: what a message
        shown to an API client says instead of the server's own paths."""
        named = [(self.home, "XSTILTS_HOME"), (self.cache_dir, "XSTILTS_CACHE_DIR")]
        named += [(self.artifacts_dir, "XSTILTS_ARTIFACTS_DIR")]
        named += [(r, "XSTILTS_MODEL_ROOTS") for r in self.model_roots]
        named += [(r, "XSTILTS_DATA_ROOTS") for r in self.data_roots]
        if self.data_dir:
            named.append((self.data_dir, "XSTILTS_DATA_DIR"))
        return sorted(named, key=lambda pair: len(str(pair[0])), reverse=True)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: Any) -> dict[str, str]:
        if isinstance(value, Mapping):
            entries = [(str(k), str(v)) for k, v in value.items()]
        elif isinstance(value, str):
            entries = []
            for n, item in enumerate((i.strip() for i in value.split(",")), start=1):
                if not item:
                    continue  # a trailing comma is harmless
                name, colon, digest = item.partition(":")
                if not colon:
                    # The entry is not echoed: without a colon it may well be a key itself.
                    raise ValueError(
                        f"entry {n} is not name:sha256hex (it has no ':'); expected "
                        "comma-separated name:<sha256 hex of the key> pairs"
                    )
                entries.append((name, digest))
        else:
            raise ValueError("expected comma-separated name:<sha256 hex of the key> pairs")
        keys: dict[str, str] = {}
        for name, digest in entries:
            name, digest = name.strip(), digest.strip().lower()
            if not name:
                raise ValueError("an entry has an empty name; expected name:sha256hex")
            if not _SHA256_HEX.fullmatch(digest):
                raise ValueError(
                    f"entry {name!r}: the digest must be 64 hex characters, the SHA-256 of the key "
                    f"(not the key itself); got {len(digest)} characters"
                )
            if name in keys:
                raise ValueError(f"the name {name!r} appears twice; each key needs its own name")
            keys[name] = digest
        return keys

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        scheme, rest = _split_url(
            value,
            DATABASE_SCHEMES,
            "e.g. sqlite:///path/xstilts.db or postgresql+psycopg://user:password@host/db",
        )
        if scheme == "postgresql":
            return f"postgresql+psycopg://{rest}"
        return value

    @field_validator("broker_url")
    @classmethod
    def _check_broker_url(cls, value: str) -> str:
        _split_url(value, BROKER_SCHEMES, "e.g. redis://redis:6379/0", listed_with="://")
        return value

    @field_validator("lease_seconds")
    @classmethod
    def _check_lease(cls, value: float) -> float:
        # Heartbeats are a fraction of the lease; zero or less would let any runner steal any stage.
        if not value > 0:
            raise ValueError(f"must be a number of seconds greater than 0, e.g. 60; got {value:g}")
        return value

    @model_validator(mode="after")
    def _check_gpu_sharing(self) -> Settings:
        if self.stages_per_gpu > 1 and self.processes_per_stage > 1:
            raise ValueError(
                f"{env_var('stages_per_gpu')}: {self.stages_per_gpu} stages per GPU, but "
                f"{env_var('processes_per_stage')}={self.processes_per_stage} spreads each stage "
                f"over every GPU of the node; set one of them to 1"
            )
        return self

    @model_validator(mode="after")
    def _check_production(self) -> Settings:
        # Several services share one database in production; an SQLite file cannot be shared.
        if self.env == "production" and self.database_url.startswith("sqlite"):
            raise ValueError(
                f"{env_var('database_url')}: {env_var('env')}=production needs a PostgreSQL "
                "database (postgresql+psycopg://...); SQLite is for development only"
            )
        return self


class ClientSettings(BaseSettings):
    """What ``xstilts submit`` reads: the caller's own API key, kept apart from :class:`Settings`
    because it belongs to a user talking to a server, not to the server (which holds only hashes)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True)

    # XSTILTS_API_KEY; --api-key wins over it, $XSTILTS_HOME/api-key is the fallback.
    api_key: SecretStr | None = None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read from the environment once (services and workers)."""
    return Settings()
