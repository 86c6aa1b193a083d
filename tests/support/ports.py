"""Free TCP port lookup for test servers."""

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on `host` that was free when this function checked it.

    The kernel picks an unused ephemeral port for a socket bound to port 0, and the
    socket is closed before returning.
    """
    # NOTE: another process can take the port between this call and the server's own
    # bind. Callers that start a server should fail with the server's log, not hang.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
