"""Settings: defaults, parsing of the environment, and one test per rule that stops start-up.

Every error must start with the variable's name and say what would be valid, and must not echo a
value that may be a secret (a database password, an API key pasted where its hash belongs).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from xstilts.cli.main import main
from xstilts.config import ClientSettings, Settings, SettingsError, env_var, get_settings
from xstilts.errors import XstiltsError

ALICE = hashlib.sha256(b"alice-key").hexdigest()
BOB = hashlib.sha256(b"bob-key").hexdigest()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No XSTILTS_* variable from the caller's shell (or conftest) leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("XSTILTS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def settings_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        Settings()
    return str(info.value)


# --- good values ---------------------------------------------------------------------------------


def test_defaults_live_under_home(tmp_path: Path) -> None:
    s = Settings()
    home = tmp_path / "user" / ".xstilts"  # one home whatever the working directory
    assert s.home == home
    assert s.artifacts_dir == home / "artifacts"
    assert s.database_url == f"sqlite:///{home / 'xstilts.db'}"
    assert s.cache_dir == tmp_path / "user" / ".cache" / "xstilts"
    assert s.data_dir is None
    assert s.model_roots == ()
    assert s.broker_url == "redis://127.0.0.1:6379/0"
    assert s.api_keys == {}
    assert s.lease_seconds == 60.0
    assert s.executor == "celery"
    assert s.env == "development"


def test_default_data_folder_is_recorded_in_the_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Set-up writes $XSTILTS_HOME/data-dir; every command then finds the data without an export,
    and XSTILTS_DATA_DIR still wins."""
    home = tmp_path / "user" / ".xstilts"
    home.mkdir(parents=True)
    (tmp_path / "data").mkdir()
    (home / "data-dir").write_text(f"{tmp_path / 'data'}\n")
    assert Settings().data_dir == tmp_path / "data"
    assert Settings().allowed_data_roots == (tmp_path / "data",)
    monkeypatch.setenv("XSTILTS_DATA_DIR", str(tmp_path))
    assert Settings().data_dir == tmp_path


