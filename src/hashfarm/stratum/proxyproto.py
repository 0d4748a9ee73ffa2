"""The PROXY protocol (HAProxy's, versions 1 and 2), sans-I/O: a load balancer's first bytes.

A TCP load balancer in front of the pool makes every miner's connection come from the
balancer's address. With `send-proxy` (v1, text) or `send-proxy-v2` (binary) it first writes
one header naming the miner's real address, then the miner's bytes. `parse` reads that header
from the start of what a connection has received so far:

- `None`: not enough bytes yet (feed more, within the caller's deadline);
- `(ProxyHeader, n)`: the header is the first `n` bytes; the rest is the miner's;
- `ProxyHeaderError`: these bytes are not a valid header (the connection must be closed).

Bounded: a v1 header is one line of at most 107 bytes with its CRLF (the spec's worst case: "PROXY
UNKNOWN" followed by two full IPv6 addresses and ports); a v2 header is 16 bytes and the length they
announce, refused over `V2_MAX_LENGTH`. A LOCAL (v2) or UNKNOWN (v1) header, and a v2 header
for a family or transport the pool has no use for (UNSPEC, UNIX), carry no address: the
connection then keeps its own (the balancer's health checks send these).

Whom to believe is `TrustedSources`: only a connection from a configured balancer address
may send a header at all; anyone else's `PROXY ...` line is ordinary (bad) Stratum input.
Nothing here touches a socket or a clock.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107  # bytes of the longest v1 line, "PROXY" to CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"  # the 12 bytes that open every v2 header
V2_FIXED = 16  # signature, version/command, family/transport, length
# Address block and TLVs a v2 header may announce: the UNIX family's 216 bytes plus room for
# the TLVs balancers add (AWS's VPC endpoint id, a unique id, SSL details). Beyond: refused.
V2_MAX_LENGTH = 1024
MAX_HEADER = V2_FIXED + V2_MAX_LENGTH  # bytes a connection may hold while its header is read

_V2_INET, _V2_INET6 = 0x1, 0x2  # families (high nibble of byte 14)
_V2_UNSPEC_TRANSPORT, _V2_STREAM = 0x0, 0x1  # transports (low nibble)
_V2_LOCAL, _V2_PROXY = 0x0, 0x1  # commands (low nibble of byte 13)


class ProxyHeaderError(ValueError):
    """The bytes are not a valid PROXY protocol header (says what was wrong)."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What a header said: the miner's address and port, or None to keep the connection's."""

    version: int  # 1 (text) or 2 (binary)
    source: tuple[str, int] | None  # the client's (ip, port); None: LOCAL, UNKNOWN, UNSPEC
    destination: tuple[str, int] | None  # the address the client connected to


def parse(data: bytes) -> tuple[ProxyHeader, int] | None:
    """The header at the start of `data` and its length; None while it may still be one."""
    if data[: len(V2_SIGNATURE)] == V2_SIGNATURE[: len(data)]:
        return _parse_v2(data) if len(data) >= len(V2_SIGNATURE) else None
    if data[: len(V1_PREFIX)] == V1_PREFIX[: len(data)]:
        return _parse_v1(data) if len(data) >= len(V1_PREFIX) else None
    raise ProxyHeaderError(f"no PROXY protocol header: starts with {bytes(data[:16])!r}")


def _parse_v1(data: bytes) -> tuple[ProxyHeader, int] | None:
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        if len(data) >= V1_MAX_LENGTH:
            raise ProxyHeaderError(f"PROXY v1 line longer than {V1_MAX_LENGTH} bytes")
        if b"\n" in data:
            raise ProxyHeaderError("PROXY v1 line not ended by CRLF")
        return None
    try:
        line = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("PROXY v1 line is not ASCII") from None
    parts = line.split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":  # the rest of the line is ignored
        return ProxyHeader(1, None, None), end + 2
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError(f"bad PROXY v1 line {line!r}")
    version = 4 if parts[1] == "TCP4" else 6
    src, dst = _v1_address(parts[2], version), _v1_address(parts[3], version)
    sport, dport = _v1_port(parts[4]), _v1_port(parts[5])
    return ProxyHeader(1, (src, sport), (dst, dport)), end + 2


