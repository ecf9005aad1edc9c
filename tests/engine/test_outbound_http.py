"""The fetch step's outbound HTTP against real loopback servers: what each answer becomes, the bounds on
time and size, the record a run keeps, and the address guard, which refuses loopback, private,
link-local and IPv4-mapped targets by default, names that resolve to them too, and connects to the
address it checked."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import ipaddress
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from clarion.config import settings_from_env
from clarion.engine.address_policy import AddressPolicy, HostList, IPAddress
from clarion.engine.fetch_settings import parse_fetch_settings
from clarion.engine.outbound_http import (
    REDACTED,
    FetchFailed,
    FetchRetryable,
    FetchSucceeded,
    OutboundHTTP,
    OutboundRequest,
    ResolutionError,
)
from clarion.engine.templates import TemplateRenderer
from tests.http_peer import HTTPPeer, Reply

LOOPBACK_ALLOWED = AddressPolicy(allow=HostList.parse("127.0.0.1, ::1", "CLARION_FETCH_ALLOW_HOSTS"))


@pytest.fixture
async def peer() -> AsyncIterator[HTTPPeer]:
    server = await HTTPPeer().start()
    yield server
    await server.close()


@pytest.fixture
async def client() -> AsyncIterator[OutboundHTTP]:
    http = OutboundHTTP(timeout=5, policy=LOOPBACK_ALLOWED)
    yield http
    await http.aclose()


def get(url: str, *headers: tuple[str, str]) -> OutboundRequest:
    return OutboundRequest(method="GET", url=httpx.URL(url), headers=headers)


async def test_a_json_object_answer_succeeds_with_its_data(peer: HTTPPeer, client: OutboundHTTP) -> None:
    peer.reply(Reply(status=201, body=b'{"plan": "pro", "seats": {"used": 3}}'))
    result = await client.send(get(peer.url("/account?id=1")))
    assert isinstance(result, FetchSucceeded)
    assert result.data == {"plan": "pro", "seats": {"used": 3}}
    assert result.response is not None and result.response.status == 201
    assert peer.received[0].method == "GET" and peer.received[0].target == "/account?id=1"
    assert result.record()["response"]["body"] == '{"plan": "pro", "seats": {"used": 3}}'


async def test_a_rendered_request_reaches_the_server_as_rendered(
    peer: HTTPPeer, client: OutboundHTTP
) -> None:
    renderer = TemplateRenderer()
    settings = parse_fetch_settings(
        {
            "method": "post",
            "url": peer.url("/users/{{ recipient.id }}?source=knock"),
            "headers": [{"key": "Authorization", "value": "Bearer {{ vars.token }}"}],
            "query_params": [{"key": "plan", "value": "{{ data.plan }}"}],
            "body": '{"name": "{{ recipient.name }}", "count": {{ data.count }}}',
            "signing_key": "whsec_test",
        },
        "steps.0.settings",
        renderer,
    )
    scope = {
        "recipient": {"id": "u 1", "name": "Ada"},
        "vars": {"token": "s3cret"},
        "data": {"plan": "pro", "count": 2},
    }
    result = await client.send(settings.render(renderer, scope, name="fetch_1"))
    assert isinstance(result, FetchSucceeded)
    received = peer.received[0]
    assert received.method == "POST"
    assert received.target == "/users/u%201?source=knock&plan=pro"
    assert received.headers["host"] == f"127.0.0.1:{peer.port}"
    assert received.headers["authorization"] == "Bearer s3cret"
    assert received.headers["content-type"] == "application/json"
    assert received.body == b'{"name": "Ada", "count": 2}'
    # The signature verifies as Knock documents: HMAC-SHA256 of "<t>.<body>", base64.
    timestamp, signature = (
        part.split("=", 1)[1] for part in received.headers["x-knock-signature"].split(",")
    )
    expected = hmac.new(b"whsec_test", f"{timestamp}.".encode() + received.body, hashlib.sha256).digest()
    assert base64.b64decode(signature) == expected
    assert abs(int(timestamp) - time.time() * 1000) < 60_000
    # The record shows the request as sent, the secret header redacted.
    request = result.record()["request"]
    assert request["method"] == "POST"
    assert request["url"] == peer.url("/users/u%201?source=knock&plan=pro")
    assert request["headers"]["Authorization"] == REDACTED
    assert request["body"] == '{"name": "Ada", "count": 2}'


async def test_no_body_succeeds_without_data(peer: HTTPPeer, client: OutboundHTTP) -> None:
    peer.reply(Reply(status=204, headers=()), Reply(status=200, body=b"  "))
    for _ in range(2):
        result = await client.send(get(peer.url()))
        assert isinstance(result, FetchSucceeded) and result.data is None


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"<html>ok</html>", "the response is not JSON"),
        (b"[1, 2]", "the response is JSON but not an object (list)"),
        (b"null", "the response is JSON but not an object (null)"),
    ],
)
async def test_a_success_whose_body_is_not_a_json_object_fails(
    peer: HTTPPeer, client: OutboundHTTP, body: bytes, error: str
) -> None:
    peer.reply(Reply(body=body, headers=(("content-type", "text/html"),)))
    result = await client.send(get(peer.url()))
    assert isinstance(result, FetchFailed)
    assert result.error.startswith(error)
    assert result.response is not None and result.response.body == body.decode()


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_server_error_is_retryable(peer: HTTPPeer, client: OutboundHTTP, status: int) -> None:
    peer.reply(Reply(status=status, body=b'{"error": "down"}'))
    result = await client.send(get(peer.url()))
    assert isinstance(result, FetchRetryable)
    assert result.error == f"the server answered {status}"
    assert result.retry_after is None
    assert result.response is not None and result.response.body == '{"error": "down"}'
    assert result.record()["error"] == f"the server answered {status}"


async def test_retry_after_is_honoured_in_seconds_and_as_a_date(peer: HTTPPeer, client: OutboundHTTP) -> None:
    server_now = datetime.datetime(2030, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
    later = server_now + datetime.timedelta(seconds=90)
    http_date = "%a, %d %b %Y %H:%M:%S GMT"
    peer.reply(
        Reply(status=429, headers=(("retry-after", "7"),)),
        Reply(
            status=503,
            headers=(("date", server_now.strftime(http_date)), ("retry-after", later.strftime(http_date))),
        ),
    )
    first = await client.send(get(peer.url()))
    assert isinstance(first, FetchRetryable) and first.retry_after == 7.0
    assert first.record()["retry_after"] == 7.0
    # The date is read against the server's own clock (its `date`), not this host's.
    second = await client.send(get(peer.url()))
    assert isinstance(second, FetchRetryable) and second.retry_after == 90.0


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422, 202])
async def test_other_statuses_fail_for_good(peer: HTTPPeer, client: OutboundHTTP, status: int) -> None:
    peer.reply(Reply(status=status, body=b'{"message": "no such account"}'))
    result = await client.send(get(peer.url()))
    assert isinstance(result, FetchFailed)
    assert result.error == f"the server answered {status}; a fetch step expects 200, 201 or 204"
    assert result.record()["response"] == {
        "status": status,
        "headers": {"content-type": "application/json", "content-length": "30"},
        "body": '{"message": "no such account"}',
    }


async def test_a_redirect_is_not_followed(peer: HTTPPeer, client: OutboundHTTP) -> None:
    peer.reply(Reply(status=302, headers=(("location", "http://169.254.169.254/latest/meta-data"),)))
    result = await client.send(get(peer.url("/moved"), ("X-API-Key", "k")))
    assert isinstance(result, FetchFailed)
    assert result.error == (
        "the server answered 302, a redirect (to http://169.254.169.254/latest/meta-data),"
        " which is not followed"
    )
    assert len(peer.received) == 1


async def test_a_slow_server_times_out_as_retryable(peer: HTTPPeer) -> None:
    http = OutboundHTTP(timeout=0.2, policy=LOOPBACK_ALLOWED)
    try:
        peer.reply(Reply(delay=2.0, body=b"{}"))
        started = time.monotonic()
        result = await http.send(get(peer.url()))
    finally:
        await http.aclose()
    assert time.monotonic() - started < 1.5
    assert isinstance(result, FetchRetryable)
    assert result.error == "no complete response within 0.2 seconds"
    assert result.response is None


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_past_the_limit_is_refused(peer: HTTPPeer, chunked: bool) -> None:
    http = OutboundHTTP(timeout=5, policy=LOOPBACK_ALLOWED, max_response_bytes=4096)
    try:
        peer.reply(Reply(body=b'{"x": "' + b"a" * 10_000 + b'"}', chunked=chunked), Reply(body=b'{"ok": 1}'))
        result = await http.send(get(peer.url()))
        assert isinstance(result, FetchFailed)
        assert result.error == "the response is longer than 4096 bytes"
        assert result.response is not None and result.response.status == 200
        assert len(result.response.body) <= 2048
        # The client is still usable afterwards.
        after = await http.send(get(peer.url()))
        assert isinstance(after, FetchSucceeded) and after.data == {"ok": 1}
    finally:
        await http.aclose()


async def test_a_refused_connection_is_retryable(client: OutboundHTTP) -> None:
    closed = await HTTPPeer().start()
    await closed.close()
    result = await client.send(get(closed.url()))
    assert isinstance(result, FetchRetryable)
    assert result.error.startswith("the request failed")


async def test_connections_are_reused(peer: HTTPPeer, client: OutboundHTTP) -> None:
    for _ in range(3):
        assert isinstance(await client.send(get(peer.url())), FetchSucceeded)
    assert [request.connection for request in peer.received] == [0, 0, 0]


async def test_secret_looking_headers_and_query_parameters_are_redacted_in_the_record(
    peer: HTTPPeer, client: OutboundHTTP
) -> None:
    peer.reply(Reply(headers=(("content-type", "application/json"), ("set-cookie", "session=abc"))))
    request = get(
        peer.url("/?api_key=k1&page=2&access_token=t1"),
        ("Authorization", "Bearer t"),
        ("X-API-Key", "k2"),
        ("X-Request-Id", "r1"),
    )
    record = (await client.send(request)).record()
    assert peer.received[0].headers["x-api-key"] == "k2"
    assert record["request"]["headers"] == {
        "Authorization": REDACTED,
        "X-API-Key": REDACTED,
        "X-Request-Id": "r1",
    }
    assert record["request"]["url"] == peer.url("/?api_key=%5BREDACTED%5D&page=2&access_token=%5BREDACTED%5D")
    assert record["response"]["headers"]["set-cookie"] == REDACTED
    with_password = await client.send(get(peer.url("/").replace("http://", "http://ada:pw@")))
    assert with_password.request.url == peer.url("/").replace("http://", "http://ada:%5BREDACTED%5D@")


async def test_only_http_and_https_are_sent() -> None:
    http = OutboundHTTP(timeout=5)
    try:
        result = await http.send(get("ftp://files.example.com/data.json"))
    finally:
        await http.aclose()
    assert isinstance(result, FetchFailed)
    assert result.error == "ftp://files.example.com/data.json is not an http or https URL"


# The address guard.


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/",
        "http://[::1]:{port}/",
        "http://[::ffff:127.0.0.1]:{port}/",
        "http://10.0.0.1:{port}/",
        "http://192.168.1.10/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "http://0.0.0.0:{port}/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://[64:ff9b::a9fe:a9fe]/",
    ],
)
async def test_targets_that_are_not_public_are_refused_by_default(peer: HTTPPeer, url: str) -> None:
    http = OutboundHTTP(timeout=2)
    try:
        result = await http.send(get(url.format(port=peer.port)))
    finally:
        await http.aclose()
    assert isinstance(result, FetchFailed)
    assert result.error.startswith("the target is refused: ")
    assert "is not a public address (CLARION_FETCH_ALLOW_HOSTS can permit it)" in result.error
    assert peer.received == [] and peer.connections == 0


async def test_a_name_that_resolves_to_loopback_is_refused(peer: HTTPPeer) -> None:
    http = OutboundHTTP(timeout=2)
    try:
        result = await http.send(get(peer.url(host="localhost")))
    finally:
        await http.aclose()
    assert isinstance(result, FetchFailed)
    assert result.error.startswith("the target is refused: localhost resolves to: 127.0.0.1 is not a public")
    assert peer.connections == 0


def resolving(answers: dict[str, Sequence[str]], calls: list[str] | None = None):
    """A resolver for names no DNS here knows: tests replace the system resolver with this seam of
    `OutboundHTTP` because no name on this machine resolves to a private or link-local address."""

    async def resolve(host: str, port: int) -> list[IPAddress]:
        if calls is not None:
            calls.append(host)
        if host not in answers:
            raise ResolutionError(f"{host} could not be resolved")
        return [ipaddress.ip_address(answer) for answer in answers[host]]

    return resolve


@pytest.mark.parametrize(
    "address", ["10.1.2.3", "172.16.0.5", "169.254.169.254", "fd12::5", "::ffff:192.168.0.1"]
)
async def test_a_name_that_resolves_to_a_private_address_is_refused(address: str) -> None:
    http = OutboundHTTP(timeout=2, resolver=resolving({"billing.example.com": [address]}))
    try:
        result = await http.send(get("https://billing.example.com/accounts"))
    finally:
        await http.aclose()
    assert isinstance(result, FetchFailed)
    assert result.error == (
        f"the target is refused: billing.example.com resolves to: {ipaddress.ip_address(address)} is not a"
        " public address (CLARION_FETCH_ALLOW_HOSTS can permit it)"
    )


@pytest.mark.parametrize(
    ("allow", "listening", "host"),
    [
        ("127.0.0.1", "127.0.0.1", "127.0.0.1"),
        ("127.0.0.0/8", "127.0.0.1", "127.0.0.1"),
        ("::1", "::1", "[::1]"),
        ("127.0.0.1", "127.0.0.1", "[::ffff:127.0.0.1]"),
        ("localhost", "127.0.0.1", "localhost"),
    ],
)
async def test_the_allow_list_opens_addresses_and_names(allow: str, listening: str, host: str) -> None:
    peer = await HTTPPeer(host=listening).start()
    settings = settings_from_env({"CLARION_FETCH_ALLOW_HOSTS": allow})
    http = OutboundHTTP.from_settings(settings)
    try:
        result = await http.send(get(peer.url(host=host)))
    finally:
        await http.aclose()
        await peer.close()
    assert isinstance(result, FetchSucceeded), result.record()
    assert len(peer.received) == 1


async def test_an_allowed_name_resolving_to_a_private_address_is_reached_at_that_address(
    peer: HTTPPeer,
) -> None:
    # The replaced resolver answers a name no DNS here knows; the connection must go to its answer, once
    # resolved and checked, and carry the name in the Host header.
    calls: list[str] = []
    http = OutboundHTTP(
        timeout=2,
        policy=AddressPolicy(allow=HostList.parse("billing.internal", "CLARION_FETCH_ALLOW_HOSTS")),
        resolver=resolving({"billing.internal": ["127.0.0.1"]}, calls),
    )
    try:
        result = await http.send(get(peer.url("/x", host="billing.internal")))
    finally:
        await http.aclose()
    assert isinstance(result, FetchSucceeded)
    assert calls == ["billing.internal"]
    assert peer.received[0].headers["host"] == f"billing.internal:{peer.port}"


async def test_a_name_with_refused_and_permitted_answers_connects_only_to_a_permitted_one(
    peer: HTTPPeer,
) -> None:
    # The replaced resolver gives two answers; the refused one must never be tried.
    http = OutboundHTTP(
        timeout=2, policy=LOOPBACK_ALLOWED, resolver=resolving({"mixed.test": ["10.9.9.9", "127.0.0.1"]})
    )
    try:
        result = await http.send(get(peer.url(host="mixed.test")))
    finally:
        await http.aclose()
    assert isinstance(result, FetchSucceeded)


@pytest.mark.parametrize(
    ("deny", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:{port}/"),
        ("127.0.0.0/8", "http://[::ffff:127.0.0.1]:{port}/"),
        ("localhost", "http://localhost:{port}/"),
    ],
)
async def test_the_deny_list_wins_over_the_allow_list(peer: HTTPPeer, deny: str, url: str) -> None:
    settings = settings_from_env(
        {"CLARION_FETCH_ALLOW_HOSTS": "127.0.0.0/8, localhost", "CLARION_FETCH_DENY_HOSTS": deny}
    )
    http = OutboundHTTP.from_settings(settings)
    try:
        result = await http.send(get(url.format(port=peer.port)))
    finally:
        await http.aclose()
    assert isinstance(result, FetchFailed)
    assert "is listed in CLARION_FETCH_DENY_HOSTS" in result.error
    assert peer.connections == 0


async def test_the_deny_list_refuses_public_addresses_too() -> None:
    policy = AddressPolicy(deny=HostList.parse("93.184.0.0/16, tracker.example", "CLARION_FETCH_DENY_HOSTS"))
    http = OutboundHTTP(timeout=2, policy=policy, resolver=resolving({"cdn.example": ["93.184.215.14"]}))
    try:
        by_address = await http.send(get("http://cdn.example/"))
        by_name = await http.send(get("http://tracker.example/"))
    finally:
        await http.aclose()
    assert isinstance(by_address, FetchFailed)
    assert by_address.error == (
        "the target is refused: cdn.example resolves to: 93.184.215.14 is listed in CLARION_FETCH_DENY_HOSTS"
    )
    assert isinstance(by_name, FetchFailed)
    assert by_name.error == "the target is refused: tracker.example is listed in CLARION_FETCH_DENY_HOSTS"


async def test_a_name_that_does_not_resolve_is_retryable() -> None:
    http = OutboundHTTP(timeout=2, resolver=resolving({}))
    try:
        result = await http.send(get("http://nowhere.example/"))
    finally:
        await http.aclose()
    assert isinstance(result, FetchRetryable)
    assert result.error == "the request failed: nowhere.example could not be resolved"


# TLS: the connection goes to the checked address, while SNI and the certificate are the name's.


def certificate_authority(name: str, folder: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context holding a certificate for `name`, signed by a fresh authority, and a client
    context that trusts only that authority."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Clarion test authority")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    certificate_file, key_file = folder / "leaf.pem", folder / "leaf.key"
    certificate_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certificate_file, key_file)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server, client


async def test_tls_names_and_verifies_the_host_while_connecting_to_the_checked_address(
    tmp_path: Path,
) -> None:
    server_context, client_context = certificate_authority("api.fetch.test", tmp_path)
    peer = await HTTPPeer(ssl_context=server_context).start()
    # The replaced resolver answers names no DNS here knows, both with the loopback address it serves on.
    http = OutboundHTTP(
        timeout=5,
        policy=LOOPBACK_ALLOWED,
        resolver=resolving({"api.fetch.test": ["127.0.0.1"], "other.fetch.test": ["127.0.0.1"]}),
        ssl_context=client_context,
    )
    try:
        named = await http.send(get(peer.url("/v1", host="api.fetch.test")))
        mismatched = await http.send(get(peer.url("/v1", host="other.fetch.test")))
    finally:
        await http.aclose()
        await peer.close()
    assert isinstance(named, FetchSucceeded)
    assert peer.server_names[0] == "api.fetch.test"
    assert peer.received[0].headers["host"] == f"api.fetch.test:{peer.port}"
    # The same address under a name the certificate does not hold fails its verification.
    assert isinstance(mismatched, FetchRetryable)
    assert "certificate" in mismatched.error.lower()
    assert len(peer.received) == 1
