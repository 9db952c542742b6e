"""Moving an established TCP connection between hosts with TCP_REPAIR (Linux, CAP_NET_ADMIN).

The order is the one proven in shared/KERNEL-NOTES.md:

    scheduler: freeze(sock) -> state = snapshot(sock, already_read) -> [server adopts]
               -> [steer the flow to the server] -> close(sock)      (still in repair: silent)
    server:    sock = restore(state) -> [told to go] -> release(sock)
    failure:   thaw(sock) on the scheduler, which then answers itself

`freeze` attaches a classic BPF filter that drops every input, so nothing arriving after the
snapshot is acknowledged by the old socket and lost. Sequence numbers and timestamps go through
setsockopt as 4 packed bytes (values >= 2**31 do not fit a C int).
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct
import termios
from dataclasses import dataclass

from datapath.errors import DatapathError

TCP_REPAIR, TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ, TCP_REPAIR_OPTIONS = 19, 20, 21, 22
TCP_TIMESTAMP, TCP_REPAIR_WINDOW = 24, 29
TCP_RECV_QUEUE, TCP_SEND_QUEUE = 1, 2
TCPOPT_MSS, TCPOPT_WINDOW, TCPOPT_SACK_PERM, TCPOPT_TIMESTAMP = 2, 3, 4, 8
TCPI_OPT_TIMESTAMPS, TCPI_OPT_SACK, TCPI_OPT_WSCALE = 1, 2, 4
SO_ATTACH_FILTER, SO_DETACH_FILTER = 26, 27
SIOCOUTQ = 0x5411
TCP_CLOSE_WAIT = 8
_DROP_ALL = (ctypes.c_uint64 * 1)(0x0000000000000006)  # BPF_RET | BPF_K, k = 0: drop
_PROG = struct.pack("@HP", 1, ctypes.addressof(_DROP_ALL))  # struct sock_fprog
U32 = 2**32


class RepairError(DatapathError):
    pass


@dataclass(frozen=True, slots=True)
class TcpState:
    local: tuple[str, int]  # the VIP side
    peer: tuple[str, int]  # the client
    snd_seq: int  # sequence number of the first byte of send_queue
    rcv_seq: int  # sequence number of the first byte of recv_queue
    send_queue: bytes  # sent but unacknowledged, and unsent
    recv_queue: bytes  # what the application has not consumed (re-inserted by the adopter)
    mss: int
    snd_wscale: int
    rcv_wscale: int
    sack: bool
    timestamps: bool
    tsval: int
    window: bytes  # struct tcp_repair_window, as the kernel gave it
    peer_closed: bool = False  # the client's FIN arrived (and was acknowledged) already


def _get_u32(sock: socket.socket, opt: int) -> int:
    return int(struct.unpack("I", sock.getsockopt(socket.SOL_TCP, opt, 4))[0])


def _set_u32(sock: socket.socket, opt: int, value: int) -> None:
    sock.setsockopt(socket.SOL_TCP, opt, struct.pack("I", value % U32))


def freeze(sock: socket.socket) -> None:
    """Drop all further input on the socket (it still holds its state)."""
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, _PROG)


def thaw(sock: socket.socket) -> None:
    """Undo freeze (and repair mode): the socket serves again, nothing lost."""
    sock.setsockopt(socket.SOL_TCP, TCP_REPAIR, 0)
    _reuse_again(sock)
    sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)


def _reuse_again(sock: socket.socket) -> None:
    """Leaving repair mode clears SO_REUSEADDR (the kernel sets sk_reuse to SK_NO_REUSE). Without
    it again, the connection's TIME_WAIT on VIP:port makes the next L7 listener's bind there fail
    with EADDRINUSE for 60 s (a leader that got its VIP back could not listen for 56 s)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)


