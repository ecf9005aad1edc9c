"""A real `clarion serve` process for the compatibility suite, driven only through the public CLI and HTTP.

`LiveServer.start` runs `python -m clarion serve` on a free loopback port with its own data directory (and
PostgreSQL URL when given), waits until it answers HTTP, and `stop` terminates it. Environments and keys come
from the `clarion` CLI (`keys list`, `environments create`), never from the store's Python API, so the suite
sees exactly what an operator sees. The pytest fixtures that own these servers live in `conftest.py`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from click.testing import CliRunner

from clarion.cli import main as clarion_cli

READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0

# The server's channels (`<data_dir>/channels.yml`), with fixed ids so that tests can address them.
PUSH_FCM_CHANNEL_ID = "3a0b5f9e-0c4e-4e0f-9d5a-1f2e3d4c5b6a"
PUSH_SNS_CHANNEL_ID = "5b8c1d2e-3f4a-4b5c-8d6e-7f8091a2b3c4"
ONE_SIGNAL_CHANNEL_ID = "6c9d2e3f-4a5b-4c6d-9e7f-8091a2b3c4d5"
SLACK_CHANNEL_ID = "7dae3f4a-5b6c-4d7e-8f90-91a2b3c4d5e6"
MS_TEAMS_CHANNEL_ID = "8ebf4a5b-6c7d-4e8f-9a01-a2b3c4d5e6f7"
DISCORD_CHANNEL_ID = "9fc05b6c-7d8e-4f90-8b12-b3c4d5e6f708"
IN_APP_FEED_CHANNEL_ID = "0c1d2e3f-4a5b-4c6d-8e7f-90a1b2c3d4e5"
CHANNELS_FILE = f"""\
channels:
  - {{id: "{IN_APP_FEED_CHANNEL_ID}", key: in-app, type: in_app_feed, provider: in_app_feed_knock}}
  - {{id: "{PUSH_FCM_CHANNEL_ID}", key: push-fcm, type: push, provider: push_fcm}}
  - {{id: "{PUSH_SNS_CHANNEL_ID}", key: push-sns, type: push, provider: push_aws_sns}}
  - {{id: "{ONE_SIGNAL_CHANNEL_ID}", key: push-onesignal, type: push, provider: push_one_signal}}
  - {{id: "{SLACK_CHANNEL_ID}", key: slack, type: chat, provider: chat_slack}}
  - {{id: "{MS_TEAMS_CHANNEL_ID}", key: ms-teams, type: chat, provider: chat_ms_teams}}
  - {{id: "{DISCORD_CHANNEL_ID}", key: discord, type: chat, provider: chat_discord}}
"""


@dataclass(frozen=True)
class EnvironmentKeys:
    """One environment as `clarion environments create` prints it."""

    name: str
    secret_key: str
    publishable_key: str


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _parse_keys(output: str) -> dict[str, dict[str, str]]:
    """`environment<TAB>kind<TAB>key[<TAB>revoked]` lines → {environment: {kind: key}} (live keys only)."""
    keys: dict[str, dict[str, str]] = {}
    for line in output.splitlines():
        fields = line.split("\t")
        if len(fields) == 3:
            environment, kind, key = fields
            keys.setdefault(environment, {})[kind] = key
    return keys


@dataclass
class LiveServer:
    """A running `clarion serve` and the environment variables its CLI commands share."""

    data_dir: Path
    database_url: str = ""
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def environ(self) -> dict[str, str]:
        """The configuration every `clarion` command of this server runs with."""
        environ = {
            "CLARION_DATA_DIR": str(self.data_dir),
            "CLARION_PORT": str(self.port),
            "CLARION_WORKFLOWS_DIR": str(self.workflows_dir),
            "CLARION_AUDIENCES_DIR": str(self.audiences_dir),
        }
        if self.database_url:
            environ["CLARION_DATABASE_URL"] = self.database_url
        return environ

    @property
    def workflows_dir(self) -> Path:
        """The server's own workflows folder, which tests fill; the repository's examples name channels
        this server does not configure."""
        return self.data_dir / "workflows"

    @property
    def audiences_dir(self) -> Path:
        """The server's own audiences folder, which tests fill before starting it."""
        return self.data_dir / "audiences"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "serve.log"

    def _process_environ(self) -> dict[str, str]:
        """The test process's environment with only this server's CLARION_* settings."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("CLARION_")}
        return {**inherited, **self.environ}

    def start(self) -> None:
        (self.data_dir / "channels.yml").write_text(CHANNELS_FILE, encoding="utf-8")
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "clarion", "serve"],
            env=self._process_environ(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"clarion serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                # Any HTTP answer means the app is serving; without a key it is Knock's 401.
                response = httpx.get(f"{self.url}/v1/users", timeout=1.0)
            except httpx.TransportError:
                time.sleep(0.1)
                continue
            if response.status_code == 401:
                return
            raise RuntimeError(f"clarion serve answered {response.status_code}: {response.text}")
        raise RuntimeError(f"clarion serve not ready after {READY_TIMEOUT_SECONDS}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()

    def cli(self, *args: str) -> str:
        """Run a `clarion` command in-process against this server's store and return its output.

        In-process saves an interpreter start per call (~0.7s) while still going through the CLI.
        """
        unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CLARION_")}
        environ = {**unset, **self.environ}
        result = CliRunner().invoke(clarion_cli, list(args), env=environ, catch_exceptions=False)
        if result.exit_code != 0:
            raise RuntimeError(f"clarion {' '.join(args)} failed ({result.exit_code}): {result.output}")
        return result.output

    def keys(self) -> dict[str, dict[str, str]]:
        """`clarion keys list`, run as its own process: {environment: {kind: key}}."""
        completed = subprocess.run(
            [sys.executable, "-m", "clarion", "keys", "list"],
            env=self._process_environ(),
            capture_output=True,
            text=True,
            check=True,
        )
        return _parse_keys(completed.stdout)

    def create_environment(self, prefix: str = "compat") -> EnvironmentKeys:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        keys = _parse_keys(self.cli("environments", "create", name))[name]
        return EnvironmentKeys(name=name, secret_key=keys["secret"], publishable_key=keys["publishable"])

    def push_audiences(self, folder: Path, environment: str) -> str:
        """`clarion audiences push FOLDER --environment NAME`; the running server sees the new audiences
        within its cache's 2 seconds, or at once in an environment it has not looked up yet."""
        return self.cli("audiences", "push", str(folder), "--environment", environment)

    def push_workflows(self, folder: Path, environment: str) -> str:
        """`clarion workflows push FOLDER --environment NAME`; the running server sees the new versions
        within its workflow cache's 2 seconds, or at once for workflows it has not looked up yet."""
        return self.cli("workflows", "push", str(folder), "--environment", environment)
