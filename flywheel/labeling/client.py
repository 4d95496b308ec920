"""Which Argilla to talk to: a remote one when ARGILLA_API_URL and ARGILLA_API_KEY are set (a Hugging Face
Space, a Docker deployment), otherwise the local server under FLYWHEEL_HOME."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from flywheel.labeling.server import LocalArgilla
from flywheel.settings import ArgillaOptions, Home


class ArgillaUnavailable(RuntimeError):
    """Argilla could not be reached or answered with an error; nothing was marked as done that was not."""


@dataclass(frozen=True)
class ArgillaTarget:
    api_url: str
    api_key: str
    workspace: str
    local: bool
    timeout: float = ArgillaOptions.timeout_s

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


def remote_target(home: Home) -> ArgillaTarget | None:
    options = home.argilla
    if options.remote:
        return ArgillaTarget(options.api_url, options.api_key, options.workspace, local=False,
                             timeout=options.timeout_s)
    return None


def resolve_target(home: Home, start_local: bool = False, say=print) -> ArgillaTarget:
    """The remote Argilla if configured; else the local one (started when `start_local`)."""
    remote = remote_target(home)
    if remote is not None:
        return remote
    server = LocalArgilla(home)
    if start_local:
        state, credentials, _ = server.up(say)
        return ArgillaTarget(state.url, credentials.api_key, credentials.workspace, local=True,
                             timeout=home.argilla.timeout_s)
    credentials, state = server.credentials(), server.state()
    if credentials is None:
        raise ArgillaUnavailable(
            "no Argilla yet: start the local one with `flywheel argilla up`, or use yours by setting "
            "ARGILLA_API_URL and ARGILLA_API_KEY")
    if state is None:
        raise ArgillaUnavailable(f"the local Argilla ({server.folder}) is not running: start it with "
                                 "`flywheel argilla up`")
    return ArgillaTarget(state.url, credentials.api_key, credentials.workspace, local=True,
                         timeout=home.argilla.timeout_s)
