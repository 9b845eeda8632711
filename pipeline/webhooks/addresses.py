"""The SSRF guard: which addresses a callback URL may reach.

A webhook is a request the server makes to a URL a client chose, so without a guard a
client could make the server call its own metadata service, a database on the private
network or a port on localhost. The host is resolved, every address it resolves to is
checked, and the request is then made to the checked address itself (never resolved a
second time: a name that answers a public address to the check and a private one to the
connection, DNS rebinding, gets nowhere). Redirects are checked hop by hop the same way.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from pipeline.config import Settings
from pipeline.errors import InputError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata services: named apart from "link-local" and "private" so the refusal
# says what was at stake. AWS, GCP and Azure answer on 169.254.169.254 (and AWS on
# fd00:ec2::254 over IPv6), ECS tasks on 169.254.170.2, Alibaba on 100.100.100.200.
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)


class CallbackRefused(InputError):
    """The callback URL is refused (not http(s), no host, or an address the guard refuses)."""


def refusal(address: IPAddress) -> str | None:
    """Why a request may not go to `address` (a class of address, in words), or None
    for a public unicast address."""
    if address in METADATA:
        return "a cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address inside an IPv6 one reaches that IPv4 address: judge it instead.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            inner = refusal(embedded)
            return None if inner is None else f"{inner} (inside the IPv6 address {address})"
        if address.teredo is not None or address in _NAT64_LOCAL:
            return "a tunnelled address (Teredo or local NAT64)"
        if address.scope_id:
            return "a link-local address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "a reserved address"
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses callbacks may reach: public ones, and besides them every address
    (`allow_private`) or the `allowed` networks (never a metadata address)."""

    allow_private: bool = False
    allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def of(cls, settings: Settings) -> AddressPolicy:
        networks = [p.strip() for p in settings.webhook_allowed_networks.split(",")]
        return cls(
            settings.webhook_allow_private_hosts,
            tuple(ipaddress.ip_network(n, strict=False) for n in networks if n),
        )

    def refusal(self, address: IPAddress) -> str | None:
        """Why this policy refuses `address`, or None."""
        if self.allow_private:
            return None
        if address not in METADATA and any(address in network for network in self.allowed):
            return None
        return refusal(address)


@dataclass(frozen=True)
class Target:
    """A checked callback: the URL's parts and the address to connect to."""

    scheme: str
    host: str  # as written in the URL (no brackets)
    port: int
    path: str  # path and query, at least "/"
    address: IPAddress

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return shown if self.port == default else f"{shown}:{self.port}"

    @property
    def pinned_url(self) -> str:
        """The URL with the checked address in place of the host name."""
        shown = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{self.scheme}://{shown}:{self.port}{self.path}"


def parse_callback(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an http(s) URL with a host, or CallbackRefused."""
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise CallbackRefused("has a space or a control character; send the URL encoded")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CallbackRefused(f"is not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise CallbackRefused(f"must be an http:// or https:// URL, not {scheme or 'relative'}")
    if not parts.hostname:
        raise CallbackRefused("has no host; give a URL like https://example.com/hooks")
    if parts.username is not None or parts.password is not None:
        raise CallbackRefused("may not carry a user or password; authenticate with the signature")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80), path


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal: itself), or CallbackRefused."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise CallbackRefused(f"host {host} does not resolve ({exc})") from exc
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise CallbackRefused(f"host {host} resolves to no address")
    return found


def check_target(url: str, *, policy: AddressPolicy) -> Target:
    """`url` parsed, its host resolved and every address it resolves to checked against
    `policy`; the Target names the (first) address to connect to. CallbackRefused says
    why not."""
    scheme, host, port, path = parse_callback(url)
    addresses = resolve(host, port)
    # Every address, not just the first: a name that answers one public and one private
    # address could be connected to either by a later resolution.
    for address in addresses:
        why = policy.refusal(address)
        if why is not None:
            shown = host if host == str(address) else f"{host} ({address})"
            raise CallbackRefused(
                f"host {shown} is {why}; webhooks go to public addresses only "
                "(VOICEBATCH_WEBHOOK_ALLOWED_NETWORKS or _ALLOW_PRIVATE_HOSTS lift this)"
            )
    return Target(scheme, host, port, path, addresses[0])
