"""Where a call sends, as learn writes it into the egress list: real sockaddr bytes as the
kernel lays them out (the socket module's own packing), loopback and non-IP left out, and
the record of places bounded."""

from __future__ import annotations

import socket
import struct

from pysbx.sandbox import notify
from pysbx.sandbox.destinations import destination, rule_for


def sockaddr_in(address: str, port: int) -> bytes:
    return struct.pack("<H", socket.AF_INET) + struct.pack(">H", port) + socket.inet_aton(address) + bytes(8)


def sockaddr_in6(address: str, port: int) -> bytes:
    packed = socket.inet_pton(socket.AF_INET6, address)
    return struct.pack("<H", socket.AF_INET6) + struct.pack(">H", port) + bytes(4) + packed + bytes(4)


def test_each_family_becomes_its_rule_and_loopback_none() -> None:
    assert rule_for(sockaddr_in("192.0.2.7", 8081)) == "192.0.2.7/32:8081"
    assert rule_for(sockaddr_in6("2001:db8::1", 443)) == "[2001:db8::1/128]:443"
    assert rule_for(sockaddr_in6("::ffff:192.0.2.9", 53)) == "192.0.2.9/32:53"  # an IPv4 peer on an IPv6 socket
    for loopback in (sockaddr_in("127.0.0.53", 53), sockaddr_in6("::1", 80), sockaddr_in6("::ffff:127.0.0.1", 80)):
        assert rule_for(loopback) == ""
    assert rule_for(sockaddr_in("192.0.2.7", 0)) == "" and rule_for(sockaddr_in("0.0.0.0", 80)) == ""
    unix = struct.pack("<H", socket.AF_UNIX) + b"/run/x.sock\0"
    assert rule_for(unix) == "" and rule_for(b"\x02\x00") == ""


def test_the_address_is_found_where_each_call_keeps_it() -> None:
    memory = {0x1000: sockaddr_in("192.0.2.7", 25)}
    header = struct.pack("<QI", 0x1000, 16)  # struct msghdr: msg_name, msg_namelen
    memory[0x2000] = header

    def read(address: int, size: int) -> bytes:
        return memory.get(address, b"")[:size]

    assert destination((1, 2), [3, 0x1000, 16, 0, 0, 0], read) == "192.0.2.7/32:25"  # connect
    assert destination((4, 5), [3, 0, 0, 0, 0x1000, 16], read) == "192.0.2.7/32:25"  # sendto
    assert destination((4, 5), [3, 0, 0, 0, 0, 0], read) == ""  # a connected socket's send: no address
    assert destination((-1, 1), [3, 0x2000, 0, 0, 0, 0], read) == "192.0.2.7/32:25"  # sendmsg


def test_places_are_bounded_and_two_runs_add_up() -> None:
    places: dict[str, int] = {}
    for number in range(notify.MAX_PLACES + 10):
        notify.count_place(places, f"192.0.2.{number}/32:1")
    assert len(places) == notify.MAX_PLACES + 1 and places[notify.MORE] == 10
    first, second = notify.Heard(), notify.Heard()
    first.written, second.written = {"/tmp": 2}, {"/tmp": 1, "/var": 4}
    second.reached = {"192.0.2.7/32:25": 1}
    both = notify.merged(first, second)
    assert both.written == {"/tmp": 3, "/var": 4} and both.reached == {"192.0.2.7/32:25": 1}
    again = notify.heard_from_json(notify.heard_as_json(both))
    assert again.written == both.written and again.reached == both.reached
