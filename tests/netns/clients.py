"""Client scripts the lab tests run in the client namespace (`python3 -c SCRIPT ARGS`)."""

CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
c.sendall(sys.argv[3].encode().decode("unicode_escape").encode("latin-1"))
c.shutdown(socket.SHUT_WR)
out = b""
while chunk := c.recv(65536):
    out += chunk
sys.stdout.write(out.decode("latin-1"))
"""


ME_AND_ANSWER = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
c.sendall(b"GET / HTTP/1.1\\r\\nHost: lab\\r\\nConnection: close\\r\\n\\r\\n")
out = b""
while chunk := c.recv(65536):
    out += chunk
print("%s:%d" % c.getsockname())
sys.stdout.write(out.decode("latin-1"))
"""


SLOW = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
c.sendall(b"GET / HTTP/1.1\\r\\nX-Slow: 1\\r\\n")
sys.stdout.write(c.recv(65536).decode("latin-1"))
"""


STALE = """
import re, socket, sys
def connect():
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    c.bind(("0.0.0.0", int(sys.argv[3])))
    c.settimeout(10)
    c.connect((sys.argv[1], int(sys.argv[2])))
    return c
def answer(c):
    out = b""
    while True:
        head, sep, body = out.partition(b"\\r\\n\\r\\n")
        length = re.search(rb"(?i)content-length: (\\d+)", head)
        if sep and length and len(body) >= int(length.group(1)):
            break
        chunk = c.recv(65536)
        if not chunk:
            break
        out += chunk
    served = re.search(rb"X-Served-By: (\\S+)", out)
    return "%s %s" % (out[:15].decode("latin-1"), served.group(1).decode() if served else "-")
c = connect()
c.sendall(b"GET / HTTP/1.1\\r\\nHost: lab\\r\\nX-Tenant: blue\\r\\n\\r\\n")
print(answer(c), flush=True)
sys.stdin.readline()  # the connection is reset on its node meanwhile
try:
    c.sendall(b"GET / HTTP/1.1\\r\\nHost: lab\\r\\n\\r\\n")
    print("old connection:", answer(c), flush=True)
except OSError as e:
    print("old connection:", type(e).__name__, flush=True)
c.close()
try:
    c = connect()
    c.sendall(b"GET / HTTP/1.1\\r\\nHost: lab\\r\\nConnection: close\\r\\n\\r\\n")
    print("same port again:", answer(c), flush=True)
except OSError as e:
    print("same port again:", type(e).__name__, flush=True)
"""
