"""The `clarion` command's key and environment management, on both stores."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from clarion.cli import main
from clarion.config import settings_from_env
from clarion.runtime import build_runtime
from clarion.store.environments import Environment, KeyKind
from tests.compat.live_server import IN_APP_FEED_CHANNEL_ID, LiveServer, _parse_keys
from tests.conftest import fresh_postgres_database, write_audience, write_workflow


@pytest.fixture
def cli_env(store: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """The settings of a store made by `clarion migrate`, with workflows and audiences folders of the
    test's own."""
    environ = {
        "CLARION_DATA_DIR": str(tmp_path),
        "CLARION_WORKFLOWS_DIR": str(tmp_path / "workflows"),
        "CLARION_AUDIENCES_DIR": str(tmp_path / "audiences"),
    }
    if store == "postgres":
        environ["CLARION_DATABASE_URL"] = request.getfixturevalue("postgres_database_url")
    run(environ, "migrate")
    return environ


def run(cli_env: Mapping[str, str | None], *args: str) -> str:
    """The command's standard output; it must succeed."""
    result = CliRunner().invoke(main, list(args), env=cli_env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def key_lines(cli_env: dict[str, str]) -> list[list[str]]:
    return [line.split("\t") for line in run(cli_env, "keys", "list").splitlines()]


def test_environment_create_prints_its_keys_and_keys_list_shows_them(cli_env: dict[str, str]) -> None:
    name = f"staging-{Path(cli_env['CLARION_DATA_DIR']).name}"
    created = [line.split("\t") for line in run(cli_env, "environments", "create", name).splitlines()]
    assert sorted(kind for _, kind, _ in created) == ["publishable", "secret"]
    for environment, kind, key in created:
        assert environment == name
        assert key.startswith("sk_" if kind == "secret" else "pk_")
    listed = key_lines(cli_env)
    for line in created:
        assert line in listed


def test_duplicate_environment_is_refused(cli_env: dict[str, str]) -> None:
    name = f"dup-{Path(cli_env['CLARION_DATA_DIR']).name}"
    run(cli_env, "environments", "create", name)
    result = CliRunner().invoke(main, ["environments", "create", name], env=cli_env)
    assert result.exit_code != 0
    assert "already exists" in result.output


def test_keys_create_and_revoke(cli_env: dict[str, str]) -> None:
    name = f"keys-{Path(cli_env['CLARION_DATA_DIR']).name}"
    run(cli_env, "environments", "create", name)
    environment, kind, key = run(cli_env, "keys", "create", name, "--kind", "publishable").strip().split("\t")
    assert (environment, kind) == (name, "publishable")
    assert key.startswith("pk_")
    assert [name, "publishable", key] in key_lines(cli_env)
    assert run(cli_env, "keys", "revoke", key).strip() == "revoked"
    assert [name, "publishable", key, "revoked"] in key_lines(cli_env)
    again = CliRunner().invoke(main, ["keys", "revoke", key], env=cli_env)
    assert again.exit_code != 0
    assert "No active key" in again.output


def test_keys_create_for_unknown_environment_fails(cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["keys", "create", "nowhere"], env=cli_env)
    assert result.exit_code != 0
    assert "No environment named 'nowhere'" in result.output


def test_bad_rate_limit_setting_is_a_usage_error(cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["keys", "list"], env={**cli_env, "CLARION_RATE_LIMIT": "sometimes"})
    assert result.exit_code == 2
    assert "CLARION_RATE_LIMIT must be one of client, knock, off" in result.output


def test_environments_signing_key_and_enhanced_security(
    cli_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"tokens-{tmp_path.name}"
    run(cli_env, "environments", "create", name)
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    pem_file = tmp_path / "public.pem"
    pem_file.write_text(pem)
    assert (
        run(cli_env, "environments", "signing-key", name, str(pem_file)).strip() == f"{name}\tsigning key set"
    )
    assert run(cli_env, "environments", "enhanced-security", name, "on").strip() == (
        f"{name}\tenhanced security on"
    )

    for variable, value in cli_env.items():
        monkeypatch.setenv(variable, value)

    async def stored() -> Environment | None:
        runtime = await build_runtime(settings_from_env())
        try:
            return await runtime.environments.get_by_name(name)
        finally:
            await runtime.close()

    environment = asyncio.run(stored())
    assert environment is not None
    assert environment.signing_public_key == pem
    assert environment.enhanced_security is True
    run(cli_env, "environments", "enhanced-security", name, "off")
    environment = asyncio.run(stored())
    assert environment is not None and environment.enhanced_security is False

    not_a_key = tmp_path / "not-a-key.pem"
    not_a_key.write_text("hello")
    refused = CliRunner().invoke(main, ["environments", "signing-key", name, str(not_a_key)], env=cli_env)
    assert refused.exit_code != 0
    assert "not a PEM-encoded public key" in refused.output
    unknown = CliRunner().invoke(
        main, ["environments", "enhanced-security", "nope-" + name, "on"], env=cli_env
    )
    assert unknown.exit_code != 0
    assert "No environment named" in unknown.output


def test_workflows_push_list_and_switch_off_and_on(cli_env: dict[str, str], tmp_path: Path) -> None:
    name = f"flows-{tmp_path.name}"
    run(cli_env, "environments", "create", name)
    folder = tmp_path / "workflows"
    step = {"ref": "in_app_feed_1", "type": "channel", "channel_key": "in-app-feed"}
    write_workflow(folder, "hello", {"steps": [{**step, "template": {"markdown_body": "Hi"}}]})
    assert run(cli_env, "workflows", "push", str(folder), "--environment", name) == (
        f"{name}\thello\tversion 1\tnew version\n"
    )
    again = run(cli_env, "workflows", "push", str(folder), "--environment", name)
    assert again == f"{name}\thello\tversion 1\tunchanged\n"
    write_workflow(folder, "hello", {"steps": [{**step, "template": {"markdown_body": "Hello"}}]})
    assert "version 2\tnew version" in run(cli_env, "workflows", "push", str(folder), "--environment", name)
    assert run(cli_env, "workflows", "list", "--environment", name) == f"{name}\thello\tversion 2\tactive\n"
    assert (
        run(cli_env, "workflows", "deactivate", "hello", "--environment", name)
        == f"{name}\thello\tinactive\n"
    )
    assert "inactive" in run(cli_env, "workflows", "list", "--environment", name)
    assert run(cli_env, "workflows", "activate", "hello", "--environment", name) == f"{name}\thello\tactive\n"
    unknown = run(cli_env, "workflows", "deactivate", "nope", "--environment", name)
    assert unknown == f"{name}\tnope\tno such workflow\n"


def test_an_invalid_folder_is_refused_whole_and_names_the_problem(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    name = f"bad-flows-{tmp_path.name}"
    run(cli_env, "environments", "create", name)
    folder = tmp_path / "workflows"
    write_workflow(folder, "good", {"steps": []})
    write_workflow(folder, "broken", {"steps": [{"ref": "x", "type": "batch", "settings": {}}]})
    result = CliRunner().invoke(main, ["workflows", "push", str(folder), "--environment", name], env=cli_env)
    assert result.exit_code != 0
    assert (
        "broken/workflow.json at steps.0.settings: needs `batch_window` or `batch_until_field_path`"
        in result.output
    )
    assert run(cli_env, "workflows", "list", "--environment", name) == ""


STORE_COMMANDS = [
    ["keys", "list"],
    ["keys", "create", "development"],
    ["keys", "revoke", "sk_none"],
    ["environments", "create", "production"],
    ["environments", "enhanced-security", "production", "on"],
    ["workflows", "list"],
    ["workflows", "activate", "hello"],
    ["workflows", "deactivate", "hello"],
]


def without_clarion_settings(**settings: str) -> dict[str, str | None]:
    """A command's environment: none of the CLARION_* variables this process may have, then `settings`."""
    return {**{name: None for name in os.environ if name.startswith("CLARION_")}, **settings}


@pytest.mark.parametrize("command", STORE_COMMANDS, ids=" ".join)
def test_a_store_command_refuses_where_there_is_no_store_and_creates_none(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, command, env=without_clarion_settings())
    assert result.exit_code == 1
    expected = f"no Clarion store at {tmp_path / '.clarion' / 'clarion.db'}; start `clarion serve --data-dir"
    assert expected in result.output
    elsewhere = tmp_path / "elsewhere"
    flagged = CliRunner().invoke(
        main, [*command, "--data-dir", str(elsewhere)], env=without_clarion_settings()
    )
    assert flagged.exit_code == 1
    assert f"no Clarion store at {elsewhere / 'clarion.db'}" in flagged.output
    assert list(tmp_path.iterdir()) == []


def test_commands_with_files_refuse_where_there_is_no_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "workflows"
    write_workflow(folder, "hello", {"steps": []})
    (tmp_path / "public.pem").write_text("not read")
    for command in (
        ["workflows", "push", str(folder)],
        ["environments", "signing-key", "production", str(tmp_path / "public.pem")],
    ):
        result = CliRunner().invoke(main, command, env=without_clarion_settings())
        assert result.exit_code == 1
        assert "no Clarion store at" in result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["public.pem", "workflows"]


def test_channels_list_refuses_where_there_is_no_channels_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["channels", "list"], env=without_clarion_settings())
    assert result.exit_code == 1
    assert f"no channels file at {Path('.clarion') / 'channels.yml'}; `clarion serve" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_command_refuses_an_empty_postgres_database_and_leaves_it_empty(tmp_path: Path) -> None:
    with fresh_postgres_database("a command on an empty database") as url:
        environ = without_clarion_settings(CLARION_DATABASE_URL=url, CLARION_DATA_DIR=str(tmp_path))
        result = CliRunner().invoke(main, ["keys", "list"], env=environ)
        assert result.exit_code == 1
        assert "no Clarion store in PostgreSQL (" in result.output
        assert "start `clarion serve` (or run `clarion migrate`)" in result.output

        async def tables() -> int:
            connection = await asyncpg.connect(url)
            try:
                found: int = await connection.fetchval(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
                )
                return found
            finally:
                await connection.close()

        assert asyncio.run(tables()) == 0
    assert list(tmp_path.iterdir()) == []


def test_the_data_dir_flag_picks_the_store_of_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data_dir = str(tmp_path / "data")
    environ = without_clarion_settings(CLARION_WORKFLOWS_DIR=str(tmp_path / "workflows"))
    assert run(environ, "migrate", "--data-dir", data_dir) == "migrations applied\n"
    assert run(environ, "keys", "list", "--data-dir", data_dir) == ""
    created = run(environ, "environments", "create", "production", "--data-dir", data_dir)
    assert run(environ, "keys", "list", "--data-dir", data_dir) == created
    assert len(run(environ, "channels", "list", "--data-dir", data_dir).splitlines()) > 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]


def test_an_environment_created_while_serving_runs_the_workflows_folder(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    database_url = request.getfixturevalue("postgres_database_url") if store == "postgres" else ""
    server = LiveServer(data_dir=tmp_path, database_url=database_url)
    step = {"ref": "in_app_feed_1", "type": "channel", "channel_key": "in-app"}
    welcome = {"steps": [{**step, "template": {"markdown_body": "Welcome, {{ recipient.name }}"}}]}
    write_workflow(server.workflows_dir, "welcome", welcome)
    server.start()
    try:
        name = f"late-{uuid.uuid4().hex[:8]}"
        output = server.cli("environments", "create", name)
        assert f"workflows from {server.workflows_dir}: welcome" in output
        secret_key = _parse_keys(output)[name]["secret"]
        headers = {"Authorization": f"Bearer {secret_key}"}
        triggered = httpx.post(
            f"{server.url}/v1/workflows/welcome/trigger",
            headers=headers,
            json={"recipients": [{"id": "ada", "name": "Ada"}]},
        )
        assert triggered.status_code == 200, triggered.text
        assert triggered.json()["workflow_run_id"]
        feed_url = f"{server.url}/v1/users/ada/feeds/{IN_APP_FEED_CHANNEL_ID}"
        deadline = time.monotonic() + 30
        entries: list[dict[str, Any]] = []
        while not entries and time.monotonic() < deadline:
            entries = httpx.get(feed_url, headers=headers).json()["entries"]
            time.sleep(0.05)
        [entry] = entries
        assert entry["blocks"][0]["content"] == "Welcome, Ada"
    finally:
        server.stop()


def test_a_command_names_the_postgres_database_it_cannot_open(postgres_database_url: str) -> None:
    missing = postgres_database_url.rsplit("/", 1)[0] + f"/clarion_missing_{uuid.uuid4().hex[:8]}"
    result = CliRunner().invoke(
        main, ["keys", "list"], env=without_clarion_settings(CLARION_DATABASE_URL=missing)
    )
    assert result.exit_code == 1
    assert "cannot open the Clarion store in PostgreSQL (" in result.output
    assert "does not exist" in result.output


def test_environment_create_with_an_invalid_workflows_folder_creates_nothing(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    name = f"refused-{tmp_path.name}"
    write_workflow(
        tmp_path / "workflows", "broken", {"steps": [{"ref": "x", "type": "batch", "settings": {}}]}
    )
    result = CliRunner().invoke(main, ["environments", "create", name], env=cli_env)
    assert result.exit_code == 1
    assert f"invalid workflows in {tmp_path / 'workflows'}, nothing created" in result.output
    assert "steps.0.settings: needs `batch_window` or `batch_until_field_path`" in result.output
    assert name not in run(cli_env, "keys", "list")


def test_environment_create_without_a_workflows_folder_says_so(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    result = CliRunner().invoke(main, ["environments", "create", f"bare-{tmp_path.name}"], env=cli_env)
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == len(KeyKind)
    assert f"no workflows folder at {tmp_path / 'workflows'}" in result.stderr


PREMIUM = {
    "name": "Premium",
    "type": "dynamic",
    "segments": [
        {"conditions": [{"property": "recipient.plan", "operator": "equal_to", "argument": "premium"}]}
    ],
}


def test_audiences_push_commits_changed_audiences(cli_env: dict[str, str], tmp_path: Path) -> None:
    name = f"audiences-{tmp_path.name}"
    run(cli_env, "environments", "create", name)
    folder = tmp_path / "to-push"
    write_audience(folder, "beta", {"name": "Beta", "type": "static"})
    write_audience(folder, "premium", PREMIUM)
    pushed = run(cli_env, "audiences", "push", str(folder), "--environment", name)
    assert pushed == f"{name}\tbeta\tstatic\tchanged\n{name}\tpremium\tdynamic\tchanged\n"
    again = run(cli_env, "audiences", "push", str(folder), "--environment", name)
    assert again == f"{name}\tbeta\tstatic\tunchanged\n{name}\tpremium\tdynamic\tunchanged\n"
    # Without --environment, every environment.
    other = f"more-audiences-{tmp_path.name}"
    run(cli_env, "environments", "create", other)
    everywhere = run(cli_env, "audiences", "push", str(folder)).splitlines()
    assert f"{name}\tbeta\tstatic\tunchanged" in everywhere
    assert f"{other}\tpremium\tdynamic\tchanged" in everywhere


def test_an_invalid_audiences_folder_is_refused_whole_and_names_the_problem(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    name = f"bad-audiences-{tmp_path.name}"
    run(cli_env, "environments", "create", name)
    folder = tmp_path / "to-push"
    write_audience(folder, "good", {"name": "Good", "type": "static"})
    broken = {**PREMIUM, "segments": [{"conditions": [{"property": "recipient.plan", "operator": "near"}]}]}
    write_audience(folder, "broken", broken)
    result = CliRunner().invoke(main, ["audiences", "push", str(folder), "--environment", name], env=cli_env)
    assert result.exit_code == 1
    assert "invalid audiences, nothing pushed" in result.output
    assert "broken/audience.json at segments.0.conditions.0.operator: must be one of" in result.output
    # Nothing of the folder was pushed: the good audience is new when pushed alone.
    alone = run(cli_env, "audiences", "push", str(folder / "good"), "--environment", name)
    assert alone == f"{name}\tgood\tstatic\tchanged\n"
    # A push that would change an audience's type is refused the same way.
    write_audience(folder, "good", PREMIUM)
    result = CliRunner().invoke(
        main, ["audiences", "push", str(folder / "good"), "--environment", name], env=cli_env
    )
    assert result.exit_code == 1
    assert (
        "good/audience.json at type: the audience exists as a static one; its type cannot change"
        in result.output
    )


def test_environment_create_commits_the_audiences_folder(cli_env: dict[str, str], tmp_path: Path) -> None:
    write_audience(tmp_path / "audiences", "premium", PREMIUM)
    name = f"with-audiences-{tmp_path.name}"
    result = CliRunner().invoke(main, ["environments", "create", name], env=cli_env)
    assert result.exit_code == 0, result.output
    assert f"audiences from {tmp_path / 'audiences'}: premium" in result.stderr
    assert run(cli_env, "audiences", "push", str(tmp_path / "audiences"), "--environment", name) == (
        f"{name}\tpremium\tdynamic\tunchanged\n"
    )


def test_environment_create_with_an_invalid_audiences_folder_creates_nothing(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    write_audience(tmp_path / "audiences", "broken", {"type": "dynamic", "name": "Broken"})
    name = f"refused-audiences-{tmp_path.name}"
    result = CliRunner().invoke(main, ["environments", "create", name], env=cli_env)
    assert result.exit_code == 1
    assert f"invalid audiences in {tmp_path / 'audiences'}, nothing created" in result.output
    assert "broken/audience.json at segments: must be a list of at least one segment" in result.output
    assert name not in run(cli_env, "keys", "list")


def test_audiences_push_refuses_where_there_is_no_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_audience(tmp_path / "audiences", "beta", {"name": "Beta", "type": "static"})
    result = CliRunner().invoke(main, ["audiences", "push", "audiences"], env=without_clarion_settings())
    assert result.exit_code == 1
    assert "no Clarion store at" in result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["audiences"]


def test_serve_commits_the_audiences_folder_at_start(
    store: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    database_url = request.getfixturevalue("postgres_database_url") if store == "postgres" else ""
    server = LiveServer(data_dir=tmp_path, database_url=database_url)
    write_audience(server.audiences_dir, "premium", PREMIUM)
    server.start()
    try:
        assert f"audiences from {server.audiences_dir}: premium" in server.log()
        secret_key = server.keys()["development"]["secret"]
        headers = {"Authorization": f"Bearer {secret_key}"}
        user = f"ada-{uuid.uuid4().hex[:8]}"
        identified = httpx.put(f"{server.url}/v1/users/{user}", headers=headers, json={"plan": "premium"})
        assert identified.status_code == 200, identified.text
        listed = httpx.get(f"{server.url}/v1/audiences/premium/members", headers=headers)
        assert listed.status_code == 200, listed.text
        assert user in [entry["user_id"] for entry in listed.json()["entries"]]
    finally:
        server.stop()
