"""Every bound tcphop puts on untrusted input, in one place (SECURITY.md lists them).

A value past a limit is refused with the field path and the number, or skipped and counted:
never a stall, a crash or unbounded memory.
"""

from __future__ import annotations

# Service specs (refused at `service apply`, skipped when found stored).
MAX_SERVICES = 256  # the XDP `vips` map holds 256 VIP:ports
MAX_RULES = 256  # per service
MAX_PATTERN_BYTES = 1024  # one RE2 pattern (path_regex, header regex)
MAX_SPEC_BYTES = 64 * 1024  # one stored service spec, as JSON
MAX_APPLY_SERVICES = MAX_SERVICES  # services in one ApplyServices call

# Values read back from etcd (anything larger or deeper is skipped and listed as malformed).
MAX_VALUE_BYTES = 256 * 1024
MAX_JSON_DEPTH = 32
# gRPC's default receive limit is 4 MiB: a full-prefix read of a large cluster passes it.
# 256 services x 64 KiB = 16 MiB of specs, plus nodes and health: 64 MiB leaves room.
ETCD_MAX_RECEIVE_BYTES = 64 * 1024 * 1024

# L7 request heads (RFC 9112; 400, 408, 431 on violation).
MAX_HEAD_BYTES = 16 * 1024
MAX_HEADERS = 100
HEAD_TIMEOUT_S = 5.0
MAX_PENDING_HEADS = 1024  # connections waiting for their head; more are closed at once
MAX_PENDING_ADOPTS = 1024  # restored sockets waiting for their commit, per node
LINGER_S = 0.5  # after a refusal, the client's remaining bytes are read and dropped this long
LINGER_BYTES = 64 * 1024  # and at most this many (then the socket closes)

# Telemetry from agents.
MIN_REPORT_INTERVAL_S = 0.05
MAX_REPORT_INTERVAL_S = 60.0
MAX_REPORT_SERVICES = MAX_SERVICES
MAX_CONNECTIONS = 100_000_000

# Accept errors (EMFILE, ENFILE, ENOBUFS, ENOMEM): back off, then retry.
ACCEPT_BACKOFF_S = (0.01, 1.0)  # first and largest pause

# The metrics and health listener (--http-listen): one request per connection.
HTTP_MAX_HEAD_BYTES = 8 * 1024  # a longer head is answered 400
HTTP_HEAD_TIMEOUT_S = 5.0  # TLS handshake, head, and the answer's send each (408 for the head)
HTTP_MAX_CLIENTS = 64  # connections at once; more are closed unanswered

# Rings the leader stores for its successor (rings/<service>).
MAX_RING_NODES = 1024  # the XDP backends map
MAX_RING_WEIGHT = 1000  # cluster/placement.py maglev_weights scales to 1..1000

# tcphopd's configuration file (cluster/configfile.py)
CONFIG_FILE_MAX_BYTES = 64 * 1024  # a real one is a few hundred bytes
