"""A real local Argilla server under FLYWHEEL_HOME/argilla: its own virtual environment, SQLite, an embedded
Redis and a search engine derived from Argilla's SQL database (no Elasticsearch).

Layout of FLYWHEEL_HOME/argilla:
    venv/              argilla-server 2.8 pinned by argilla_local/requirements.txt (kept apart: it pins
                       pydantic, fastapi, typer versions that would otherwise lock flywheel's own environment)
    data/              ARGILLA_HOME_PATH: argilla.db (the single source of truth) and the Redis socket
    credentials.json   owner username, password, API key, auth secret (mode 0600, printed once by `up`)
    server.json        pid, url and log file of the running server
    server.log         the server's output
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from flywheel.processes import alive
from flywheel.settings import ARGILLA_WORKSPACE, Home, owner_only, private_folder

SERVER_DIR = Path(__file__).parent / "argilla_local"
REQUIREMENTS = SERVER_DIR / "requirements.txt"
OWNER = "argilla"
START_TIMEOUT_S = 120.0


class ArgillaServerError(RuntimeError):
    """The local server could not be installed, started or stopped; the message says why and where to look."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    api_key: str
    workspace: str
    auth_secret: str


@dataclass(frozen=True)
class ServerState:
    pid: int
    url: str
    log: str


