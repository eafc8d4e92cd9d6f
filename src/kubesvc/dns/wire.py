"""DNS wire format on the hot path: reading a query's header and question by hand.

dnspython parses and renders a message in ~100-250 µs; a cache hit has to cost a
few µs. So the common query shape -- one question, no answers, optionally one
OPT record -- is checked here with plain byte indexing and explicit bounds
checks, and everything else (and everything malformed) is left to the slow path,
which uses dnspython and answers FORMERR or drops.

The answer cache (``answercache``) keys prebuilt responses by ``cache_key``: the
lowercased question name in wire form, the raw QTYPE/QCLASS bytes and whether
the query had EDNS. A response is then the query's own ID and question (so the
owner names, which are compression pointers to offset 12, keep the query's
case) around prebuilt bytes.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

# Our own EDNS buffer size (what the seed's dig shows: "udp: 4096").
EDNS_PAYLOAD = 4096
# Without EDNS a UDP answer may not exceed 512 bytes (RFC 1035 4.2.1).
CLASSIC_UDP = 512

OPT_RR = b"\x00\x00\x29" + struct.pack("!H", EDNS_PAYLOAD) + b"\x00\x00\x00\x00\x00\x00"

_QR = 0x80
_OPCODE = 0x78
_RD = 0x01


class Question(NamedTuple):
    """What the fast parser learned from a well-formed, ordinary query."""

    key: bytes          # cache key (see module doc)
    qend: int           # offset just past QTYPE/QCLASS
    udp_limit: int      # how large a UDP answer this client accepts


def parse_query(data: bytes) -> Question | None:
    """Parse an ordinary query (QUERY opcode, 1 question, at most an OPT) or return None.

    None means "not the common shape": the caller takes the slow path, which copes
    with (or rejects) anything at all. This function never raises on any input.
    """
    n = len(data)
    # header (12) + root name (1) + qtype/qclass (4)
    if n < 17 or n > 4096:
        return None
    # QR must be 0 and opcode QUERY; qdcount 1, ancount 0, nscount 0, arcount 0|1
    if data[2] & (_QR | _OPCODE) or data[4:10] != b"\x00\x01\x00\x00\x00\x00" or data[10]:
        return None
    arcount = data[11]
    if arcount > 1:
        return None
    pos = 12
    # labels: each length byte 1..63 (a pointer or extended label type means slow path)
    while True:
        if pos >= n:
            return None
        ln = data[pos]
        if ln == 0:
            break
        if ln > 63:
            return None
        pos += ln + 1
    if pos - 12 >= 255:  # names are at most 255 octets including the root
        return None
    qn_end = pos + 1
    qend = qn_end + 4
    if qend > n:
        return None
    if arcount == 0:
        if qend != n:
            return None
        return Question(data[12:qn_end].lower() + data[qn_end:qend] + b"\x00", qend, CLASSIC_UDP)
    # one OPT: root owner, TYPE 41, CLASS = UDP size, TTL = ext-rcode/version/flags, RDLEN
    o = qend
    if o + 11 > n or data[o] != 0 or data[o + 1] != 0 or data[o + 2] != 41:
        return None
    if data[o + 6] != 0:  # EDNS version other than 0 wants BADVERS: slow path
        return None
    rdlen = (data[o + 9] << 8) | data[o + 10]
    if o + 11 + rdlen != n:
        return None
    udp = (data[o + 3] << 8) | data[o + 4]
    # RFC 6891: what fits is the smaller of the client's size and ours
    if udp < CLASSIC_UDP:
        udp = CLASSIC_UDP
    elif udp > EDNS_PAYLOAD:
        udp = EDNS_PAYLOAD
    return Question(data[12:qn_end].lower() + data[qn_end:qend] + b"\x01", qend, udp)


def key_for(qname: dns.name.Name, qtype: int, qclass: int, edns: bool) -> bytes:
    """The cache key for a question, as ``parse_query`` computes it from the wire."""
    return (qname.to_wire().lower() + struct.pack("!HH", qtype, qclass)
            + (b"\x01" if edns else b"\x00"))


class Prebuilt(NamedTuple):
    """A response rendered once, to be sent around any query's ID and question."""

    hdr: bytes          # flags + 4 counts (10 bytes), RD clear (a query's RD is copied in)
    tail: bytes         # everything after the question
    rcode: int
    size: int           # total size of the response on the wire
    edns: bool


def prebuild(response: dns.message.Message, shuffle: bool = True) -> Prebuilt:
    """Render a response (whose question is the lowercased query name) for splicing.

    dnspython compresses every owner name equal to the question into a pointer to
    offset 12; spliced after the query's own question, those names read back in
    the query's case.
    """
    wire = response.to_wire(max_size=65535, want_shuffle=shuffle)
    q = response.question[0]
    qlen = len(q.name.to_wire()) + 4
    hdr = wire[2:12]
    hdr = bytes([hdr[0] & ~_RD & 0xFF]) + hdr[1:]
    return Prebuilt(hdr, wire[12 + qlen:], response.rcode(), len(wire), response.edns >= 0)


def splice(data: bytes, q: Question, p: Prebuilt, tail: bytes | None = None) -> bytes:
    """The response to query ``data`` built from prebuilt ``p`` (or an answer cache Entry)."""
    hdr = p.hdr
    if data[2] & _RD:
        hdr = bytes((hdr[0] | _RD,)) + hdr[1:]
    return data[:2] + hdr + data[12:q.qend] + (tail if tail is not None else p.tail)


def truncated(data: bytes, qend: int, p: Prebuilt) -> bytes:
    """A TC=1 answer carrying only the question (and OPT): the client retries over TCP."""
    flags0 = p.hdr[0] | (data[2] & _RD) | 0x02
    counts = b"\x00\x01\x00\x00\x00\x00" + (b"\x00\x01" if p.edns else b"\x00\x00")
    return data[:2] + bytes([flags0, p.hdr[1]]) + counts + data[12:qend] + (OPT_RR if p.edns else b"")


def truncate_message(wire: bytes) -> bytes:
    """Truncate any rendered response to its header+question (+OPT), TC set.

    Used for slow-path answers (forwarded ones) that do not fit the client's UDP size.
    """
    msg = dns.message.from_wire(wire)
    msg.answer, msg.authority, msg.additional = [], [], []
    msg.flags |= dns.flags.TC
    return msg.to_wire()


def formerr(data: bytes) -> bytes | None:
    """FORMERR for a packet we could not parse, if it has a query header to answer; else None."""
    if len(data) < 12 or data[2] & _QR:
        return None  # too short to carry an ID, or a response: never answer those (loops)
    opcode = data[2] & _OPCODE
    flags0 = _QR | opcode | (data[2] & _RD)
    return data[:2] + bytes([flags0, dns.rcode.FORMERR]) + b"\x00" * 8


def servfail(data: bytes) -> bytes | None:
    """SERVFAIL for a query we failed to answer: the fault is ours, not the packet's."""
    out = formerr(data)
    return None if out is None else out[:3] + bytes([dns.rcode.SERVFAIL]) + out[4:]
