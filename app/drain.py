"""Stopping a listening socket without resetting a connection a client has made (Linux).

A graceful stop or a reload (app/serve.py) must not reset a connection that reached the
server: the client cannot tell whether its request was taken. Closing the listening
socket resets every connection in its accept queue, and a worker told to stop closes
every connection it has accepted but read nothing from (hyper's graceful shutdown). So
the server process first holds the socket:

1. new connection attempts (a bare SYN) are dropped by a socket filter: the client
   retries a second later and finds the port open again (a reload) or closed (a stop),
   never reset; every other packet passes, so a handshake already under way completes;
2. the workers accept every connection already queued;
3. until each connection they accepted has sent bytes and the worker has read them
   (seen through the kernel's socket diagnostics), so the worker serves that request.

Step 3 is bounded: a client that connected and sends nothing (a browser's speculative
connection, a slow-loris) holds the stop for at most FIRST_BYTES_SECONDS.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import time

# Longest wait for the workers to take every queued connection.
DRAIN_SECONDS = 10.0
# Longest wait, after that, for connections taken to send their first bytes and for the
# workers to read them.
FIRST_BYTES_SECONDS = 2.0

SO_ATTACH_FILTER = 26
SO_DETACH_FILTER = 27


class _Instruction(ctypes.Structure):  # struct sock_filter (classic BPF)
    _fields_ = (
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint),
    )


# A TCP socket's filter sees the packet from its TCP header: byte 13 holds the flags.
_SYN, _ACK = 0x02, 0x10
_NO_NEW_CONNECTIONS = (_Instruction * 5)(
    _Instruction(0x30, 0, 0, 13),  # ldb [13]          the flags
    _Instruction(0x54, 0, 0, _SYN | _ACK),  # and #(SYN|ACK)
    _Instruction(0x15, 0, 1, _SYN),  # jeq #SYN, next, accept
    _Instruction(0x06, 0, 0, 0),  # ret #0            drop a bare SYN
    _Instruction(0x06, 0, 0, 0xFFFFFFFF),  # ret #-1  accept the rest
)


def listen_queue(sock: socket.socket) -> int:
    """Connections waiting in a listening socket's accept queue (Linux: tcpi_unacked of a
    listener is its accept backlog)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int(struct.unpack_from("I", info, 24)[0])


# Netlink socket diagnostics (linux/sock_diag.h, linux/inet_diag.h).
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST_DUMP = 0x1 | 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_TCP_ESTABLISHED = 1
_INET_DIAG_INFO = 2
_DIAG_MSG = 72  # struct inet_diag_msg
_BYTES_RECEIVED = 128  # offset of tcpi_bytes_received in struct tcp_info


def unread_connections(port: int) -> int:
    """Established connections to local `port` whose client has sent nothing yet, or whose
    bytes no worker has read yet: the ones a stopping worker would close unserved."""
    count = 0
    for family in (socket.AF_INET, socket.AF_INET6):
        for rqueue, info in _established(family, port):
            received = struct.unpack_from("Q", info, _BYTES_RECEIVED)[0]
            if received == 0 or rqueue:
                count += 1
    return count


def _established(family: int, port: int) -> list[tuple[int, bytes]]:
    """(receive queue, tcp_info) of each established TCP socket of `family` on local `port`."""
    request = struct.pack(
        "=BBBxI48x", family, socket.IPPROTO_TCP, 1 << (_INET_DIAG_INFO - 1), 1 << _TCP_ESTABLISHED
    )
    header = struct.pack(
        "=IHHII", 16 + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST_DUMP, 1, 0
    )
    found: list[tuple[int, bytes]] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG) as nl:
        nl.sendall(header + request)
        while True:
            data = nl.recv(1 << 16)
            offset = 0
            while offset + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if kind in (_NLMSG_DONE, _NLMSG_ERROR) or length < 16:
                    return found
                msg = data[offset + 16 : offset + length]
                sport = struct.unpack_from("!H", msg, 4)[0]
                if sport == port:
                    rqueue = struct.unpack_from("=I", msg, 56)[0]
                    found.append((rqueue, _attribute(msg[_DIAG_MSG:], _INET_DIAG_INFO)))
                offset += (length + 3) & ~3


def _attribute(attrs: bytes, wanted: int) -> bytes:
    """The payload of the netlink attribute `wanted` (zeros if the kernel sent none)."""
    offset = 0
    while offset + 4 <= len(attrs):
        length, kind = struct.unpack_from("=HH", attrs, offset)
        if length < 4:
            break
        if kind == wanted:
            return attrs[offset + 4 : offset + length].ljust(_BYTES_RECEIVED + 8, b"\0")
        offset += (length + 3) & ~3
    return bytes(_BYTES_RECEIVED + 8)


def hold(*socks: socket.socket) -> bool:
    """Steps 1-3 of the module's docstring, for every listening socket of the port (one
    per worker: app/serve.py). False if a queue did not empty within DRAIN_SECONDS (the
    caller logs it); the filters stay until release()."""
    prog = struct.pack("HL", len(_NO_NEW_CONNECTIONS), ctypes.addressof(_NO_NEW_CONNECTIONS))
    for sock in socks:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)
    deadline = time.monotonic() + DRAIN_SECONDS
    while any(listen_queue(sock) for sock in socks):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    port = socks[0].getsockname()[1]
    deadline = time.monotonic() + FIRST_BYTES_SECONDS
    try:
        while unread_connections(port) and time.monotonic() < deadline:
            time.sleep(0.02)
    except OSError:  # no socket diagnostics here (a sandbox without netlink): no wait
        pass
    return True


def release(*socks: socket.socket) -> None:
    """New connections are taken again (a reload, once the replaced worker has stopped)."""
    for sock in socks:
        sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
