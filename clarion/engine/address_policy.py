"""Which network addresses an outbound request (a fetch step's) may connect to: the guard against
server-side request forgery, as a policy over resolved addresses.

By default only public addresses are permitted. Refused are loopback, private (RFC 1918, unique local),
link-local (where cloud metadata services answer, 169.254.169.254), shared (carrier-grade NAT),
unspecified, multicast, broadcast, reserved and documentation addresses, in IPv4 and IPv6; an IPv6
address that carries an IPv4 one (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`)
is judged by the IPv4 address too, since the packet may end up there. Two lists adjust the default:

- `allow` (`CLARION_FETCH_ALLOW_HOSTS`) permits hosts or networks that are not public: `127.0.0.1` for
  tests, `10.0.0.0/8` or `billing.internal` for services inside the operator's network;
- `deny` (`CLARION_FETCH_DENY_HOSTS`) refuses hosts or networks always, public or allowed; it wins over
  `allow`, so a network can be opened less one address.

A host name entry matches the URL's host name (exactly, case aside: `example.com` does not cover
`api.example.com`), an address or CIDR entry the addresses the host resolves to, or the host itself when
the URL names an address. The policy only judges; resolving the name once and connecting to an address
it permitted is `clarion.engine.outbound_http`'s part.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NAT64_PREFIX: Final = ipaddress.IPv6Network("64:ff9b::/96")
"""The well-known NAT64 prefix: a gateway on the path turns its last 32 bits into an IPv4 destination."""

_HOST_NAME = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*$")


def normalise_host(host: str) -> str:
    """A host as entries and URLs are compared: lower case, without brackets or a trailing dot, and an
    international name in its ASCII (punycode) form, which is how a URL carries it."""
    host = host.strip().removeprefix("[").removesuffix("]").rstrip(".").lower()
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for or carries, if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return address.sixtofour


def is_public(address: IPAddress) -> bool:
    """Whether `address` is a globally routable unicast address, and so is any IPv4 address it carries."""
    embedded = embedded_ipv4(address)
    if embedded is not None and not is_public(embedded):
        return False
    if isinstance(address, ipaddress.IPv6Address) and (
        address.ipv4_mapped is not None or address in NAT64_PREFIX
    ):
        # These are IPv4 addresses in IPv6 form (and count as reserved as such): judged by the IPv4 one.
        return True
    return address.is_global and not address.is_multicast and not address.is_reserved


@dataclass(frozen=True)
class HostList:
    """Host names and networks, as an operator lists them: `127.0.0.1, 10.0.0.0/8, ::1, billing.internal`."""

    names: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str, setting: str) -> HostList:
        """The comma-separated entries of `text`; raises `ValueError` naming `setting` for an entry that is
        neither a host name, an address nor a network (or a network with host bits set, a likely typo)."""
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            host = normalise_host(entry)
            try:
                networks.append(ipaddress.ip_network(host))
                continue
            except ValueError as exc:
                # A name never has a slash or colon, nor a numeric last label: this was meant as an address.
                if "/" in host or ":" in host or host.rsplit(".", 1)[-1].isdigit():
                    raise ValueError(
                        f"{setting}: {entry!r} is not a valid address or network ({exc})"
                    ) from None
            if not _HOST_NAME.match(host):
                raise ValueError(
                    f"{setting} entries must be host names, IP addresses or CIDR networks, not {entry!r}"
                )
            names.add(host)
        return cls(frozenset(names), tuple(networks))

    def names_host(self, host: str) -> bool:
        return normalise_host(host) in self.names

    def holds(self, address: IPAddress) -> bool:
        """Whether `address`, or the IPv4 address it carries, lies in one of the networks."""
        embedded = embedded_ipv4(address)
        return any(
            address in network or (embedded is not None and embedded in network) for network in self.networks
        )

    def __bool__(self) -> bool:
        return bool(self.names or self.networks)


@dataclass(frozen=True)
class AddressPolicy:
    allow: HostList = HostList()
    deny: HostList = HostList()

    def host_refusal(self, host: str) -> str | None:
        """Why `host` is refused by name, before it is resolved; None if it is not."""
        if self.deny.names_host(host):
            return f"{normalise_host(host)} is listed in CLARION_FETCH_DENY_HOSTS"
        return None

    def address_refusal(self, host: str, address: IPAddress) -> str | None:
        """Why connecting to `address`, which `host` resolved to (or is), is refused; None if permitted."""
        if self.deny.holds(address):
            return f"{address} is listed in CLARION_FETCH_DENY_HOSTS"
        if self.allow.names_host(host) or self.allow.holds(address) or is_public(address):
            return None
        return f"{address} is not a public address (CLARION_FETCH_ALLOW_HOSTS can permit it)"
