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
        self.streaming = 0
        self.eof = False
        self.can_write = asyncio.Event()
        self.can_write.set()
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
            delay = 0.0 if path.startswith(b"/bytes/") else 0.05
            asyncio.get_running_loop().create_task(self.stream(n, close, delay))
            return
        body = (self.peer if path == b"/ip" else NAME) + b"\n"
        self.t.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                     b"Connection: %s\r\n\r\n%s" % (len(body), conn, body))
        if close:
            self.t.close()

    def eof_received(self):
        # half-close aware: the client is done sending, finish what we owe it, then close
        self.eof = True
        if not self.streaming:
            self.t.close()
        return True

    def pause_writing(self):
        self.can_write.clear()

    def resume_writing(self):
        self.can_write.set()

    async def stream(self, n, close, delay):
        """n bytes in 64 KiB writes, honouring back-pressure (and a delay per write for /slow)."""
        self.streaming += 1
        while n > 0 and not self.t.is_closing():
            await self.can_write.wait()
            self.t.write(CHUNK[:min(n, 65536)])
            n -= 65536
            if delay:
                await asyncio.sleep(delay)
        self.streaming -= 1
        if close or (self.eof and not self.streaming):
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