def _peek(sock: socket.socket, size: int) -> bytes:
    out = b""
    while len(out) < size:  # in repair mode a peek returns the queue from its start
        chunk = sock.recv(size, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        if not chunk:
            break
        out = chunk
        if len(out) >= size:
            break
    return out[:size]


def snapshot(sock: socket.socket, already_read: bytes = b"") -> TcpState:
    """Put a frozen socket in repair mode and capture everything a restore needs.

    `already_read` is what the application consumed from the socket (the request head, and
    anything read with it): it is put back in front of the receive queue.
    """
    try:
        sock.setsockopt(socket.SOL_TCP, TCP_REPAIR, 1)
        sock.setsockopt(socket.SOL_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)
        rcv_nxt = _get_u32(sock, TCP_QUEUE_SEQ)
        unread = int.from_bytes(fcntl.ioctl(sock.fileno(), termios.FIONREAD, bytes(4)), "little")
        recv_queue = already_read + (_peek(sock, unread) if unread else b"")
        sock.setsockopt(socket.SOL_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)
        write_seq = _get_u32(sock, TCP_QUEUE_SEQ)
        outq = int.from_bytes(fcntl.ioctl(sock.fileno(), SIOCOUTQ, bytes(4)), "little")
        send_queue = _peek(sock, outq) if outq else b""
        info = sock.getsockopt(socket.SOL_TCP, socket.TCP_INFO, 8)
        tcp_state, options, scales = info[0], info[5], info[6]
        return TcpState(
            local=sock.getsockname(),
            peer=sock.getpeername(),
            snd_seq=(write_seq - len(send_queue)) % U32,
            rcv_seq=(rcv_nxt - len(recv_queue)) % U32,
            send_queue=send_queue,
            recv_queue=recv_queue,
            mss=sock.getsockopt(socket.SOL_TCP, socket.TCP_MAXSEG),
            snd_wscale=scales & 0x0F if options & TCPI_OPT_WSCALE else 0,
            rcv_wscale=scales >> 4 if options & TCPI_OPT_WSCALE else 0,
            sack=bool(options & TCPI_OPT_SACK),
            timestamps=bool(options & TCPI_OPT_TIMESTAMPS),
            tsval=_get_u32(sock, TCP_TIMESTAMP),
            window=sock.getsockopt(socket.SOL_TCP, TCP_REPAIR_WINDOW, 20),
            peer_closed=tcp_state == TCP_CLOSE_WAIT,
        )
    except OSError as e:
        raise RepairError(f"cannot snapshot the connection: {e}") from e


def restore(state: TcpState) -> socket.socket:
    """A socket with the connection's state, bound to its VIP, still in repair mode (silent
    until `release`). The kernel enforces this order."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Repair mode makes the socket SK_FORCE_REUSE: it binds VIP:port even beside this node's
        # own listener there (a leader that just stepped down). SO_REUSEADDR here would lower
        # that to SK_CAN_REUSE, which a listener blocks (EADDRINUSE).
        sock.setsockopt(socket.SOL_TCP, TCP_REPAIR, 1)
        sock.bind(state.local)
        sock.setsockopt(socket.SOL_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)
        _set_u32(sock, TCP_QUEUE_SEQ, state.snd_seq)
        sock.setsockopt(socket.SOL_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)
        _set_u32(sock, TCP_QUEUE_SEQ, state.rcv_seq)
        sock.setsockopt(socket.SOL_TCP, socket.TCP_MAXSEG, state.mss)
        sock.connect(state.peer)  # in repair mode: straight to ESTABLISHED, no SYN
        opts = struct.pack("II", TCPOPT_MSS, state.mss)
        if state.snd_wscale or state.rcv_wscale:
            opts += struct.pack("II", TCPOPT_WINDOW, state.snd_wscale | state.rcv_wscale << 16)
        if state.sack:
            opts += struct.pack("II", TCPOPT_SACK_PERM, 0)
        if state.timestamps:
            opts += struct.pack("II", TCPOPT_TIMESTAMP, 0)
        sock.setsockopt(socket.SOL_TCP, TCP_REPAIR_OPTIONS, opts)
        if state.timestamps:
            # Kernels >= 6.7 use bit 0 as a flag; the restored TSval may come out 1 lower.
            _set_u32(sock, TCP_TIMESTAMP, (state.tsval + 2) & ~1)
        if state.recv_queue:
            sock.setsockopt(socket.SOL_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)
            sock.sendall(state.recv_queue)
        if state.send_queue:
            sock.setsockopt(socket.SOL_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE)
            sock.sendall(state.send_queue)
        sock.setsockopt(socket.SOL_TCP, TCP_REPAIR_WINDOW, state.window)
    except OSError as e:
        sock.close()
        raise RepairError(f"cannot restore the connection from {state.peer}: {e}") from e
    return sock


def release(sock: socket.socket, peer_closed: bool = False) -> None:
    """Leave repair mode: the restored connection is live. A connection whose client had
    already closed its side (a restore can only make ESTABLISHED) gets that end-of-file back:
    reads return the queued bytes, then EOF."""
    sock.setsockopt(socket.SOL_TCP, TCP_REPAIR, 0)
    _reuse_again(sock)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if peer_closed:
        sock.shutdown(socket.SHUT_RD)
