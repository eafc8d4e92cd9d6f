"""The kernel side of the ipvs data plane: IPVS virtual servers and kube-ipvs0 addresses.

Writes go over netlink in *batches*: many requests in one ``sendmsg`` (the kernel
runs every message of a datagram in turn, ``netlink_rcv_skb``), with an ACK asked
only for the last one, so errors come back tagged by sequence number. pyroute2
resolves the IPVS generic-netlink family and creates the dummy device; the
per-request messages are packed here with ``struct`` because pyroute2's IPVS
API is one request/response round trip per call (30,000 for 10,000 services × 2
endpoints), its ``IPVSDest`` defaults to direct routing (fwd_method 3) where
kube-proxy uses masquerade (0), and its ``"update"`` command sends a delete. Attribute numbers are the kernel's (include/uapi/linux/ip_vs.h).

Reads: a full sync uses ``/proc/net/ip_vs`` (one read lists every virtual
server with its real servers, weights and connection counts, as ``ipvsadm -Ln``
does) and ``ip -o addr``; both are per network namespace. Checking whether a
draining real server still has connections asks only its own virtual server
(an IPVS_CMD_GET_DEST dump, ``ipvsadm -Ln -t VIP:PORT``), so the cost follows
what drains, not the size of the table.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, NamedTuple

DUMMY_DEVICE = "kube-ipvs0"

# netlink
NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x100, 0x200, 0x400
NLM_F_DUMP = 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
SOL_NETLINK, NETLINK_CAP_ACK, NETLINK_EXT_ACK = 270, 10, 11
RTM_NEWADDR, RTM_DELADDR = 20, 21
NETLINK_GENERIC = 16  # not in the socket module
IFA_ADDRESS, IFA_LOCAL = 1, 2
# IPVS generic netlink (include/uapi/linux/ip_vs.h)
IPVS_CMD_NEW_SERVICE, IPVS_CMD_SET_SERVICE, IPVS_CMD_DEL_SERVICE = 1, 2, 3
IPVS_CMD_NEW_DEST, IPVS_CMD_SET_DEST, IPVS_CMD_DEL_DEST, IPVS_CMD_GET_DEST = 5, 6, 7, 8
IPVS_CMD_SET_CONFIG = 12
IPVS_CMD_ATTR_SERVICE, IPVS_CMD_ATTR_DEST = 1, 2
IPVS_CMD_ATTR_TIMEOUT_TCP, IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, IPVS_CMD_ATTR_TIMEOUT_UDP = 4, 5, 6
SVC_AF, SVC_PROTOCOL, SVC_ADDR, SVC_PORT, SVC_FWMARK, SVC_SCHED, SVC_FLAGS, SVC_TIMEOUT, SVC_NETMASK = range(1, 10)
DEST_ADDR, DEST_PORT, DEST_FWD, DEST_WEIGHT, DEST_UTHRESH, DEST_LTHRESH = range(1, 7)
DEST_ACTIVE_CONNS, DEST_INACT_CONNS = 7, 8
DEST_ADDR_FAMILY = 11
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER
IP_VS_CONN_F_MASQ = 0
FLAG_PERSISTENT = 0x1
FLAG_SOURCE_HASH = 0x10  # "mh" needs it (kube-proxy's FlagSourceHash)
PROTOCOLS = {"TCP": socket.IPPROTO_TCP, "UDP": socket.IPPROTO_UDP, "SCTP": 132}
PROTO_NAMES = {v: k for k, v in PROTOCOLS.items()}


class VSKey(NamedTuple):
    """One IPVS virtual server: protocol, address, port (kube-proxy's VirtualServer.String())."""

    protocol: str
    ip: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{host}:{self.port}/{self.protocol}"


class Dest(NamedTuple):
    """One real server of a virtual server."""

    ip: str
    port: int


@dataclass(frozen=True, slots=True)
class VSSpec:
    """What a virtual server is configured with (its real servers are kept apart)."""

    scheduler: str = "rr"
    flags: int = 0
    timeout: int = 0  # persistence timeout, seconds


@dataclass
class KernelVS:
    """A virtual server as read back from the kernel."""

    spec: VSSpec
    dests: dict[Dest, tuple[int, int, int]] = field(default_factory=dict)  # dest -> (weight, active, inactive)


# -- message packing --------------------------------------------------------------

def _attr(kind: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * (-n & 3)


def _u16(kind: int, v: int) -> bytes:
    return _attr(kind, struct.pack("=H", v))


def _u32(kind: int, v: int) -> bytes:
    return _attr(kind, struct.pack("=I", v))


def _be16(kind: int, v: int) -> bytes:
    return _attr(kind, struct.pack("!H", v))


def _family_addr(ip: str) -> tuple[int, bytes]:
    if ":" in ip:
        return socket.AF_INET6, socket.inet_pton(socket.AF_INET6, ip)
    return socket.AF_INET, socket.inet_aton(ip)


def _svc_key_attrs(key: VSKey) -> bytes:
    af, raw = _family_addr(key.ip)
    return (_u16(SVC_AF, af) + _u16(SVC_PROTOCOL, PROTOCOLS[key.protocol]) + _attr(SVC_ADDR, raw)
            + _be16(SVC_PORT, key.port))


def _svc_full_attrs(key: VSKey, spec: VSSpec) -> bytes:
    af, _ = _family_addr(key.ip)
    netmask = struct.pack("!I", 0xFFFFFFFF) if af == socket.AF_INET else struct.pack("=I", 128)
    return (_svc_key_attrs(key) + _attr(SVC_SCHED, spec.scheduler.encode() + b"\0")
            + _attr(SVC_FLAGS, struct.pack("=II", spec.flags, 0xFFFFFFFF))
            + _u32(SVC_TIMEOUT, spec.timeout) + _attr(SVC_NETMASK, netmask))


# An IPv4 real server's attributes in one pack (address, port, family; then forwarding method,
# weight and thresholds): 30,000 of them per 10,000-service sync, attribute by attribute
# they were the larger part of building the requests.
# (The nest header IPVS_CMD_ATTR_DEST is part of the pack.)
_DEST4_KEY = struct.Struct("=HHHH4sHHH2xHHH2x")
_DEST4_FULL = struct.Struct("=HHHH4sHHH2xHHH2xHHIHHIHHIHHI")


def _dest_nest(dest: Dest, weight: int | None) -> bytes:
    """IPVS_CMD_ATTR_DEST with the real server's attributes (weight None: the key only)."""
    af, raw = _family_addr(dest.ip)
    if af == socket.AF_INET:
        port = socket.htons(dest.port)
        if weight is None:
            return _DEST4_KEY.pack(_DEST4_KEY.size, IPVS_CMD_ATTR_DEST,
                                   8, DEST_ADDR, raw, 6, DEST_PORT, port, 6, DEST_ADDR_FAMILY, af)
        return _DEST4_FULL.pack(_DEST4_FULL.size, IPVS_CMD_ATTR_DEST,
                                8, DEST_ADDR, raw, 6, DEST_PORT, port, 6, DEST_ADDR_FAMILY, af,
                                8, DEST_FWD, IP_VS_CONN_F_MASQ, 8, DEST_WEIGHT, weight,
                                8, DEST_UTHRESH, 0, 8, DEST_LTHRESH, 0)
    out = _attr(DEST_ADDR, raw) + _be16(DEST_PORT, dest.port) + _u16(DEST_ADDR_FAMILY, af)
    if weight is not None:
        out += (_u32(DEST_FWD, IP_VS_CONN_F_MASQ) + _u32(DEST_WEIGHT, weight)
                + _u32(DEST_UTHRESH, 0) + _u32(DEST_LTHRESH, 0))
    return _attr(IPVS_CMD_ATTR_DEST, out)


@lru_cache(maxsize=1 << 16)
def _svc_nest(key: VSKey) -> bytes:
    """IPVS_CMD_ATTR_SERVICE naming a virtual server (a key is named once per real server)."""
    return _attr(IPVS_CMD_ATTR_SERVICE, _svc_key_attrs(key))


class Describe(NamedTuple):
    """A request's description, formatted only when an error message needs it (30,000
    eagerly formatted strings were a tenth of a 10,000-service sync)."""

    fmt: str
    args: tuple

    def __str__(self) -> str:
        return self.fmt.format(*self.args)


class Request(NamedTuple):
    """One netlink request of a batch: its type, flags and body (after nlmsghdr)."""

    msg_type: int
    flags: int
    body: bytes
    what: str | Describe  # for error messages


class NetlinkError(OSError):
    """A batch had requests the kernel refused; `failures` holds (request, errno)."""

    def __init__(self, failures: list[tuple[Request, int]]):
        self.failures = failures
        first = "; ".join(f"{r.what}: {os.strerror(e)}" for r, e in failures[:5])
        more = f" (+{len(failures) - 5} more)" if len(failures) > 5 else ""
        super().__init__(f"{len(failures)} netlink request(s) failed: {first}{more}")


class NetlinkBatcher:
    """A raw netlink socket sending requests many per datagram; see the module docstring."""

    def __init__(self, protocol: int, batch_bytes: int = 256 * 1024):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
        self.sock.bind((0, 0))
        for opt, force, size in ((socket.SO_SNDBUF, 32, 4 << 20), (socket.SO_RCVBUF, 33, 8 << 20)):
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, force, size)  # SO_*BUFFORCE: root may exceed the sysctl cap
            except OSError:
                self.sock.setsockopt(socket.SOL_SOCKET, opt, size)
        try:  # acks carry only the header, not the whole request back
            self.sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        except OSError:
            pass
        self.batch_bytes = batch_bytes
        self.seq = 0
        self.sent = 0  # requests sent in total (benchmarks report it)

    def close(self) -> None:
        self.sock.close()

    def run(self, requests: Iterable[Request], ignore: tuple[int, ...] = ()) -> list[tuple[Request, int]]:
        """Send every request; returns the failures whose errno is not in `ignore`."""
        failures: list[tuple[Request, int]] = []
        batch: list[bytes] = []
        by_seq: dict[int, Request] = {}
        size = 0
        pending: list[Request] = list(requests)
        for i, req in enumerate(pending):
            self.seq = (self.seq + 1) & 0xFFFFFFFF or 1
            last = i == len(pending) - 1 or size + 64 + len(req.body) > self.batch_bytes
            flags = req.flags | NLM_F_REQUEST | (NLM_F_ACK if last else 0)
            batch.append(struct.pack("=IHHII", 16 + len(req.body), req.msg_type, flags, self.seq, 0) + req.body)
            by_seq[self.seq] = req
            size += 16 + len(req.body)
            if last:
                failures += self._flush(batch, by_seq, self.seq, ignore)
                batch, by_seq, size = [], {}, 0
        self.sent += len(pending)
        return failures

    def dump(self, req: Request) -> tuple[list[bytes], int]:
        """One NLM_F_DUMP request: (the bodies of its reply messages, errno or 0).

        Dumps run one at a time: the kernel keeps a single dump in progress per socket."""
        self.seq = (self.seq + 1) & 0xFFFFFFFF or 1
        seq = self.seq
        self.sock.send(struct.pack("=IHHII", 16 + len(req.body), req.msg_type, req.flags | NLM_F_REQUEST | NLM_F_DUMP,
                                   seq, 0) + req.body)
        self.sent += 1
        bodies: list[bytes] = []
        while True:
            data = self.sock.recv(1 << 20)
            off = 0
            while off + 16 <= len(data):
                length, mtype, _flags, mseq, _pid = struct.unpack_from("=IHHII", data, off)
                if length < 16:
                    break
                if mseq == seq:
                    if mtype == NLMSG_DONE:
                        return bodies, 0
                    if mtype == NLMSG_ERROR:
                        (err,) = struct.unpack_from("=i", data, off + 16)
                        if err:
                            return bodies, -err
                    else:
                        bodies.append(data[off + 16:off + length])
                off += (length + 3) & ~3

    def _flush(self, batch: list[bytes], by_seq: dict[int, Request], last_seq: int,
               ignore: tuple[int, ...]) -> list[tuple[Request, int]]:
        self.sock.send(b"".join(batch))
        failures = []
        while True:
            data = self.sock.recv(1 << 20)
            off = 0
            done = False
            while off + 16 <= len(data):
                length, mtype, _flags, seq, _pid = struct.unpack_from("=IHHII", data, off)
                if mtype == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", data, off + 16)
                    if err and -err not in ignore and seq in by_seq:
                        failures.append((by_seq[seq], -err))
                    if seq == last_seq:
                        done = True
                off += (length + 3) & ~3
                if length == 0:
                    break
            if done:
                return failures


# -- IPVS ---------------------------------------------------------------------------

def ipvs_family_id() -> int:
    """The IPVS generic-netlink family id; raises when the kernel has no IPVS (ENOENT)."""
    from pyroute2.netlink.generic import GenericNetlinkSocket
    from pyroute2.netlink.generic.ipvs import ipvsmsg
    sock = GenericNetlinkSocket()
    try:
        sock.bind("IPVS", ipvsmsg)
        family = sock.prid
        if not isinstance(family, int):
            raise OSError(f"IPVS generic netlink family id unreadable ({family!r})")
        return family
    finally:
        sock.close()


_GENL_HDR = {cmd: struct.pack("=BBH", cmd, 1, 0) for cmd in range(1, 18)}  # cmd, version 1


class IPVSClient:
    """Programs IPVS virtual servers and real servers in batches."""

    def __init__(self) -> None:
        self.family = ipvs_family_id()
        self.nl = NetlinkBatcher(NETLINK_GENERIC)

    def close(self) -> None:
        self.nl.close()

    def _genl(self, cmd: int, body: bytes, what: str | Describe) -> Request:
        return Request(self.family, 0, _GENL_HDR[cmd] + body, what)

    def add_service(self, key: VSKey, spec: VSSpec) -> Request:
        return self._genl(IPVS_CMD_NEW_SERVICE, _attr(IPVS_CMD_ATTR_SERVICE, _svc_full_attrs(key, spec)),
                          Describe("add virtual server {}", (key,)))

    def set_service(self, key: VSKey, spec: VSSpec) -> Request:
        return self._genl(IPVS_CMD_SET_SERVICE, _attr(IPVS_CMD_ATTR_SERVICE, _svc_full_attrs(key, spec)),
                          Describe("update virtual server {}", (key,)))

    def del_service(self, key: VSKey) -> Request:
        return self._genl(IPVS_CMD_DEL_SERVICE, _svc_nest(key),
                          Describe("delete virtual server {}", (key,)))

    def add_dest(self, key: VSKey, dest: Dest, weight: int = 1) -> Request:
        return self._genl(IPVS_CMD_NEW_DEST, _svc_nest(key) + _dest_nest(dest, weight),
                          Describe("add real server {}:{} to {}", (dest.ip, dest.port, key)))

    def set_dest(self, key: VSKey, dest: Dest, weight: int) -> Request:
        return self._genl(IPVS_CMD_SET_DEST, _svc_nest(key) + _dest_nest(dest, weight),
                          Describe("set weight {} of {}:{} in {}", (weight, dest.ip, dest.port, key)))

    def del_dest(self, key: VSKey, dest: Dest) -> Request:
        return self._genl(IPVS_CMD_DEL_DEST, _svc_nest(key) + _dest_nest(dest, None),
                          Describe("delete real server {}:{} from {}", (dest.ip, dest.port, key)))

    def set_timeouts(self, tcp: int, tcpfin: int, udp: int) -> Request:
        """`ipvsadm --set tcp tcpfin udp` (0 keeps the current value)."""
        return self._genl(IPVS_CMD_SET_CONFIG, _u32(IPVS_CMD_ATTR_TIMEOUT_TCP, tcp)
                          + _u32(IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, tcpfin) + _u32(IPVS_CMD_ATTR_TIMEOUT_UDP, udp),
                          "set IPVS timeouts")

    def run(self, requests: Iterable[Request], ignore: tuple[int, ...] = ()) -> list[tuple[Request, int]]:
        return self.nl.run(requests, ignore)

    def get_dests_request(self, key: VSKey) -> Request:
        return self._genl(IPVS_CMD_GET_DEST, _svc_nest(key),
                          Describe("list real servers of {}", (key,)))

    def get_dests(self, keys: Iterable[VSKey]) -> dict[VSKey, dict[Dest, tuple[int, int, int]]]:
        """The real servers of just these virtual servers: dest -> (weight, active, inactive).

        A virtual server that no longer exists is absent from the result."""
        out: dict[VSKey, dict[Dest, tuple[int, int, int]]] = {}
        for key in keys:
            bodies, err = self.nl.dump(self.get_dests_request(key))
            if err in (errno.ESRCH, errno.ENOENT):
                continue
            if err:
                raise OSError(err, f"listing real servers of {key}: {os.strerror(err)}")
            out[key] = dict(parse_dest(b) for b in bodies)
        return out


def _attrs(data: bytes, off: int = 0, end: int | None = None) -> dict[int, bytes]:
    """Netlink attributes in data[off:end] by type (flags stripped)."""
    end = len(data) if end is None else end
    out = {}
    while off + 4 <= end:
        n, kind = struct.unpack_from("=HH", data, off)
        if n < 4:
            break
        out[kind & NLA_TYPE_MASK] = data[off + 4:off + n]
        off += (n + 3) & ~3
    return out


def parse_dest(body: bytes) -> tuple[Dest, tuple[int, int, int]]:
    """One IPVS_CMD_NEW_DEST reply of a GET_DEST dump (genl header + IPVS_CMD_ATTR_DEST)."""
    dest = _attrs(_attrs(body, 4)[IPVS_CMD_ATTR_DEST])
    family = struct.unpack("=H", dest[DEST_ADDR_FAMILY])[0] if DEST_ADDR_FAMILY in dest else socket.AF_INET
    raw = dest[DEST_ADDR]
    ip = socket.inet_ntop(family, raw[:4] if family == socket.AF_INET else raw[:16])
    port = struct.unpack("!H", dest[DEST_PORT])[0]
    u32 = lambda kind: struct.unpack("=I", dest[kind][:4])[0] if kind in dest else 0  # noqa: E731
    return Dest(ip, port), (u32(DEST_WEIGHT), u32(DEST_ACTIVE_CONNS), u32(DEST_INACT_CONNS))


def _hexaddr(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
        return str(ipaddress.IPv6Address(host)), int(port, 16)
    host, _, port = text.partition(":")
    return socket.inet_ntoa(struct.pack("!I", int(host, 16))), int(port, 16)


def parse_proc_ip_vs(text: str, hz: int | None = None) -> dict[VSKey, KernelVS]:
    """/proc/net/ip_vs → virtual servers with their real servers.

    The proc file prints the persistence timeout in jiffies; pass `hz` to get
    seconds (None leaves the raw value, which callers then do not trust).
    """
    out: dict[VSKey, KernelVS] = {}
    current: KernelVS | None = None
    for line in text.splitlines():
        if line.startswith("  ->"):
            if current is None:
                continue
            parts = line.split()
            if len(parts) < 6 or parts[1] == "RemoteAddress:Port":
                continue
            ip, port = _hexaddr(parts[1])
            current.dests[Dest(ip, port)] = (int(parts[3]), int(parts[4]), int(parts[5]))
            continue
        parts = line.split()
        if not parts or parts[0] not in PROTOCOLS:
            current = None
            continue
        ip, port = _hexaddr(parts[1])
        flags, timeout = 0, 0
        if "persistent" in parts:
            flags |= FLAG_PERSISTENT
            raw = int(parts[parts.index("persistent") + 1])
            timeout = raw // hz if hz else raw
        current = KernelVS(VSSpec(parts[2], flags, timeout))
        out[VSKey(parts[0], ip, port)] = current
    return out


def read_ipvs() -> dict[VSKey, KernelVS]:
    try:
        with open("/proc/net/ip_vs") as f:
            return parse_proc_ip_vs(f.read())
    except FileNotFoundError:
        return {}


# -- kube-ipvs0 -----------------------------------------------------------------------

class DummyDevice:
    """kube-ipvs0: a dummy link (left down, as kube-proxy leaves it) holding service addresses.

    An address on any link, up or not, gets a local route: the kernel then takes
    traffic to it into INPUT, where IPVS picks it up.
    """

    def __init__(self, name: str = DUMMY_DEVICE):
        self.name = name
        self.index = self.ensure()
        self.nl = NetlinkBatcher(socket.NETLINK_ROUTE)

    def ensure(self) -> int:
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=self.name)
            if not idx:
                try:
                    ipr.link("add", ifname=self.name, kind="dummy")
                except Exception as err:  # created meanwhile: fine
                    if getattr(err, "code", None) != errno.EEXIST:
                        raise
                idx = ipr.link_lookup(ifname=self.name)
            return idx[0]

    def close(self) -> None:
        self.nl.close()

    def addresses(self) -> set[str]:
        """The addresses bound to the device now."""
        out = subprocess.run(["ip", "-o", "addr", "show", "dev", self.name], capture_output=True, text=True).stdout
        return {line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3}

    def _req(self, kind: int, ip: str) -> Request:
        af, raw = _family_addr(ip)
        plen = 32 if af == socket.AF_INET else 128
        body = struct.pack("=BBBBI", af, plen, 0, 0, self.index) + _attr(IFA_LOCAL, raw) + _attr(IFA_ADDRESS, raw)
        flags = NLM_F_CREATE | NLM_F_REPLACE if kind == RTM_NEWADDR else 0
        return Request(kind, flags, body, Describe("{} {} on {}", ("bind" if kind == RTM_NEWADDR else "unbind", ip,
                                                                   self.name)))

    def bind(self, ips: Iterable[str]) -> list[tuple[Request, int]]:
        return self.nl.run((self._req(RTM_NEWADDR, ip) for ip in ips), ignore=(errno.EEXIST,))

    def unbind(self, ips: Iterable[str]) -> list[tuple[Request, int]]:
        return self.nl.run((self._req(RTM_DELADDR, ip) for ip in ips),
                           ignore=(errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENODEV))


def node_addresses(exclude_device: str = DUMMY_DEVICE) -> list[str]:
    """Local addresses NodePorts answer on: all but loopback, link-local and kube-ipvs0's.

    kube-proxy's ipvs mode (GetAllLocalAddressesExcept + isValidForSet).
    """
    out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True).stdout
    ips = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[1].rstrip(":").split("@")[0] == exclude_device:
            continue
        if parts[2] not in ("inet", "inet6"):
            continue
        ip = ipaddress.ip_address(parts[3].split("/")[0])
        if ip.is_loopback or ip.is_link_local or ip.is_multicast:
            continue
        ips.append(str(ip))
    return sorted(set(ips))


def set_sysctl(path: str, value: str) -> str | None:
    """Write /proc/sys/<path>; None on success, else why not."""
    try:
        with open(f"/proc/sys/{path}", "w") as f:
            f.write(value)
        return None
    except OSError as err:
        return f"{path}: {err.strerror}"
