"""PROXY protocol v1/v2 parsing (HAProxy's proxy-protocol.txt), sans-I/O."""

from __future__ import annotations

import ipaddress

import pytest

from hashfarm.stratum.proxyproto import (
    MAX_HEADER,
    V1_MAX_LENGTH,
    V2_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    TrustedSources,
    parse,
    parse_sources,
)


def v2(
    command: int, family: int, transport: int, body: bytes, *, length: int | None = None
) -> bytes:
    """A v2 header as the spec lays it out: signature, ver/cmd, fam/transport, length, body."""
    size = len(body) if length is None else length
    return (
        V2_SIGNATURE
        + bytes((0x20 | command, family << 4 | transport))
        + size.to_bytes(2, "big")
        + body
    )


def inet(src: str, dst: str, sport: int, dport: int) -> bytes:
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    return a.packed + b.packed + sport.to_bytes(2, "big") + dport.to_bytes(2, "big")


# v1: the spec's examples -------------------------------------------------------------------


def test_v1_tcp4_gives_the_source_and_leaves_the_miners_bytes() -> None:
    data = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n" + b'{"id":1}\n'
    header, size = parse(data) or pytest.fail("complete header")
    assert header == ProxyHeader(1, ("192.168.0.1", 56324), ("192.168.0.11", 443))
    assert data[size:] == b'{"id":1}\n'


def test_v1_worst_case_is_unknown_with_full_tcp6_fields_in_107_bytes() -> None:
    full = ":".join(["ffff"] * 8)
    tcp6 = f"PROXY TCP6 {full} {full} 65535 65535\r\n".encode()
    header, size = parse(tcp6) or pytest.fail("complete header")
    assert (header.source, size) == ((full, 65535), 104)
    worst = f"PROXY UNKNOWN {full} {full} 65535 65535\r\n".encode()
    assert len(worst) == V1_MAX_LENGTH == 107
    assert parse(worst) == (ProxyHeader(1, None, None), 107)


def test_v1_unknown_keeps_the_connections_address_and_ignores_the_rest() -> None:
    assert parse(b"PROXY UNKNOWN\r\n") == (ProxyHeader(1, None, None), 15)
    line = b"PROXY UNKNOWN ffff:: ffff:: 1 2\r\nX"
    assert parse(line) == (ProxyHeader(1, None, None), len(line) - 1)


def test_v1_incomplete_waits_for_more_bytes() -> None:
    line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    for n in range(len(line)):
        assert parse(line[:n]) is None, n


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",  # a field missing
        b"PROXY TCP5 192.168.0.1 192.168.0.11 56324 443\r\n",  # no such protocol
        b"PROXY TCP4 ::1 192.168.0.11 56324 443\r\n",  # IPv6 in a TCP4 line
        b"PROXY TCP6 192.168.0.1 ::1 56324 443\r\n",  # IPv4 in a TCP6 line
        b"PROXY TCP4 192.168.0.256 192.168.0.11 56324 443\r\n",  # not an address
        b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",  # port out of range
        b"PROXY TCP4 192.168.0.1 192.168.0.11 +5 443\r\n",  # not decimal digits
        b"PROXY TCP4  192.168.0.1 192.168.0.11 56324 443\r\n",  # two spaces
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",  # LF only
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 44\xff\r\n",  # not ASCII
    ],
)
def test_v1_malformed_lines_are_refused(line: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse(line)


def test_v1_without_crlf_in_107_bytes_is_refused_not_buffered() -> None:
    assert parse(b"PROXY " + b"A" * (V1_MAX_LENGTH - 7)) is None  # 106 bytes: may still end
    with pytest.raises(ProxyHeaderError, match="longer than 107"):
        parse(b"PROXY " + b"A" * (V1_MAX_LENGTH - 6))


def test_stratum_or_other_bytes_are_not_a_header() -> None:
    for data in (b'{"id": 1, "method": "mining.subscribe"}\n', b"GET / HTTP/1.1\r\n", b"\r\n\r\nX"):
        with pytest.raises(ProxyHeaderError):
            parse(data)
    assert parse(b"") is None
    assert parse(b"PROX") is None  # still a prefix of "PROXY "
    assert parse(V2_SIGNATURE[:5]) is None


# v2 ----------------------------------------------------------------------------------------


def test_v2_inet_stream_gives_the_source() -> None:
    data = v2(1, 1, 1, inet("203.0.113.7", "10.0.0.1", 40000, 3333)) + b"rest"
    header, size = parse(data) or pytest.fail("complete header")
    assert header == ProxyHeader(2, ("203.0.113.7", 40000), ("10.0.0.1", 3333))
    assert size == 16 + 12
    assert data[size:] == b"rest"


def test_v2_inet6_stream_and_an_ipv4_mapped_source() -> None:
    header, size = parse(v2(1, 2, 1, inet("2001:db8::1", "2001:db8::2", 1, 2))) or pytest.fail(
        "complete header"
    )
    assert (header.source, size) == (("2001:db8::1", 1), 16 + 36)
    mapped, _ = parse(v2(1, 2, 1, inet("::ffff:198.51.100.9", "::1", 7, 8))) or pytest.fail(
        "complete header"
    )
    assert mapped.source == ("198.51.100.9", 7)


def test_v2_tlvs_after_the_addresses_are_skipped() -> None:
    tlv = bytes((0x05, 0x00, 0x04)) + b"abcd"  # PP2_TYPE_UNIQUE_ID, 4 bytes
    body = inet("203.0.113.7", "10.0.0.1", 40000, 3333) + tlv
    header, size = parse(v2(1, 1, 1, body) + b"{") or pytest.fail("complete header")
    assert (header.source, size) == (("203.0.113.7", 40000), 16 + len(body))


def test_v2_local_unspec_and_unix_keep_the_connections_address() -> None:
    assert parse(v2(0, 0, 0, b"")) == (ProxyHeader(2, None, None), 16)  # a health check
    assert parse(v2(0, 1, 1, inet("1.2.3.4", "5.6.7.8", 1, 2)))[0].source is None  # type: ignore[index]
    assert parse(v2(1, 0, 0, b"")) == (ProxyHeader(2, None, None), 16)
    assert parse(v2(1, 3, 1, bytes(216))) == (ProxyHeader(2, None, None), 16 + 216)


def test_v2_incomplete_waits_for_more_bytes() -> None:
    data = v2(1, 1, 1, inet("203.0.113.7", "10.0.0.1", 40000, 3333))
    for n in range(len(data)):
        assert parse(data[:n]) is None, n


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12), "version 1"),
        (V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12), "unknown command"),
        (v2(1, 1, 2, inet("1.2.3.4", "5.6.7.8", 1, 2)), "transport 2"),  # UDP
        (v2(1, 4, 1, bytes(12)), "address family 4"),
        (v2(1, 1, 1, bytes(11)), "too short"),
        (v2(1, 2, 1, bytes(35)), "too short"),
    ],
)
def test_v2_malformed_headers_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(ProxyHeaderError, match=why):
        parse(data)


