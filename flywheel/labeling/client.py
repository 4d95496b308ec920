"""Which Argilla to talk to: a remote one when ARGILLA_API_URL and ARGILLA_API_KEY are set (a Hugging Face
Space, a Docker deployment), otherwise the local server under FLYWHEEL_HOME."""

from __future__ import annotations

import os
from dataclasses import dataclass

import httpx

from flywheel.labeling.server import WORKSPACE, LocalArgilla
from flywheel.settings import Home

DEFAULT_TIMEOUT_S = float(os.environ.get("FLYWHEEL_ARGILLA_TIMEOUT", "30"))


class ArgillaUnavailable(RuntimeError):
    """Argilla could not be reached or answered with an error; nothing was marked as done that was not."""


@dataclass(frozen=True)
class ArgillaTarget:
    api_url: str
    api_key: str
    workspace: str
    local: bool
    timeout: float = DEFAULT_TIMEOUT_S  # seconds per request: a slow Argilla is an error, not a hang

    def __repr__(self) -> str:  # the key never lands in logs or tracebacks
        return f"ArgillaTarget(api_url={self.api_url!r}, workspace={self.workspace!r}, local={self.local})"

    def client(self):
        import argilla as rg

        try:
            return rg.Argilla(api_url=self.api_url, api_key=self.api_key, timeout=max(1, int(self.timeout)),
                              retries=1)
        except Exception as error:  # the SDK raises its own, httpx's or a bare Exception on connect
            raise ArgillaUnavailable(f"cannot connect to Argilla at {self.api_url}: {error}") from error

    def reachable(self, timeout: float = 3.0) -> bool:
        try:
            answer = httpx.get(f"{self.api_url}/api/v1/me", headers={"X-Argilla-Api-Key": self.api_key},
                               timeout=timeout)
        except httpx.HTTPError:
            return False
        return answer.status_code == 200


def remote_target() -> ArgillaTarget | None:
    url, key = os.environ.get("ARGILLA_API_URL"), os.environ.get("ARGILLA_API_KEY")
    if url and key:
        return ArgillaTarget(url.rstrip("/"), key, os.environ.get("ARGILLA_WORKSPACE", WORKSPACE), local=False)
    return None


def resolve_target(home: Home, start_local: bool = False, say=print) -> ArgillaTarget:
    """The remote Argilla if configured; else the local one (started when `start_local`)."""
    remote = remote_target()
    if remote is not None:
        return remote
    server = LocalArgilla(home)
    if start_local:
        state, credentials, _ = server.up(say)
        return ArgillaTarget(state.url, credentials.api_key, credentials.workspace, local=True)
    credentials, state = server.credentials(), server.state()
    if credentials is None:
        raise ArgillaUnavailable(
            "no Argilla yet: start the local one with `flywheel argilla up`, or use yours by setting "
            "ARGILLA_API_URL and ARGILLA_API_KEY")
    if state is None:
        raise ArgillaUnavailable(f"the local Argilla ({server.folder}) is not running: start it with "
                                 "`flywheel argilla up`")
    return ArgillaTarget(state.url, credentials.api_key, credentials.workspace, local=True)
