"""Where flywheel keeps its state: everything lives under one folder, FLYWHEEL_HOME."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = REPO_ROOT / "schemas"
DEFAULT_HOME = Path(".flywheel")


@dataclass(frozen=True)
class Home:
    """The layout of FLYWHEEL_HOME; creating a Home creates nothing, `ensure()` does."""

    root: Path

    @classmethod
    def from_env(cls, root: str | os.PathLike[str] | None = None) -> Home:
        chosen = root or os.environ.get("FLYWHEEL_HOME") or DEFAULT_HOME
        return cls(Path(chosen).expanduser().resolve())

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
    def argilla(self) -> Path:
        return self.root / "argilla"

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    def ensure(self) -> Home:
        for folder in (self.root, self.landing, self.dagster_home):
            folder.mkdir(parents=True, exist_ok=True)
        return self
