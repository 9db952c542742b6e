"""What holds a port (datapath.netlink.sockets_on), as the L7 listener logs it when its bind
fails: real sockets on loopback, read back through sock_diag."""

from __future__ import annotations

import socket

from datapath.netlink import sockets_on


def test_sockets_bound_to_an_address_and_port_are_counted_by_state() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            with accepted:
                found = sockets_on("127.0.0.1", port)
                assert found == {"LISTEN": 1, "ESTABLISHED": 1}, found  # the client's is not
                assert client.getsockname()[1] != port
                with socket.socket() as other:  # another address, the same port
                    other.bind(("127.0.0.2", port))
                    other.listen()
                    assert sockets_on("127.0.0.1", port)["127.0.0.2 LISTEN"] == 1
                with socket.socket(socket.AF_INET6) as v6:
                    v6.bind(("::1", port))
                    v6.listen()
                    assert sockets_on("127.0.0.1", port)["::1 LISTEN"] == 1


async def test_the_listener_asks_from_its_event_loop_without_breaking_it() -> None:
    """pyroute2's synchronous sockets run an event loop of their own: called on the daemon's
    loop they raised RuntimeError, which ended the leader's election loop (seen in a full run
    when an L7 listener's bind failed). The listener asks from a thread."""
    from cluster.l7.listeners import _holders

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert await _holders("127.0.0.1", listener.getsockname()[1]) == {"LISTEN": 1}
