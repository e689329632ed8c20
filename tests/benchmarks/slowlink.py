"""A slow network link on 127.0.0.1, for benchmarks: a TCP proxy in front of a local server.

Each connection waits one round trip (*rtt* ms) before it is opened, and the bytes of all
connections share one link of *mbps* megabytes a second in each direction. moto's server
answers one request per connection, so every request pays the round trip, as a new HTTPS
request to S3 pays its handshake. Run as its own process (its threads would otherwise queue
on the GIL of the client being measured)::

    python slowlink.py --port 9001 --upstream 127.0.0.1:9000 --rtt 20 --mbps 100
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import threading
import time


class Link:
    """One direction of the link: *rate* bytes a second, shared by every connection."""

    def __init__(self, rate: float) -> None:
        self.rate, self.free_at, self.lock = rate, 0.0, threading.Lock()

    def pass_bytes(self, n: int) -> None:
        with self.lock:
            now = time.monotonic()
            self.free_at = max(now, self.free_at) + n / self.rate
            wait = self.free_at - now
        if wait > 0:
            time.sleep(wait)


def pipe(src: socket.socket, dst: socket.socket, link: Link) -> None:
    try:
        while data := src.recv(1 << 16):
            link.pass_bytes(len(data))
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (dst, src):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def serve(client: socket.socket, upstream: tuple[str, int], rtt: float, up: Link, down: Link) -> None:
    time.sleep(rtt)
    try:
        server = socket.create_connection(upstream)
    except OSError:
        client.close()
        return
    t = threading.Thread(target=pipe, args=(client, server, up), daemon=True)
    t.start()
    pipe(server, client, down)
    t.join()
    client.close()
    server.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True, help="HOST:PORT")
    ap.add_argument("--rtt", type=float, default=20.0, help="milliseconds per connection")
    ap.add_argument("--mbps", type=float, default=100.0, help="megabytes a second, each way")
    args = ap.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    up, down = Link(args.mbps * 1e6), Link(args.mbps * 1e6)
    listener = socket.create_server(("127.0.0.1", args.port), backlog=128)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=serve, args=(client, (host, int(port)), args.rtt / 1000, up, down),
                         daemon=True).start()


if __name__ == "__main__":
    main()
