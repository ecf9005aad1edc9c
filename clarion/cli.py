"""The `clarion` command: serve (or api and worker apart), migrate, environments, keys, channels, workflows
and audiences. Each
command parses its options, builds a runtime (`clarion.runtime`) and calls into the package; no logic of its
own lives here."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import uvicorn
import uvloop

from clarion.api.app import create_app
from clarion.api.http_protocol import knock_http_protocol
from clarion.channels import load_channels
from clarion.config import Settings, settings_from_env
from clarion.engine.audience_files import AudienceFilesError, LoadedAudience, read_audiences
from clarion.engine.workflow_files import LoadedWorkflow, WorkflowFilesError, read_workflows
from clarion.errors import ClarionError
from clarion.observability.logging_setup import configure_logging, uvicorn_log_config
from clarion.runtime import Runtime, build_job_runtime, build_runtime, build_worker, freeze_startup_heap
from clarion.store.environments import KeyKind

T = TypeVar("T")

DEFAULT_ENVIRONMENT = "development"


def _settings(**overrides: Any) -> Settings:
    try:
        return settings_from_env().with_overrides(**overrides)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def _with_runtime(
    settings: Settings,
    action: Callable[[Runtime], Awaitable[T]],
    *,
    create_store: bool = False,
    serves_requests: bool = True,
) -> T:
    """Run `action` on a runtime over the configured store. Only the commands that run Clarion pass
    `create_store`; the others refuse when there is no store where the settings point. `clarion worker`
    alone serves no requests, and bounds its database waits by the longer job bound."""

    async def run() -> T:
        runtime = await build_runtime(settings, create_store=create_store, serves_requests=serves_requests)
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
        await _push_audiences_dir(
            runtime,
            [environment.id for environment in await runtime.environments.all()],
            _read_audiences_dir(runtime),
            err=False,
        )
        freeze_startup_heap()
        await build_worker(runtime).run_until_signalled()

    settings = _settings(data_dir=data_dir)
    configure_logging(settings.log_format)
    try:
        _with_runtime(settings, work, create_store=True, serves_requests=False)
    except AudienceFilesError as exc:
        raise click.ClickException(f"invalid audiences:\n{exc}") from exc


def _read_workflows_dir(runtime: Runtime) -> list[LoadedWorkflow] | None:
    """The checked workflows of the workflows folder (`WorkflowFilesError` when one is invalid), or None
    when there is no such folder."""
    folder = runtime.settings.workflows_dir
    if not folder.is_dir():
        return None
    return read_workflows(folder, runtime.channels, runtime.renderer)


async def _push_workflows_dir(
    runtime: Runtime, environment_ids: list[str], loaded: list[LoadedWorkflow] | None, *, err: bool
) -> None:
    """Commit the workflows folder's workflows to the environments, and say what was committed."""
    folder = runtime.settings.workflows_dir
    if loaded is None:
        click.echo(f"  no workflows folder at {folder}; push one with `clarion workflows push DIR`", err=err)
        return
    await runtime.workflows.push(environment_ids, loaded)
    keys = sorted(workflow.definition.key for workflow in loaded)
    click.echo(f"  workflows from {folder}: {', '.join(keys) or 'none'}", err=err)


def _read_audiences_dir(runtime: Runtime) -> list[LoadedAudience] | None:
    """The checked audiences of the audiences folder (`AudienceFilesError` when one is invalid), or None
    when there is no such folder."""
    folder = runtime.settings.audiences_dir
    if not folder.is_dir():
        return None
    return read_audiences(folder)


async def _push_audiences_dir(
    runtime: Runtime, environment_ids: list[str], loaded: list[LoadedAudience] | None, *, err: bool
) -> None:
    """Commit the audiences folder's audiences to the environments, and say what was committed; said only
    when there is a folder, since most setups keep no audiences in files."""
    if loaded is None:
        return
    await runtime.audience_catalog.push(environment_ids, loaded)
    keys = sorted(audience.definition.key for audience in loaded)
    click.echo(f"  audiences from {runtime.settings.audiences_dir}: {', '.join(keys) or 'none'}", err=err)


