"""A tiny, fast HTTP/1.1 server standing in for a pod (run inside a pod namespace).

GET /hostname.html (or /)  -> the pod's name
GET /ip                    -> the client address this server sees
GET /bytes/N               -> N bytes (bulk transfer)
GET /slow/N                -> N bytes, 64 KiB every 50 ms (a long download)
Keep-alive unless the request says `Connection: close`. UDP on the same port echoes the name.
"""

from __future__ import annotations

import asyncio
import sys

NAME = sys.argv[1].encode()
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 8080
CHUNK = b"x" * 65536


class Http(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        self.buf = b""
        self.peer = transport.get_extra_info("peername")[0].encode()

    def data_received(self, data):
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0]
            path = line.split(b" ")[1] if b" " in line else b"/"
            close = b"connection: close" in head.lower()
            self.respond(path, close)
            if close:
                return

    def respond(self, path, close):
        conn = b"close" if close else b"keep-alive"
        if path.startswith(b"/bytes/") or path.startswith(b"/slow/"):
            n = int(path.rsplit(b"/", 1)[1])
            self.t.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n" % (n, conn))
            if path.startswith(b"/bytes/"):
                while n > 0:
                    self.t.write(CHUNK[:min(n, 65536)])
                    n -= 65536
                if close:
                    self.t.close()
            else:
                asyncio.get_running_loop().create_task(self.slow(n, close))
            return
        body = (self.peer if path == b"/ip" else NAME) + b"\n"
        self.t.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                     b"Connection: %s\r\n\r\n%s" % (len(body), conn, body))
        if close:
            self.t.close()

    async def slow(self, n, close):
        while n > 0 and not self.t.is_closing():
            self.t.write(CHUNK[:min(n, 65536)])
            n -= 65536
            await asyncio.sleep(0.05)
        if close:
            self.t.close()


class Udp(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.t = transport

    def datagram_received(self, data, addr):
        self.t.sendto(NAME + b"\n", addr)


async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Http, "0.0.0.0", PORT, reuse_address=True, backlog=4096)
    await loop.create_datagram_endpoint(Udp, local_addr=("0.0.0.0", PORT))
    print("ready", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    try:
        import uvloop
        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
