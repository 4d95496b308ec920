from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.settings import REPO_ROOT, Home

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
ZEROEVAL = SHARED_DATA / "zeroeval_gsm8k.jsonl.gz"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path / "home"))
    return Home.from_env().ensure()


@pytest.fixture
def con(home: Home):
    from flywheel import warehouse

    connection = warehouse.connect(home.warehouse)
    warehouse.ensure_raw_layer(connection)
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def openai_server():
    from tests.support.openai_server import OpenAICompatibleServer

    with OpenAICompatibleServer() as server:
        yield server


@pytest.fixture(scope="session")
def zeroeval_path() -> Path:
    if not ZEROEVAL.exists():
        pytest.skip(f"the shared sample {ZEROEVAL} is not beside this checkout")
    return ZEROEVAL
