"""flywheel's settings: where its state lives (one folder, FLYWHEEL_HOME) and how it reaches the warehouse and
Argilla. Environment variables are read here and nowhere else, once, by `Home.from_env`; every other module
is handed the resulting `Home`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = REPO_ROOT / "schemas"
DEFAULT_HOME = Path(".flywheel")
ARGILLA_WORKSPACE = "flywheel"


@dataclass(frozen=True)
class WarehouseOptions:
    # DuckDB lets one process at a time open a file for writing. Dagster runs steps (and runs) in separate
    # processes, so a writer that finds the file locked waits its turn instead of failing.
    lock_timeout_s: float = 600.0
    # DuckDB would otherwise cache up to 80% of the machine's memory; it spills to disk beyond this limit.
    memory_limit: str = "1.5GB"  # with Python's own memory, a 10M-row cycle stays under 4 GB in all


@dataclass(frozen=True)
class ScaleOptions:
    """The scale-out profile's services: one PostgreSQL for Dagster's instance storage and the lake's catalog,
    a Celery broker for the workers, and where the lake keeps its Parquet files: a folder every worker sees (a
    shared mount) or an object storage URL (s3://bucket/prefix, credentials from the AWS_* variables)."""

    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/test"
    lake_schema: str = "flywheel_lake"  # the PostgreSQL schema holding the lake's catalog tables
    lake_data: str = ""                 # a folder or s3://bucket/prefix; default FLYWHEEL_HOME/lake
    broker_url: str = "pyamqp://guest:guest@127.0.0.1:5672//"


PROFILES = ("embedded", "scale")


def is_url(location: str) -> bool:
    """Object storage (s3://, gs://, ...) rather than a folder."""
    return "://" in location


@dataclass(frozen=True)
class ArgillaOptions:
    """A remote Argilla when both `api_url` and `api_key` are set; otherwise the local server on `local_port`."""

    api_url: str = ""
    api_key: str = field(default="", repr=False)
    workspace: str = ARGILLA_WORKSPACE
    local_port: int = 6900
    timeout_s: float = 30.0  # per request: a slow Argilla is an error, not a hang

    @property
    def remote(self) -> bool:
        return bool(self.api_url and self.api_key)


# Every variable flywheel reads, with what it sets; `flywheel --help` and the README list the same.
ENVIRONMENT = {
    "FLYWHEEL_HOME": "the folder holding all state (default ./.flywheel)",
    "FLYWHEEL_PROFILE": "embedded (one DuckDB file, Dagster on SQLite; the default) or scale (DuckLake on "
                        "PostgreSQL, Dagster on PostgreSQL, steps on Celery workers)",
    "FLYWHEEL_POSTGRES_URL": "scale profile: PostgreSQL for Dagster and the lake's catalog "
                             "(default postgresql://postgres@127.0.0.1:5432/test)",
    "FLYWHEEL_LAKE_SCHEMA": "scale profile: PostgreSQL schema of the lake's catalog (default flywheel_lake)",
    "FLYWHEEL_LAKE_DATA": "scale profile: where the lake's Parquet files live, seen by every worker: a folder "
                          "(default FLYWHEEL_HOME/lake) or object storage, s3://bucket/prefix (credentials from "
                          "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION; AWS_ENDPOINT_URL for an "
                          "S3-compatible store)",
    "FLYWHEEL_BROKER_URL": "scale profile: the Celery broker (default pyamqp://guest:guest@127.0.0.1:5672//; "
                           "redis://127.0.0.1:6379/0 works too)",
    "FLYWHEEL_LOCK_TIMEOUT": "seconds a writer waits for the warehouse lock (default 600)",
    "FLYWHEEL_DUCKDB_MEMORY": "DuckDB's memory limit before it spills to disk (default 1.5GB)",
    "FLYWHEEL_ARGILLA_PORT": "port of the local Argilla on 127.0.0.1 (default 6900)",
    "FLYWHEEL_ARGILLA_TIMEOUT": "seconds per Argilla request (default 30)",
    "ARGILLA_API_URL": "your own Argilla (with ARGILLA_API_KEY); unset: the local one",
    "ARGILLA_API_KEY": "the key for ARGILLA_API_URL",
    "ARGILLA_WORKSPACE": "the workspace on your own Argilla (default flywheel)",
}


@dataclass(frozen=True)
class Home:
    """The layout of FLYWHEEL_HOME and the settings that go with it; creating a Home creates nothing,
    `ensure()` does."""

    root: Path
    profile: str = "embedded"
    warehouse_options: WarehouseOptions = WarehouseOptions()
    argilla: ArgillaOptions = ArgillaOptions()
    scale: ScaleOptions = ScaleOptions()

    @classmethod
    def from_env(cls, root: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None,
                 profile: str | None = None) -> Home:
        """`root` (a command's --home) wins over FLYWHEEL_HOME, `profile` (its --profile) over FLYWHEEL_PROFILE;
        the rest comes from the environment."""
        env = os.environ if env is None else env
        chosen = root or env.get("FLYWHEEL_HOME") or DEFAULT_HOME
        defaults_w, defaults_a, defaults_s = WarehouseOptions(), ArgillaOptions(), ScaleOptions()
        profile = profile or env.get("FLYWHEEL_PROFILE") or "embedded"
        if profile not in PROFILES:
            raise ValueError(f"FLYWHEEL_PROFILE={profile!r}: one of {', '.join(PROFILES)}")
        return cls(
            Path(chosen).expanduser().resolve(),
            profile=profile,
            warehouse_options=WarehouseOptions(
                lock_timeout_s=_number(env, "FLYWHEEL_LOCK_TIMEOUT", defaults_w.lock_timeout_s),
                memory_limit=env.get("FLYWHEEL_DUCKDB_MEMORY", defaults_w.memory_limit)),
            argilla=ArgillaOptions(
                api_url=env.get("ARGILLA_API_URL", "").rstrip("/"), api_key=env.get("ARGILLA_API_KEY", ""),
                workspace=env.get("ARGILLA_WORKSPACE", defaults_a.workspace),
                local_port=int(_number(env, "FLYWHEEL_ARGILLA_PORT", defaults_a.local_port)),
                timeout_s=_number(env, "FLYWHEEL_ARGILLA_TIMEOUT", defaults_a.timeout_s)),
            scale=ScaleOptions(
                postgres_url=env.get("FLYWHEEL_POSTGRES_URL") or defaults_s.postgres_url,
                lake_schema=env.get("FLYWHEEL_LAKE_SCHEMA") or defaults_s.lake_schema,
                lake_data=env.get("FLYWHEEL_LAKE_DATA") or defaults_s.lake_data,
                broker_url=env.get("FLYWHEEL_BROKER_URL") or defaults_s.broker_url),
        )

    def environment(self) -> dict[str, str]:
        """The variables that make another process (a Celery worker, a run's process) see this same home and
        profile."""
        return {"FLYWHEEL_HOME": str(self.root), "FLYWHEEL_PROFILE": self.profile,
                "FLYWHEEL_LOCK_TIMEOUT": str(self.warehouse_options.lock_timeout_s),
                "FLYWHEEL_DUCKDB_MEMORY": self.warehouse_options.memory_limit,
                "FLYWHEEL_POSTGRES_URL": self.scale.postgres_url, "FLYWHEEL_LAKE_SCHEMA": self.scale.lake_schema,
                "FLYWHEEL_LAKE_DATA": self.lake_data, "FLYWHEEL_BROKER_URL": self.scale.broker_url}

    @property
    def lake(self) -> bool:
        return self.profile == "scale"

    @property
    def lake_data(self) -> str:
        """The lake's data path: an absolute folder, or an object storage URL."""
        location = self.scale.lake_data
        if is_url(location):
            return location.rstrip("/")
        return str(Path(location).expanduser().resolve() if location else self.root / "lake")

    @property
    def lake_folder(self) -> Path | None:
        """The lake's data folder on this machine; None when its files are in object storage."""
        return None if is_url(self.lake_data) else Path(self.lake_data)

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    @property
    def argilla_folder(self) -> Path:
        return self.root / "argilla"

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    def ensure(self) -> Home:
        for folder in (self.root, self.landing, self.dagster_home):
            private_folder(folder)
        return self


# FLYWHEEL_HOME holds raw logs, un-redacted text and credentials: what flywheel creates there is its owner's alone.
def private_folder(folder: Path) -> Path:
    """Make (or keep) a folder only its owner can enter (0700)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return owner_only(folder)


def owner_only(path: Path) -> Path:
    """0700 for a folder, 0600 for a file; left as it is when this user does not own it."""
    try:
        if path.exists() and path.stat().st_uid == os.getuid():
            path.chmod(0o700 if path.is_dir() else 0o600)
    except OSError:
        pass
    return path


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if text is None or text == "":
        return default
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a number") from None