def test_defaults_follow_xstilts_home_and_paths_are_resolved(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XSTILTS_HOME", "~/state")
    monkeypatch.setenv("XSTILTS_DATA_DIR", "data/../data")
    monkeypatch.setenv("XSTILTS_CACHE_DIR", "~/c")
    s = Settings()
    home = tmp_path / "user" / "state"
    assert s.home == home
    assert s.artifacts_dir == home / "artifacts"
    assert s.database_url == f"sqlite:///{home / 'xstilts.db'}"
    assert s.data_dir == tmp_path / "data"
    assert s.cache_dir == tmp_path / "user" / "c"


def test_every_variable_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {
        "XSTILTS_HOME": str(tmp_path / "h"),
        "XSTILTS_DATA_DIR": str(tmp_path / "d"),
        "XSTILTS_CACHE_DIR": str(tmp_path / "c"),
        "XSTILTS_ARTIFACTS_DIR": str(tmp_path / "a"),
        "XSTILTS_DATABASE_URL": "postgresql+psycopg://x:pw@db:5432/x",
        "XSTILTS_MODEL_ROOTS": os.pathsep.join([str(tmp_path / "m1"), "", str(tmp_path / "m2")]),
        "XSTILTS_BROKER_URL": "redis://redis:6379/3",
        "XSTILTS_API_KEYS": f"alice:{ALICE}, bob:{BOB.upper()},",
        "XSTILTS_LEASE_SECONDS": "4.5",
        "XSTILTS_EXECUTOR": "thread",
        "XSTILTS_ENV": "production",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = Settings()
    assert (s.home, s.data_dir, s.cache_dir, s.artifacts_dir) == (
        tmp_path / "h",
        tmp_path / "d",
        tmp_path / "c",
        tmp_path / "a",
    )
    assert s.database_url == "postgresql+psycopg://x:pw@db:5432/x"
    assert s.model_roots == (tmp_path / "m1", tmp_path / "m2")  # empty parts skipped
    assert s.broker_url == "redis://redis:6379/3"
    # spaces around entries and a trailing comma are fine; digests are compared in lower case
    assert s.api_keys == {"alice": ALICE, "bob": BOB}
    assert s.lease_seconds == 4.5
    assert s.executor == "thread"
    assert s.env == "production"


def test_keyword_arguments_override_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XSTILTS_HOME", str(tmp_path / "from-env"))
    monkeypatch.setenv("XSTILTS_LEASE_SECONDS", "7")
    s = Settings(
        home=tmp_path / "h",
        data_dir=tmp_path / "d",
        cache_dir=tmp_path / "c",
        artifacts_dir=tmp_path / "h" / "artifacts",
        database_url=f"sqlite:///{tmp_path / 'h' / 'x.db'}",
        model_roots=(tmp_path / "m",),
        api_keys={"alice": ALICE},
    )
    assert s.home == tmp_path / "h" and s.model_roots == (tmp_path / "m",)
    assert s.api_keys == {"alice": ALICE}
    assert s.lease_seconds == 7.0  # not given: still from the environment


def test_an_empty_variable_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    # docker compose turns an unset ${VAR:-} into an empty string
    for name in ("XSTILTS_DATA_DIR", "XSTILTS_API_KEYS", "XSTILTS_LEASE_SECONDS", "XSTILTS_ENV"):
        monkeypatch.setenv(name, "")
    s = Settings()
    assert (s.data_dir, s.api_keys, s.lease_seconds, s.env) == (None, {}, 60.0, "development")


def test_a_bare_postgresql_url_gets_the_installed_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XSTILTS_DATABASE_URL", "postgresql://u:pw@h:5432/db")
    assert Settings().database_url == "postgresql+psycopg://u:pw@h:5432/db"


def test_get_settings_builds_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    monkeypatch.setenv("XSTILTS_LEASE_SECONDS", "5")
    assert get_settings() is first and first.lease_seconds == 60.0


def test_settings_are_frozen_and_copied_with_updates() -> None:
    s = Settings()
    with pytest.raises(ValueError):
        s.lease_seconds = 1  # type: ignore[misc]
    assert s.model_copy(update={"api_keys": {"local": ALICE}}).api_keys == {"local": ALICE}


def test_client_key_is_its_own_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ClientSettings().api_key is None
    monkeypatch.setenv("XSTILTS_API_KEY", "s3cret")
    client = ClientSettings()
    assert client.api_key is not None and client.api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(client)
    assert not hasattr(Settings(), "api_key")  # the server holds hashes only


# --- bad values stop start-up, naming the variable and the valid values ----------------------------


def test_api_key_entry_without_colon(monkeypatch: pytest.MonkeyPatch) -> None:
    msg = settings_error(monkeypatch, XSTILTS_API_KEYS=f"alice:{ALICE},rawkey123")
    assert msg.startswith("XSTILTS_API_KEYS: entry 2 is not name:sha256hex")
    assert "rawkey123" not in msg  # it may be a key pasted where its hash belongs


def test_api_key_entry_with_empty_name(monkeypatch: pytest.MonkeyPatch) -> None:
    msg = settings_error(monkeypatch, XSTILTS_API_KEYS=f":{ALICE}")
    assert msg.startswith("XSTILTS_API_KEYS: ") and "empty name" in msg and "name:sha256hex" in msg


@pytest.mark.parametrize("digest", ["abc", "z" * 64, ALICE + "0"])
def test_api_key_digest_not_64_hex(monkeypatch: pytest.MonkeyPatch, digest: str) -> None:
    msg = settings_error(monkeypatch, XSTILTS_API_KEYS=f"alice:{digest}")
    assert msg.startswith("XSTILTS_API_KEYS: entry 'alice': the digest must be 64 hex characters")
    assert digest not in msg


def test_api_key_name_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    msg = settings_error(monkeypatch, XSTILTS_API_KEYS=f"alice:{ALICE},alice:{BOB}")
    assert msg.startswith("XSTILTS_API_KEYS: the name 'alice' appears twice")


def test_api_keys_given_in_code_are_checked_too() -> None:
    with pytest.raises(SettingsError, match=r"^XSTILTS_API_KEYS: entry 'bob'"):
        Settings(api_keys={"bob": "not-a-digest"})


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://u:hunter2@h/db", "unknown scheme 'mysql'"),
        ("postgresql+psycopg2://u:hunter2@h/db", "unknown scheme 'postgresql+psycopg2'"),
        ("hunter2@h/db", "not a URL"),
    ],
)
def test_unknown_database_url_scheme(
    monkeypatch: pytest.MonkeyPatch, url: str, problem: str
) -> None:
    msg = settings_error(monkeypatch, XSTILTS_DATABASE_URL=url)
    assert msg.startswith(f"XSTILTS_DATABASE_URL: {problem}")
    assert "valid schemes: sqlite, postgresql, postgresql+psycopg" in msg
    assert "hunter2" not in msg  # never a password in a log