def _serve_http(settings: Settings, *, with_worker: bool) -> None:
    configure_logging(settings.log_format)

    async def run() -> None:
        runtime = await build_runtime(settings)
        job_runtime = runtime
        try:
            environment, _ = await runtime.environments.ensure(DEFAULT_ENVIRONMENT)
            click.echo(f"Clarion ready on {runtime.database.describe()}")
            # Every environment gets the folders' audiences and workflows at start, as `environments
            # create` gives them to environments made later.
            environment_ids = [environment.id for environment in await runtime.environments.all()]
            await _push_audiences_dir(runtime, environment_ids, _read_audiences_dir(runtime), err=False)
            await _push_workflows_dir(runtime, environment_ids, _read_workflows_dir(runtime), err=False)
            for key in await runtime.environments.list_keys():
                if key.environment.id == environment.id and not key.revoked:
                    click.echo(f"  {environment.name} {key.kind.value} key: {key.key}")
            click.echo(f"  API: http://{settings.host}:{settings.port}/v1")
            if with_worker:
                job_runtime = await build_job_runtime(runtime)
            freeze_startup_heap()
            config = uvicorn.Config(
                create_app(runtime, worker=build_worker(job_runtime) if with_worker else None),
                host=settings.host,
                port=settings.port,
                log_level="warning",
                log_config=uvicorn_log_config(settings.log_format),
                access_log=False,
                http=knock_http_protocol(settings.request_read_timeout),
            )
            await uvicorn.Server(config).serve()
        finally:
            if job_runtime is not runtime:
                await job_runtime.close()
            await runtime.close()

    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again; with its default action that
    # would end the process before `runtime.close()`, leaving SQLite's log unmerged and connections open.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run())
    except ClarionError as exc:
        raise click.ClickException(exc.message) from exc
    except WorkflowFilesError as exc:
        raise click.ClickException(f"invalid workflows:\n{exc}") from exc
    except AudienceFilesError as exc:
        raise click.ClickException(f"invalid audiences:\n{exc}") from exc


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


@main.command()
@data_dir_option
def migrate(data_dir: Path | None) -> None:
    """Create the store, or bring its schema up to date, and exit."""

    async def noop(_runtime: Runtime) -> None:
        return None

    _with_runtime(_settings(data_dir=data_dir), noop, create_store=True)
    click.echo("migrations applied")


@main.group()
def environments() -> None:
    """Manage environments."""


@environments.command("create")
@click.argument("name")
@data_dir_option
def environments_create(name: str, data_dir: Path | None) -> None:
    """Create an environment with one secret and one publishable key, and commit the audiences and
    workflows folders (CLARION_AUDIENCES_DIR, CLARION_WORKFLOWS_DIR) to it, as `serve` does for every
    environment at start."""

    async def create(runtime: Runtime) -> None:
        try:
            audiences = _read_audiences_dir(runtime)
        except AudienceFilesError as exc:
            folder = runtime.settings.audiences_dir
            raise click.ClickException(f"invalid audiences in {folder}, nothing created:\n{exc}") from exc
        try:
            loaded = _read_workflows_dir(runtime)
        except WorkflowFilesError as exc:
            folder = runtime.settings.workflows_dir
            raise click.ClickException(f"invalid workflows in {folder}, nothing created:\n{exc}") from exc
        environment = await runtime.environments.create(name)
        for key in await runtime.environments.list_keys():
            if key.environment.id == environment.id:
                click.echo(f"{environment.name}\t{key.kind.value}\t{key.key}")
        # On stderr, so that the key lines stay the whole of what scripts read.
        await _push_audiences_dir(runtime, [environment.id], audiences, err=True)
        await _push_workflows_dir(runtime, [environment.id], loaded, err=True)

    _with_runtime(_settings(data_dir=data_dir), create)


