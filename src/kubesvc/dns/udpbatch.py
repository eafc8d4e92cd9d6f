"""UDP with recvmmsg/sendmmsg: many datagrams per system call, as Knot and CoreDNS's Go runtime do.

Python's socket module has no recvmmsg/sendmmsg, and one recvfrom + one sendto per
query costs more kernel time (~4 µs here) than everything else a cache hit does.
This module calls them through ctypes with buffers allocated once: a batch of up
to ``BATCH`` queries is received with one call, the hits are answered into a send
buffer, and all replies go out with one call, each to the address it came from
(the kernel-written source address is reused as the destination as-is).

Per-query Python work on a repeat question is one dict lookup: ``raw`` maps the
query bytes after the ID (a given resolver asks the same name with the same
bytes) to the finished response after the ID. It is emptied whenever the answer
cache drops anything, so it never outlives what it was derived from.

Linux only; ``available()`` says whether it can be used (``server.UDPServer`` is the
portable fallback).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import socket
import struct
import time

from kubesvc.dns import wire
from kubesvc.dns.server import UDPAnswering

log = logging.getLogger(__name__)

BATCH = 64
SLOT = 4096            # largest query we read whole; bigger ones arrive with MSG_TRUNC -> FORMERR/drop
OUT_SLOT = 4096        # UDP replies never exceed our EDNS size (wire.EDNS_PAYLOAD); larger ones are TC
NAME = 128             # sizeof(struct sockaddr_storage)
MMSG = 64              # sizeof(struct mmsghdr) on LP64
MSG_DONTWAIT = 0x40
MSG_TRUNC = 0x20

_libc = None


def available() -> bool:
    global _libc
    if _libc is not None:
        return bool(_libc)
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        lib.recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
        lib.recvmmsg.restype = ctypes.c_int
        lib.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
        lib.sendmmsg.restype = ctypes.c_int
        ok = struct.calcsize("P") == 8
        _libc = lib if ok else False
    except (OSError, AttributeError):
        _libc = False
    return bool(_libc)


def _addr(buf: bytearray) -> int:
    return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))


class BatchUDPServer(UDPAnswering):
    """UDP server on one socket using recvmmsg/sendmmsg; same duties as ``server.UDPServer``."""

    def __init__(self, resolver, sock: socket.socket, max_raw: int = 100_000):
        available()
        super().__init__(resolver, sock)
        self.fd = sock.fileno()
        self.raw: dict[bytes, tuple[bytes, object]] = {}
        self.max_raw = max_raw
        # receive side: BATCH slots of SLOT bytes, names, iovecs, mmsghdrs
        self.rbuf = bytearray(BATCH * SLOT)
        self.rnames = bytearray(BATCH * NAME)
        self.riov = bytearray(BATCH * 16)
        self.rmsgs = bytearray(BATCH * MMSG)
        rb, rn, ri = _addr(self.rbuf), _addr(self.rnames), _addr(self.riov)
        for i in range(BATCH):
            struct.pack_into("PQ", self.riov, i * 16, rb + i * SLOT, SLOT)
            struct.pack_into("PI4xPQPQi4xI4x", self.rmsgs, i * MMSG, rn + i * NAME, NAME, ri + i * 16, 1, 0, 0, 0, 0)
        self.rtemplate = bytes(self.rmsgs)  # restored before each call: the kernel writes namelen/len/flags
        self.rnames_addr = rn
        # send side: replies copied into per-slot buffers
        self.sbuf = bytearray(BATCH * OUT_SLOT)
        self.siov = bytearray(BATCH * 16)
        self.smsgs = bytearray(BATCH * MMSG)
        self.sbuf_addr, self.siov_addr = _addr(self.sbuf), _addr(self.siov)
        for i in range(BATCH):
            struct.pack_into("PQ", self.siov, i * 16, self.sbuf_addr + i * OUT_SLOT, 0)
        self.rmsgs_addr, self.smsgs_addr = _addr(self.rmsgs), _addr(self.smsgs)
        self.rmv, self.smv = memoryview(self.rbuf), memoryview(self.sbuf)
        self.cache = resolver.cache
        # Raw entries are derived from answer cache entries: when any of those goes, start
        # over (cheaper in memory than tracking which raw keys came from which entry; the
        # next query of each name refills it at the cost of one parse).
        self.cache.on_invalidate.append(self.raw.clear)

    def _readable(self) -> None:
        libc = _libc
        t0 = time.perf_counter()
        hits = 0
        while True:
            self.rmsgs[:] = self.rtemplate
            n = libc.recvmmsg(self.fd, self.rmsgs_addr, BATCH, MSG_DONTWAIT, None)
            if n <= 0:
                if n < 0 and ctypes.get_errno() not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                    log.debug("recvmmsg: %s", errno.errorcode.get(ctypes.get_errno()))
                break
            hits += self._batch(n)
            if n < BATCH:
                break  # drained for now; the loop wakes us when more arrive
        if hits:
            self.resolver.metrics.fast_batch(time.perf_counter() - t0, hits)

    def _batch(self, n: int) -> int:
        rmv, rmsgs, raw = self.rmv, self.rmsgs, self.raw
        smsgs, siov, smv = self.smsgs, self.siov, self.smv
        entries = self.cache.entries
        unpack_from, pack_into = struct.unpack_from, struct.pack_into
        names, ibase = self.rnames_addr, self.siov_addr
        out_n = 0
        for i in range(n):
            namelen, flags, ln = unpack_from("8xI36xi4xI", rmsgs, i * MMSG)
            data = rmv[i * SLOT:i * SLOT + ln].tobytes()
            if flags & MSG_TRUNC:
                data = data[:12]  # an oversized datagram: whatever it was, answer FORMERR or drop
            hit = raw.get(data[2:])
            if hit is not None:
                out = data[:2] + hit[0]
                hit[1].hits += 1
            else:
                out = self._first(data, entries)
                if out is None:
                    addr = self._sockaddr(i, namelen)
                    self._slow(data, addr)
                    continue
            ln = len(out)
            if ln > OUT_SLOT:  # cannot happen (answers are cut to our EDNS size); be safe anyway
                self._send(out, self._sockaddr(i, namelen))
                continue
            off = out_n * OUT_SLOT
            smv[off:off + ln] = out
            pack_into("Q", siov, out_n * 16 + 8, ln)
            pack_into("PI4xPQ", smsgs, out_n * MMSG, names + i * NAME, namelen, ibase + out_n * 16, 1)
            out_n += 1
        if out_n:
            self._sendmmsg(out_n)
        return out_n

    def _first(self, data: bytes, entries) -> bytes | None:
        """A question not seen in these exact bytes: answer from the answer cache and remember it."""
        q = wire.parse_query(data)
        if q is None:
            return None
        e = entries.get(q.key)
        if e is None:
            return None
        e.hits += 1
        if e.size > q.udp_limit:
            return wire.truncated(data, q.qend, e)
        if e.tails is not None:
            return wire.splice(data, q, e, e.next_tail())  # rotating: not pinned in the raw table
        out = wire.splice(data, q, e)
        if len(self.raw) >= self.max_raw:
            self.raw.clear()
        self.raw[data[2:]] = (out[2:], e)
        return out

    def _sendmmsg(self, count: int) -> None:
        libc = _libc
        sent = 0
        for _ in range(4):
            r = libc.sendmmsg(self.fd, self.smsgs_addr + sent * MMSG, count - sent, MSG_DONTWAIT)
            if r < 0:
                err = ctypes.get_errno()
                if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS):
                    return  # the socket buffer is full: UDP may drop, as the kernel would
                sent += 1  # one bad destination (e.g. EPERM): skip it, send the rest
            else:
                sent += r
            if sent >= count:
                return

    def _sockaddr(self, i: int, namelen: int):
        raw = bytes(self.rnames[i * NAME:i * NAME + namelen])
        fam = struct.unpack_from("H", raw)[0]
        if fam == socket.AF_INET:
            port = struct.unpack_from("!H", raw, 2)[0]
            return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
        port = struct.unpack_from("!H", raw, 2)[0]
        flowinfo, = struct.unpack_from("!I", raw, 4)
        scope, = struct.unpack_from("I", raw, 24)
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port, flowinfo, scope

