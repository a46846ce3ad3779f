"""Recording loopback traffic as an attacker on the path would, with a raw packet socket (root):
UDP datagrams and TCP client streams to given ports, for tests that send them again."""
import socket
import struct
import time

import pytest

PACKET_OUTGOING = 4


def _frames(seconds: float, listening=None):
    """(IP protocol, IP payload) of every IPv4 packet arriving on loopback over `seconds`;
    `listening` (a threading.Event) is set once the socket records."""
    try:
        sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
    except PermissionError:
        pytest.skip("recording loopback traffic needs root (CAP_NET_RAW)")
    sniffer.bind(("lo", 0))
    sniffer.settimeout(0.2)
    if listening is not None:
        listening.set()
    deadline = time.monotonic() + seconds
    with sniffer:
        while time.monotonic() < deadline:
            try:
                frame, (_, _, pkttype, _, _) = sniffer.recvfrom(70_000)
            except socket.timeout:
                continue
            # Loopback shows each packet twice: leaving (PACKET_OUTGOING) and arriving.
            if pkttype == PACKET_OUTGOING or len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":
                continue
            ip = frame[14:]
            total, header = struct.unpack("!H", ip[2:4])[0], (ip[0] & 0x0F) * 4
            yield ip[9], ip[header:total]


def record_datagrams(ports: set[int], seconds: float, listening=None) -> list[tuple[int, bytes]]:
    """(destination port, payload) of each UDP datagram to one of `ports`, in arrival order."""
    out = []
    for proto, udp in _frames(seconds, listening):
        if proto == 17 and len(udp) >= 8 and (port := struct.unpack("!H", udp[2:4])[0]) in ports:
            out.append((port, bytes(udp[8:])))
    return out


def record_tcp_streams(ports: set[int], seconds: float, listening=None) -> list[tuple[int, bytes]]:
    """(destination port, bytes the client sent) of each TCP connection to one of `ports` opened
    while recording: the client's half, reassembled from its sequence numbers."""
    streams: dict[tuple[int, int], dict] = {}
    for proto, tcp in _frames(seconds, listening):
        if proto != 6 or len(tcp) < 20:
            continue
        src, dst, seq = struct.unpack("!HHI", tcp[:8])
        if dst not in ports:
            continue
        flags, payload = tcp[13], tcp[(tcp[12] >> 4) * 4:]
        if flags & 0x02:  # SYN: a new connection from this source port
            streams[(src, dst)] = {"isn": seq, "parts": {}}
        elif (s := streams.get((src, dst))) is not None and payload:
            s["parts"][(seq - s["isn"] - 1) % 2**32] = bytes(payload)
    out = []
    for (_, dst), s in streams.items():
        data = b""
        for offset in sorted(s["parts"]):
            if offset > len(data):
                break  # a gap: the recording missed a segment
            data += s["parts"][offset][len(data) - offset:]
        if data:
            out.append((dst, data))
    return out
