"""The `clarion` command: serve (or api and worker apart), migrate, environments, keys and channels. Each
command parses its options, builds a runtime (`clarion.runtime`) and calls into the package; no logic of its
own lives here."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import uvicorn
import uvloop

from clarion.api.app import create_app
from clarion.channels import load_channels
from clarion.config import Settings, settings_from_env
from clarion.engine.workflow_files import WorkflowFilesError
from clarion.errors import ClarionError
from clarion.runtime import Runtime, build_runtime, build_worker, freeze_startup_heap
from clarion.store.environments import KeyKind

T = TypeVar("T")

DEFAULT_ENVIRONMENT = "development"


def _settings(**overrides: Any) -> Settings:
    try:
        return settings_from_env().with_overrides(**overrides)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def _with_runtime(
    settings: Settings, action: Callable[[Runtime], Awaitable[T]], *, serves_requests: bool = True
) -> T:
    async def run() -> T:
        runtime = await build_runtime(settings, serves_requests=serves_requests)
        try:
            return await action(runtime)
        finally:
            await runtime.close()

    try:
        return asyncio.run(run())
    except ClarionError as exc:
        raise click.ClickException(exc.message) from exc


host_option = click.option(
    "--host", default=None, help="Interface to bind (CLARION_HOST, default 127.0.0.1)."
)
port_option = click.option(
    "--port", type=int, default=None, help="Port to listen on (CLARION_PORT, default 8080)."
)
data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the SQLite file and default config (CLARION_DATA_DIR, default ./.clarion).",
)


@click.group()
def main() -> None:
    """Clarion: a self-hosted notification engine with Knock's API."""


@main.command()
@host_option
@port_option
@data_dir_option
def serve(host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Run the API and the worker in one process."""
    _serve_http(_settings(host=host, port=port, data_dir=data_dir), with_worker=True)


@main.command()
@host_option
@port_option
@data_dir_option
def api(host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Run the API only; jobs are left to `clarion worker` processes."""
    _serve_http(_settings(host=host, port=port, data_dir=data_dir), with_worker=False)


@main.command()
@data_dir_option
def worker(data_dir: Path | None) -> None:
    """Run the job worker only, until SIGINT or SIGTERM."""

    async def work(runtime: Runtime) -> None:
        freeze_startup_heap()
        await build_worker(runtime).run_until_signalled()

    _with_runtime(_settings(data_dir=data_dir), work, serves_requests=False)


async def _push_workflows_dir(runtime: Runtime) -> None:
    """At start-up: the workflows folder, when there is one, committed to every environment."""
    folder = runtime.settings.workflows_dir
    if not folder.is_dir():
        click.echo(f"  no workflows folder at {folder}; push one with `clarion workflows push DIR`")
        return
    environment_ids = [environment.id for environment in await runtime.environments.all()]
    results = await runtime.workflows.push_folder(environment_ids, folder)
    keys = sorted({result.key for commits in results.values() for result in commits})
    click.echo(f"  workflows from {folder}: {', '.join(keys) or 'none'}")


def _serve_http(settings: Settings, *, with_worker: bool) -> None:
    async def run() -> None:
        runtime = await build_runtime(settings)
        try:
            environment, _ = await runtime.environments.ensure(DEFAULT_ENVIRONMENT)
            click.echo(f"Clarion ready on {runtime.database.describe()}")
            await _push_workflows_dir(runtime)
            for key in await runtime.environments.list_keys():
                if key.environment.id == environment.id and not key.revoked:
                    click.echo(f"  {environment.name} {key.kind.value} key: {key.key}")
            click.echo(f"  API: http://{settings.host}:{settings.port}/v1")
            freeze_startup_heap()
            config = uvicorn.Config(
                create_app(runtime, worker=build_worker(runtime) if with_worker else None),
                host=settings.host,
                port=settings.port,
                log_level="warning",
                access_log=False,
                http="httptools",
            )
            await uvicorn.Server(config).serve()
        finally:
            await runtime.close()

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run())
    except ClarionError as exc:
        raise click.ClickException(exc.message) from exc
    except WorkflowFilesError as exc:
        raise click.ClickException(f"invalid workflows:\n{exc}") from exc


@main.command()
def migrate() -> None:
    """Apply database migrations and exit."""

    async def noop(_runtime: Runtime) -> None:
        return None

    _with_runtime(_settings(), noop)
    click.echo("migrations applied")


@main.group()
def environments() -> None:
    """Manage environments."""


@environments.command("create")
@click.argument("name")
def environments_create(name: str) -> None:
    """Create an environment with one secret and one publishable key."""

    async def create(runtime: Runtime) -> None:
        environment = await runtime.environments.create(name)
        for key in await runtime.environments.list_keys():
            if key.environment.id == environment.id:
                click.echo(f"{environment.name}\t{key.kind.value}\t{key.key}")

    _with_runtime(_settings(), create)