class LocalArgilla:
    """Install, start, stop and inspect the local server of one FLYWHEEL_HOME."""

    def __init__(self, home: Home, port: int | None = None) -> None:
        self.home = home
        self.folder = home.argilla_folder
        self.port = port or home.argilla.local_port

    # -- paths -------------------------------------------------------------------------------------------------
    @property
    def venv(self) -> Path:
        return self.folder / "venv"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def credentials_file(self) -> Path:
        return self.folder / "credentials.json"

    @property
    def state_file(self) -> Path:
        return self.folder / "server.json"

    @property
    def log_file(self) -> Path:
        return self.folder / "server.log"

    # -- credentials -------------------------------------------------------------------------------------------
    def credentials(self, create: bool = False) -> Credentials | None:
        """The stored credentials; with create=True, generate them (owner-only file) when missing."""
        if self.credentials_file.exists():
            return Credentials(**json.loads(self.credentials_file.read_text()))
        if not create:
            return None
        private_folder(self.folder)
        made = Credentials(username=OWNER, password=secrets.token_urlsafe(12), api_key=secrets.token_urlsafe(24),
                           workspace=ARGILLA_WORKSPACE, auth_secret=secrets.token_hex(32))
        # Created with 0600 from the start: never readable by others, not even for a moment.
        fd = os.open(self.credentials_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(made.__dict__, out)
        return made

    # -- install -----------------------------------------------------------------------------------------------
    def installed(self) -> bool:
        marker = self.venv / ".flywheel-requirements"
        return self.python.exists() and marker.exists() and marker.read_text() == REQUIREMENTS.read_text()

    def install(self, say: Callable[[str], None] = print) -> None:
        """Create the server's virtual environment with the pinned requirements (uv: seconds when cached)."""
        if self.installed():
            return
        from uv import find_uv_bin

        uv = find_uv_bin()
        say(f"installing argilla-server into {self.venv} (once) …")
        steps = [
            [uv, "venv", "--quiet", "--allow-existing", "--python", sys.executable, str(self.venv)],
            [uv, "pip", "install", "--quiet", "--python", str(self.python), "-r", str(REQUIREMENTS)],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, env={**os.environ, "VIRTUAL_ENV": ""})
            if done.returncode != 0:
                raise ArgillaServerError(f"installing the Argilla server failed ({' '.join(step[:3])}):\n"
                                         f"{done.stderr.strip()[-2000:]}")
        (self.venv / ".flywheel-requirements").write_text(REQUIREMENTS.read_text())

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def state(self) -> ServerState | None:
        """The running server, or None (a stale state file of a dead process is removed)."""
        if not self.state_file.exists():
            return None
        state = ServerState(**json.loads(self.state_file.read_text()))
        if not alive(state.pid):
            self.state_file.unlink(missing_ok=True)
            return None
        return state

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthy(self, url: str | None = None, timeout: float = 2.0) -> bool:
        credentials = self.credentials()
        if credentials is None:
            return False
        try:
            answer = httpx.get(f"{url or self.url()}/api/v1/me", timeout=timeout,
                               headers={"X-Argilla-Api-Key": credentials.api_key})
        except httpx.HTTPError:
            return False
        return answer.status_code == 200

    @property
    def sockets(self) -> Path:
        """The embedded Redis's socket folder: short, as a socket's path must be (107 bytes), and this server's."""
        tmp = Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())
        return tmp / f"flywheel-redis-{hashlib.sha256(str(self.folder).encode()).hexdigest()[:12]}"

    def up(self, say: Callable[[str], None] = print) -> tuple[ServerState, Credentials, bool]:
        """Start the server unless it runs; returns (state, credentials, newly_created_credentials)."""
        new_credentials = self.credentials() is None
        credentials = self.credentials(create=True)
        running = self.state()
        if running is not None:
            if self.healthy(running.url):
                return running, credentials, new_credentials
            self.down()
        if _port_taken(self.port):
            raise ArgillaServerError(f"port {self.port} on 127.0.0.1 is taken by another program; choose another "
                                     "with --port or FLYWHEEL_ARGILLA_PORT")
        self.install(say)
        private_folder(self.folder)
        private_folder(self.data)
        for made in self.data.glob("argilla.db*"):  # made by an older flywheel with the default mode
            owner_only(made)
        private_folder(self.folder / "tmp")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("ARGILLA_", "VIRTUAL_ENV", "PYTHON"))},
            "ARGILLA_HOME_PATH": str(self.data),
            "ARGILLA_DATABASE_URL": f"sqlite+aiosqlite:///{self.data / 'argilla.db'}",
            "ARGILLA_AUTH_SECRET_KEY": credentials.auth_secret,
            "ARGILLA_SEARCH_ENGINE": "flywheel-sql",
            "ARGILLA_ENABLE_TELEMETRY": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_OFFLINE": "1",
            "FLYWHEEL_ARGILLA_CREDENTIALS": str(self.credentials_file),
            "FLYWHEEL_REDIS_SOCKETS": str(private_folder(self.sockets)),
            # Importing argilla_server copies its 14 MB UI into a new temp folder every time: keep it ours.
            "TMPDIR": str(self.folder / "tmp"),
        }
        _clean_old_ui_copies(self.folder / "tmp")
        log = open(self.log_file, "ab")  # noqa: SIM115 (handed to the child process)
        process = subprocess.Popen(
            [str(self.python), str(SERVER_DIR / "serve.py"), "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=self.folder,
            start_new_session=True,  # survives the CLI that started it; stopped by `down`
            umask=0o077,  # its database holds the users' API keys: owner-only files
        )
        log.close()
        state = ServerState(pid=process.pid, url=self.url(), log=str(self.log_file))
        self.state_file.write_text(json.dumps(state.__dict__))
        say(f"starting Argilla on {state.url} (about 30 s; log: {self.log_file}) …")
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.state_file.unlink(missing_ok=True)
                raise ArgillaServerError(f"the Argilla server exited with code {process.returncode} while starting; "
                                         f"last lines of {self.log_file}:\n{_tail(self.log_file)}")
            if self.healthy(state.url):
                return state, credentials, new_credentials
            time.sleep(0.5)
        self.down()
        raise ArgillaServerError(f"the Argilla server did not answer within {START_TIMEOUT_S:.0f} s; "
                                 f"last lines of {self.log_file}:\n{_tail(self.log_file)}")

    def down(self, timeout: float = 20.0) -> bool:
        """Stop the server (its whole process group); True if one was running."""
        state = self.state()
        if state is None:
            return False
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(state.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and alive(state.pid):
                time.sleep(0.1)
            if not alive(state.pid):
                break
        self._stop_strays()
        shutil.rmtree(self.sockets, ignore_errors=True)
        self.state_file.unlink(missing_ok=True)
        _clean_old_ui_copies(self.folder / "tmp")  # the UI the server copied out at start-up
        return True

    def _stop_strays(self) -> None:
        """The embedded Redis daemonizes out of the server's process group; stop any left under our folder."""
        for process in psutil.process_iter(["cmdline"]):
            try:
                cmdline = " ".join(process.info["cmdline"] or [])
                if process.pid != os.getpid() and str(self.folder) in cmdline:
                    process.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue


def _port_taken(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _clean_old_ui_copies(tmp: Path) -> None:
    """Importing argilla_server copies its 14 MB UI into a new temporary folder every time, never removed."""
    for entry in tmp.glob("*"):
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