@environments.command("signing-key")
@click.argument("name")
@click.argument("public_key_pem_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@data_dir_option
def environments_signing_key(name: str, public_key_pem_file: Path, data_dir: Path | None) -> None:
    """Set the RSA public key (PEM file) that verifies NAME's signed user tokens."""

    public_key_pem = public_key_pem_file.read_text()

    async def set_key(runtime: Runtime) -> None:
        environment = await runtime.environments.set_signing_key(name, public_key_pem)
        click.echo(f"{environment.name}\tsigning key set")

    _with_runtime(_settings(data_dir=data_dir), set_key)


@environments.command("enhanced-security")
@click.argument("name")
@click.argument("state", type=click.Choice(["on", "off"]))
@data_dir_option
def environments_enhanced_security(name: str, state: str, data_dir: Path | None) -> None:
    """Turn enhanced security on (publishable keys need a signed user token) or off for NAME."""

    async def set_flag(runtime: Runtime) -> None:
        environment = await runtime.environments.set_enhanced_security(name, state == "on")
        click.echo(f"{environment.name}\tenhanced security {state}")

    _with_runtime(_settings(data_dir=data_dir), set_flag)


@main.group()
def keys() -> None:
    """Manage API keys."""


@keys.command("list")
@data_dir_option
def keys_list(data_dir: Path | None) -> None:
    """Print one line per key: environment, kind, key (revoked keys are marked)."""

    async def show(runtime: Runtime) -> None:
        for key in await runtime.environments.list_keys():
            suffix = "\trevoked" if key.revoked else ""
            click.echo(f"{key.environment.name}\t{key.kind.value}\t{key.key}{suffix}")

    _with_runtime(_settings(data_dir=data_dir), show)


@keys.command("create")
@click.argument("environment")
@click.option("--kind", type=click.Choice([k.value for k in KeyKind]), default=KeyKind.SECRET.value)
@data_dir_option
def keys_create(environment: str, kind: str, data_dir: Path | None) -> None:
    """Create a key for ENVIRONMENT and print it."""

    async def create(runtime: Runtime) -> None:
        key = await runtime.environments.create_key(environment, KeyKind(kind))
        click.echo(f"{key.environment.name}\t{key.kind.value}\t{key.key}")

    _with_runtime(_settings(data_dir=data_dir), create)


@keys.command("revoke")
@click.argument("key")
@data_dir_option
def keys_revoke(key: str, data_dir: Path | None) -> None:
    """Revoke KEY; requests with it are refused within seconds."""

    async def revoke(runtime: Runtime) -> None:
        await runtime.environments.revoke_key(key)
        click.echo("revoked")

    _with_runtime(_settings(data_dir=data_dir), revoke)


@main.group()
def channels() -> None:
    """Inspect the channels file (CLARION_CHANNELS_FILE, default <data dir>/channels.yml)."""


@channels.command("list")
@data_dir_option
def channels_list(data_dir: Path | None) -> None:
    """Print one line per channel: id, key, type, provider."""
    path = _settings(data_dir=data_dir).resolved_channels_file
    if not path.is_file():
        raise click.ClickException(
            f"no channels file at {path}; `clarion serve --data-dir DIR` writes the default one at its "
            "first start, or set the CLARION_CHANNELS_FILE (or --data-dir) of an existing one"
        )
    try:
        registry = load_channels(path)
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
@data_dir_option
def workflows_push(folder: Path, environment_name: str | None, data_dir: Path | None) -> None:
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

    _with_runtime(_settings(data_dir=data_dir), push)


@workflows.command("list")
@environment_option
@data_dir_option
def workflows_list(environment_name: str | None, data_dir: Path | None) -> None:
    """Print one line per workflow: environment, key, current version, active or inactive."""

    async def show(runtime: Runtime) -> None:
        names = {environment.id: environment.name for environment in await runtime.environments.all()}
        for environment_id in await _environment_ids(runtime, environment_name):
            for record in await runtime.workflows.store.list(environment_id):
                state = "active" if record.active else "inactive"
                click.echo(
                    f"{names[environment_id]}\t{record.key}\tversion {record.current.version}\t{state}"
                )

    _with_runtime(_settings(data_dir=data_dir), show)


@workflows.command("activate")
@click.argument("key")
@environment_option
@data_dir_option
def workflows_activate(key: str, environment_name: str | None, data_dir: Path | None) -> None:
    """Let KEY be triggered again."""
    _set_active(key, environment_name, data_dir, active=True)


@workflows.command("deactivate")
@click.argument("key")
@environment_option
@data_dir_option
def workflows_deactivate(key: str, environment_name: str | None, data_dir: Path | None) -> None:
    """Refuse triggers of KEY (`workflow_inactive`); runs under way end at their next step."""
    _set_active(key, environment_name, data_dir, active=False)


def _set_active(key: str, environment_name: str | None, data_dir: Path | None, *, active: bool) -> None:
    async def switch(runtime: Runtime) -> None:
        names = {environment.id: environment.name for environment in await runtime.environments.all()}
        for environment_id in await _environment_ids(runtime, environment_name):
            changed = await runtime.workflows.store.set_active(environment_id, key, active)
            state = ("active" if active else "inactive") if changed else "no such workflow"
            click.echo(f"{names[environment_id]}\t{key}\t{state}")

    _with_runtime(_settings(data_dir=data_dir), switch)


@main.group()
def audiences() -> None:
    """Manage audiences (folders in the Knock CLI layout, CLARION_AUDIENCES_DIR, default ./audiences)."""


@audiences.command("push")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@environment_option
@data_dir_option
def audiences_push(folder: Path, environment_name: str | None, data_dir: Path | None) -> None:
    """Check every audience of FOLDER, then commit each changed one and compute the members of the dynamic
    ones."""

    async def push(runtime: Runtime) -> None:
        names = {environment.id: environment.name for environment in await runtime.environments.all()}
        try:
            results = await runtime.audience_catalog.push(
                await _environment_ids(runtime, environment_name), read_audiences(folder)
            )
        except AudienceFilesError as exc:
            raise click.ClickException(f"invalid audiences, nothing pushed:\n{exc}") from exc
        for environment_id, commits in results.items():
            for commit in commits:
                state = "changed" if commit.changed else "unchanged"
                click.echo(f"{names[environment_id]}\t{commit.key}\t{commit.type.value}\t{state}")

    _with_runtime(_settings(data_dir=data_dir), push)