@environments.command("signing-key")
@click.argument("name")
@click.argument("public_key_pem_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def environments_signing_key(name: str, public_key_pem_file: Path) -> None:
    """Set the RSA public key (PEM file) that verifies NAME's signed user tokens."""

    public_key_pem = public_key_pem_file.read_text()

    async def set_key(runtime: Runtime) -> None:
        environment = await runtime.environments.set_signing_key(name, public_key_pem)
        click.echo(f"{environment.name}\tsigning key set")

    _with_runtime(_settings(), set_key)


@environments.command("enhanced-security")
@click.argument("name")
@click.argument("state", type=click.Choice(["on", "off"]))
def environments_enhanced_security(name: str, state: str) -> None:
    """Turn enhanced security on (publishable keys need a signed user token) or off for NAME."""

    async def set_flag(runtime: Runtime) -> None:
        environment = await runtime.environments.set_enhanced_security(name, state == "on")
        click.echo(f"{environment.name}\tenhanced security {state}")

    _with_runtime(_settings(), set_flag)


@main.group()
def keys() -> None:
    """Manage API keys."""


@keys.command("list")
def keys_list() -> None:
    """Print one line per key: environment, kind, key (revoked keys are marked)."""

    async def show(runtime: Runtime) -> None:
        for key in await runtime.environments.list_keys():
            suffix = "\trevoked" if key.revoked else ""
            click.echo(f"{key.environment.name}\t{key.kind.value}\t{key.key}{suffix}")

    _with_runtime(_settings(), show)


@keys.command("create")
@click.argument("environment")
@click.option("--kind", type=click.Choice([k.value for k in KeyKind]), default=KeyKind.SECRET.value)
def keys_create(environment: str, kind: str) -> None:
    """Create a key for ENVIRONMENT and print it."""

    async def create(runtime: Runtime) -> None:
        key = await runtime.environments.create_key(environment, KeyKind(kind))
        click.echo(f"{key.environment.name}\t{key.kind.value}\t{key.key}")

    _with_runtime(_settings(), create)


@keys.command("revoke")
@click.argument("key")
def keys_revoke(key: str) -> None:
    """Revoke KEY; requests with it are refused within seconds."""

    async def revoke(runtime: Runtime) -> None:
        await runtime.environments.revoke_key(key)
        click.echo("revoked")

    _with_runtime(_settings(), revoke)


@main.group()
def channels() -> None:
    """Inspect the channels file (CLARION_CHANNELS_FILE, default <data dir>/channels.yml)."""


@channels.command("list")
def channels_list() -> None:
    """Print one line per channel: id, key, type, provider (writing the default file if there is none)."""
    settings = _settings()
    try:
        registry = load_channels(settings.resolved_channels_file, create=True)
    except ClarionError as exc:
        raise click.ClickException(exc.message) from exc
    for channel in registry:
        click.echo(f"{channel.id}\t{channel.key}\t{channel.type.value}\t{channel.provider.value}")


@main.group()
def workflows() -> None:
    """Manage workflows (folders in the Knock CLI layout, CLARION_WORKFLOWS_DIR, default ./workflows)."""


environment_option = click.option(
    "--environment", "environment_name", default=None, help="Only this environment (default: every one)."
)


async def _environment_ids(runtime: Runtime, name: str | None) -> list[str]:
    if name is None:
        return [environment.id for environment in await runtime.environments.all()]
    environment = await runtime.environments.get_by_name(name)
    if environment is None:
        raise click.ClickException(f"no environment named {name!r}")
    return [environment.id]


@workflows.command("push")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@environment_option
def workflows_push(folder: Path, environment_name: str | None) -> None:
    """Check every workflow of FOLDER, then commit each changed one as a new version."""

    async def push(runtime: Runtime) -> None:
        names = {environment.id: environment.name for environment in await runtime.environments.all()}
        try:
            results = await runtime.workflows.push_folder(
                await _environment_ids(runtime, environment_name), folder
            )
        except WorkflowFilesError as exc:
            raise click.ClickException(f"invalid workflows, nothing pushed:\n{exc}") from exc
        for environment_id, commits in results.items():
            for result in commits:
                state = "new version" if result.changed else "unchanged"
                click.echo(
                    f"{names[environment_id]}\t{result.key}\tversion {result.version.version}\t{state}"
                )

    _with_runtime(_settings(), push)


@workflows.command("list")
@environment_option
def workflows_list(environment_name: str | None) -> None:
    """Print one line per workflow: environment, key, current version, active or inactive."""

    async def show(runtime: Runtime) -> None:
        names = {environment.id: environment.name for environment in await runtime.environments.all()}
        for environment_id in await _environment_ids(runtime, environment_name):
            for record in await runtime.workflows.store.list(environment_id):
                state = "active" if record.active else "inactive"
                click.echo(
                    f"{names[environment_id]}\t{record.key}\tversion {record.current.version}\t{state}"
                )

    _with_runtime(_settings(), show)


@workflows.command("activate")
@click.argument("key")
@environment_option
def workflows_activate(key: str, environment_name: str | None) -> None:
    """Let KEY be triggered again."""
    _set_active(key, environment_name, active=True)


@workflows.command("deactivate")
@click.argument("key")
@environment_option
def workflows_deactivate(key: str, environment_name: str | None) -> None:
    """Refuse triggers of KEY (`workflow_inactive`); runs under way end at their next step."""
    _set_active(key, environment_name, active=False)


def _set_active(key: str, environment_name: str | None, *, active: bool) -> None:
    async def switch(runtime: Runtime) -> None:
        names = {environment.id: environment.name for environment in await runtime.environments.all()}
        for environment_id in await _environment_ids(runtime, environment_name):
            changed = await runtime.workflows.store.set_active(environment_id, key, active)
            state = ("active" if active else "inactive") if changed else "no such workflow"
            click.echo(f"{names[environment_id]}\t{key}\t{state}")

    _with_runtime(_settings(), switch)