def _v1_address(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyHeaderError(f"bad address {text!r} in PROXY v1 line") from None
    if address.version != version:
        raise ProxyHeaderError(f"address {text!r} is not IPv{version} (PROXY v1 TCP{version})")
    return str(address)


def _v1_port(text: str) -> int:
    # decimal digits only (int() would take "+1", " 1" or "1_000"), at most 65535
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or int(text) > 65535:
        raise ProxyHeaderError(f"bad port {text!r} in PROXY v1 line")
    return int(text)


def _parse_v2(data: bytes) -> tuple[ProxyHeader, int] | None:
    if len(data) < V2_FIXED:
        return None
    version, command = data[12] >> 4, data[12] & 0x0F
    family, transport = data[13] >> 4, data[13] & 0x0F
    length = int.from_bytes(data[14:16], "big")
    if version != 2:
        raise ProxyHeaderError(f"PROXY v2 header with version {version}")
    if command not in (_V2_LOCAL, _V2_PROXY):
        raise ProxyHeaderError(f"PROXY v2 header with unknown command {command}")
    if length > V2_MAX_LENGTH:
        raise ProxyHeaderError(
            f"PROXY v2 header announces {length} bytes (at most {V2_MAX_LENGTH})"
        )
    total = V2_FIXED + length
    if len(data) < total:
        return None
    body = data[V2_FIXED:total]
    if command == _V2_LOCAL:  # the balancer's own connection (a health check)
        return ProxyHeader(2, None, None), total
    if transport not in (_V2_UNSPEC_TRANSPORT, _V2_STREAM):
        raise ProxyHeaderError(f"PROXY v2 header for transport {transport} (not TCP)")
    if family == _V2_INET and transport == _V2_STREAM:
        return _v2_addresses(body, 4, ipaddress.IPv4Address), total
    if family == _V2_INET6 and transport == _V2_STREAM:
        return _v2_addresses(body, 16, ipaddress.IPv6Address), total
    if family > 3:
        raise ProxyHeaderError(f"PROXY v2 header with unknown address family {family}")
    return ProxyHeader(2, None, None), total  # UNSPEC or UNIX: keep the connection's address


def _v2_addresses(
    body: bytes, size: int, kind: type[ipaddress.IPv4Address] | type[ipaddress.IPv6Address]
) -> ProxyHeader:
    if len(body) < 2 * size + 4:  # what follows the addresses (TLVs) is skipped
        raise ProxyHeaderError(f"PROXY v2 address block of {len(body)} bytes is too short")
    src, dst = kind(body[:size]), kind(body[size : 2 * size])
    sport = int.from_bytes(body[2 * size : 2 * size + 2], "big")
    dport = int.from_bytes(body[2 * size + 2 : 2 * size + 4], "big")
    return ProxyHeader(2, (_plain(src), sport), (_plain(dst), dport))


def _plain(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An IPv4-mapped IPv6 address as a.b.c.d, so bans and limits see one address per miner."""
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped if mapped is not None else address)


class TrustedSources:
    """The load balancers whose PROXY headers are believed: addresses and networks.

    Built from a comma-separated list (`stratum.proxy_protocol_from`): "10.0.0.5, 10.0.1.0/24,
    ::1". Empty: the PROXY protocol is off and nobody is trusted.
    """

    __slots__ = ("networks",)

    def __init__(self, text: str) -> None:
        self.networks = parse_sources(text)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, ip: str) -> bool:
        """True when a connection from `ip` (as the socket reports it) is a trusted balancer."""
        if not self.networks:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:  # a UNIX socket's path, say
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        address = mapped if mapped is not None else address
        return any(address in net for net in self.networks)


def parse_sources(
    text: str,
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The networks of a comma-separated list of addresses and CIDR networks (ValueError)."""
    nets = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item, strict=True))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an address or network ({exc})") from None
    return tuple(nets)