def test_v2_length_is_bounded_before_its_bytes_arrive() -> None:
    head = v2(1, 1, 1, b"", length=V2_MAX_LENGTH + 1)
    with pytest.raises(ProxyHeaderError, match="announces"):
        parse(head)  # refused from the 16 fixed bytes: nothing more is buffered
    at_most = v2(1, 1, 1, inet("1.2.3.4", "5.6.7.8", 1, 2) + bytes(V2_MAX_LENGTH - 12))
    assert len(at_most) == MAX_HEADER
    assert parse(at_most) is not None


# trusted sources ---------------------------------------------------------------------------


def test_trusted_sources_take_addresses_and_networks() -> None:
    trusted = TrustedSources("10.0.0.5, 10.0.1.0/24 ,::1,")
    assert trusted
    assert trusted.trusts("10.0.0.5")
    assert trusted.trusts("10.0.1.200")
    assert trusted.trusts("::ffff:10.0.1.7")  # a dual-stack listener's view of IPv4
    assert trusted.trusts("::1")
    assert not trusted.trusts("10.0.0.6")
    assert not trusted.trusts("10.0.2.1")
    assert not trusted.trusts("/run/pool.sock")
    off = TrustedSources("")
    assert not off
    assert not off.trusts("10.0.0.5")


@pytest.mark.parametrize("bad", ["10.0.0.300", "10.0.1.1/24", "lb.example", "10.0.0.0/33"])
def test_trusted_sources_refuse_what_is_not_an_address_or_network(bad: str) -> None:
    with pytest.raises(ValueError, match="not an address or network"):
        parse_sources(f"10.0.0.5, {bad}")


# the pool's settings and flag --------------------------------------------------------------


def test_the_pool_refuses_a_bad_trusted_list_naming_the_key() -> None:
    from hashfarm.errors import ConfigError
    from hashfarm.pool.config import load_settings

    ok = load_settings(environ={}, flags={"stratum.proxy_protocol_from": "10.0.0.5,10.0.1.0/24"})
    assert ok.stratum.proxy_protocol_from == "10.0.0.5,10.0.1.0/24"
    assert load_settings(environ={}).stratum.proxy_protocol_from == ""  # off by default
    with pytest.raises(ConfigError, match=r"stratum\.proxy_protocol_from: '10\.0\.0\.5, lb'"):
        load_settings(environ={}, flags={"stratum.proxy_protocol_from": "10.0.0.5, lb"})
    with pytest.raises(ConfigError, match=r"stratum\.proxy_protocol_timeout"):
        load_settings(environ={"HASHFARM_STRATUM_PROXY_PROTOCOL_TIMEOUT": "0"})


def test_the_flag_reaches_the_setting_and_a_bad_value_exits_2() -> None:
    from click.testing import CliRunner

    from hashfarm.cli.main import cli

    result = CliRunner().invoke(cli, ["pool", "--proxy-protocol-from", "10.0.0.999"])
    assert result.exit_code == 2
    assert "stratum.proxy_protocol_from" in result.output
