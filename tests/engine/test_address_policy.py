"""Which addresses outbound requests may reach: public ones by default, IPv6 forms of IPv4 addresses
judged by the IPv4 address, and the operator's allow and deny lists, parsed and checked at start."""

from __future__ import annotations

import ipaddress

import pytest

from clarion.engine.address_policy import AddressPolicy, HostList, is_public

REFUSED = [
    "127.0.0.1",
    "127.1.2.3",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.0.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "255.255.255.255",
    "224.0.0.1",
    "239.255.255.250",
    "192.0.2.1",
    "198.18.0.1",
    "240.0.0.1",
    "::",
    "::1",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "ff0e::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "2002:7f00:1::",
    "2001::1",
]
PUBLIC = [
    "8.8.8.8",
    "93.184.215.14",
    "2606:4700:4700::1111",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::",
]


@pytest.mark.parametrize("address", REFUSED)
def test_addresses_that_are_not_public_unicast_are_refused_by_default(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))
    refusal = AddressPolicy().address_refusal("example.com", ipaddress.ip_address(address))
    assert refusal == (
        f"{ipaddress.ip_address(address)} is not a public address (CLARION_FETCH_ALLOW_HOSTS can permit it)"
    )


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_permitted(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))
    assert AddressPolicy().address_refusal("example.com", ipaddress.ip_address(address)) is None


def test_entries_are_host_names_addresses_and_networks() -> None:
    hosts = HostList.parse(" 127.0.0.1, 10.0.0.0/8 ,[::1], Billing.Internal., bücher.example,, ", "SETTING")
    assert hosts.names == {"billing.internal", "xn--bcher-kva.example"}
    assert hosts.networks == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert not HostList.parse("", "SETTING")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "10.0.0.1/8",
            "SETTING: '10.0.0.1/8' is not a valid address or network (10.0.0.1/8 has host bits set)",
        ),
        ("300.1.1.1", "SETTING: '300.1.1.1' is not a valid address or network"),
        ("https://example.com", "SETTING: 'https://example.com' is not a valid address or network"),
        ("two words", "SETTING entries must be host names, IP addresses or CIDR networks, not 'two words'"),
        (
            "-bad.example",
            "SETTING entries must be host names, IP addresses or CIDR networks, not '-bad.example'",
        ),
    ],
)
def test_an_entry_that_is_neither_is_refused_naming_the_setting(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        HostList.parse(text, "SETTING")
    assert str(caught.value).startswith(message)


def test_the_allow_list_permits_by_name_or_network_and_the_deny_list_wins() -> None:
    policy = AddressPolicy(
        allow=HostList.parse("10.0.0.0/8, billing.internal", "ALLOW"),
        deny=HostList.parse("10.0.0.13, metadata.internal", "DENY"),
    )
    private = ipaddress.ip_address("10.1.1.1")
    other_private = ipaddress.ip_address("192.168.1.1")
    assert policy.address_refusal("anything.example", private) is None
    assert policy.address_refusal("[::ffff:10.1.1.1]", ipaddress.ip_address("::ffff:10.1.1.1")) is None
    assert policy.address_refusal("BILLING.internal.", other_private) is None
    assert policy.address_refusal("other.internal", other_private) is not None
    denied = ipaddress.ip_address("10.0.0.13")
    assert (
        policy.address_refusal("billing.internal", denied)
        == "10.0.0.13 is listed in CLARION_FETCH_DENY_HOSTS"
    )
    assert policy.address_refusal("x", ipaddress.ip_address("::ffff:10.0.0.13")) is not None
    assert (
        policy.host_refusal("Metadata.Internal") == "metadata.internal is listed in CLARION_FETCH_DENY_HOSTS"
    )
    assert policy.host_refusal("billing.internal") is None