@pytest.mark.parametrize("lease", ["0", "-5"])
def test_lease_not_positive(monkeypatch: pytest.MonkeyPatch, lease: str) -> None:
    msg = settings_error(monkeypatch, XSTILTS_LEASE_SECONDS=lease)
    assert msg.startswith("XSTILTS_LEASE_SECONDS: must be a number of seconds greater than 0")


def test_lease_not_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    msg = settings_error(monkeypatch, XSTILTS_LEASE_SECONDS="1m")
    assert msg.startswith("XSTILTS_LEASE_SECONDS: ") and "valid number" in msg and "'1m'" in msg


@pytest.mark.parametrize("url", ["amqp://guest:hunter2@rabbit//", "redis:6379"])
def test_broker_not_redis(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    msg = settings_error(monkeypatch, XSTILTS_BROKER_URL=url)
    assert msg.startswith("XSTILTS_BROKER_URL: ") and "valid schemes: redis://" in msg
    assert "hunter2" not in msg


def test_unknown_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    msg = settings_error(monkeypatch, XSTILTS_EXECUTOR="process")
    assert msg.startswith("XSTILTS_EXECUTOR: ") and "'celery' or 'thread'" in msg


def test_unknown_env(monkeypatch: pytest.MonkeyPatch) -> None:
    msg = settings_error(monkeypatch, XSTILTS_ENV="prod")
    assert msg.startswith("XSTILTS_ENV: ") and "'development' or 'production'" in msg


def test_production_refuses_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    msg = settings_error(monkeypatch, XSTILTS_ENV="production")
    assert msg.startswith("XSTILTS_DATABASE_URL: XSTILTS_ENV=production needs a PostgreSQL")


def test_every_bad_variable_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    err = None
    monkeypatch.setenv("XSTILTS_LEASE_SECONDS", "0")
    monkeypatch.setenv("XSTILTS_EXECUTOR", "x")
    try:
        Settings()
    except SettingsError as e:
        err = e
    assert err is not None and isinstance(err, XstiltsError)
    assert [var for var, _ in err.problems] == ["XSTILTS_LEASE_SECONDS", "XSTILTS_EXECUTOR"]


def test_cli_prints_the_variable_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XSTILTS_DATABASE_URL", "mysql://u:pw@h/db")
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: XSTILTS_DATABASE_URL: unknown scheme 'mysql'; valid schemes:")


# --- documentation -------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def readme_variables() -> set[str]:
    text = (REPO / "README.md").read_text()
    return set(re.findall(r"^\| `(XSTILTS_[A-Z_]+)` \|", text, flags=re.MULTILINE))


def test_readme_documents_every_setting() -> None:
    fields = {env_var(name) for name in Settings.model_fields}
    fields |= {env_var(name) for name in ClientSettings.model_fields}
    assert fields <= readme_variables(), fields - readme_variables()


def test_readme_documents_every_variable_the_code_names() -> None:
    named = {
        var
        for folder in ("shared", "services", "scripts", "tests", "bench")
        for path in (REPO / folder).rglob("*")
        if path.suffix in (".py", ".sh") and "__pycache__" not in path.parts
        for var in re.findall(r"XSTILTS_[A-Z][A-Z_]*[A-Z]", path.read_text())
    }
    named.discard("XSTILTS_")  # the prefix itself
    assert named <= readme_variables(), named - readme_variables()
