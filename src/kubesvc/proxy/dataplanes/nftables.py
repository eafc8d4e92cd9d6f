"""The nftables data plane: kube-proxy's ``ip kube-proxy`` table, applied with ``nft -f``.

What goes into the table is decided per service port in nft_rules.py; this
module owns the transactions. Every sync is one ``nft -f`` transaction (atomic:
packets see the old ruleset or the new one, never a mix):

* a *full* sync (the first one, after a failure, and the periodic drift repair)
  declares the table, (re)creates and flushes every chain it writes, flushes the
  shared verdict maps and refills them, and deletes per-service chains and
  affinity sets nobody wants any more — without ever deleting the table, so
  established traffic, conntrack NAT state and affinity entries survive a
  restart, and a restarted proxy converges to the same ruleset;
* a *partial* sync touches only the services that changed: flush and refill
  their chains, delete/add only their map elements, delete their stale chains.

Map keys (address . protocol . port) can in principle be claimed by two services
(the same externalIP on two services), and set elements (``hairpin-endpoints``)
by every service of a pod; the kernel holds one verdict per key, so every key
keeps its claimants, the first in name order wins, and an element goes only when
its last claimant does, in full and partial syncs alike.

The layout avoids per-service sets and per-endpoint chains (see nft_rules.py):
loading 10,000 services is linear, not quadratic, and the part of every partial
sync that grows with the table — the ``nft`` program reading all chains into its
cache before a transaction that adds rules or elements — is a third of what
kube-proxy's layout costs.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

from kubesvc.proxy.dataplanes.base import SyncResult, changed_services
from kubesvc.proxy.dataplanes.nft_rules import (BASE_CHAINS, BASE_RULES, FAMILY, MAPS, SETS, STATIC_CHAINS,
                                                STATIC_COMMENTS, TABLE, ServiceNft,
                                                is_service_chain, service_nft)
from kubesvc.proxy.model import DesiredState, ServiceEntry, ServicePortName

log = logging.getLogger(__name__)

T = f"{FAMILY} {TABLE}"
MapKey = tuple[str, str]          # (map, key)
Verdict = tuple[str, str]         # (verdict, comment)


def _element(key: str, verdict: Verdict) -> str:
    value, comment = verdict
    c = f' comment "{comment}"' if comment else ""
    return f"{key}{c} : {value}" if value else f"{key}{c}"  # no value: an element of a plain set


def _elements_cmd(op: str, by_map: dict[str, list[str]]) -> list[str]:
    # One command per map: nft parses and the kernel inserts a batch far faster than one per element.
    return [f"{op} element {T} {m} {{ {', '.join(items)} }}" for m, items in sorted(by_map.items()) if items]


class InProcessNft:
    """libnftables (what the ``nft`` program is built on) called in this process.

    Used for partial syncs: a small transaction then costs no fork of the proxy
    (~100 MB at 10,000 services) and no start-up of the nft program, about a third
    of a one-service change. Full syncs still run ``nft -f`` in a child process:
    parsing 10,000 services takes ~200 MB, which a child returns to the system.
    Calls run on one dedicated thread (a libnftables context is not shared between
    threads; ctypes releases the GIL, so the event loop keeps running).
    """

    def __init__(self) -> None:
        lib = ctypes.CDLL(ctypes.util.find_library("nftables") or "libnftables.so.1")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        for f in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, f).argtypes = [ctypes.c_void_p]
        for f in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, f).argtypes = [ctypes.c_void_p]
            getattr(lib, f).restype = ctypes.c_char_p
        self._lib = lib
        self._ctx = lib.nft_ctx_new(0)
        if not self._ctx:
            raise OSError("nft_ctx_new failed")
        # capture nft's messages instead of letting it print them
        lib.nft_ctx_buffer_output(self._ctx)
        lib.nft_ctx_buffer_error(self._ctx)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="libnftables")

    def _run(self, text: str) -> None:
        rc = self._lib.nft_run_cmd_from_buffer(self._ctx, text.encode())
        self._lib.nft_ctx_get_output_buffer(self._ctx)  # reads (and so resets) the buffers
        err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
        if rc != 0:
            raise RuntimeError(f"libnftables failed ({rc}): {err.strip()[:2000]}")

    async def run(self, text: str) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._run, text)


def in_process_nft() -> InProcessNft | None:
    try:
        return InProcessNft()
    except (OSError, AttributeError) as err:
        log.info("libnftables not usable (%s): every sync runs nft -f", err)
        return None


class NftablesDataPlane:
    """Programs kube-proxy's nftables layout; one ``nft -f`` transaction per sync."""

    name = "nftables"

    def __init__(self, cluster_cidr: str | None = "10.244.0.0/16", nft: str = "nft", in_process: bool = True,
                 cleanup_leftovers: bool = True):
        self.cluster_cidr = cluster_cidr
        self.nft = nft
        # remove the iptables and userspace modes' rules on the first sync (kube-proxy's
        # CleanupLeftovers): their DNATs would otherwise race ours at the same hook
        self.cleanup_leftovers = cleanup_leftovers
        self._lib = in_process_nft() if in_process else None
        self._applied: dict[ServicePortName, ServiceEntry] = {}
        self._nft: dict[ServicePortName, ServiceNft] = {}
        # every claimant of every map key, and what the kernel holds for it
        self._claims: dict[MapKey, dict[ServicePortName, Verdict]] = {}
        self._kernel_elements: dict[MapKey, Verdict] = {}
        self._known_chains: set[str] = set()   # per-service chains in the kernel
        self._known_sets: dict[str, int] = {}  # affinity sets in the kernel -> timeout (0 = unknown)
        # chains/sets/maps in our table that this layout never writes (an older layout, or
        # kube-proxy's own, e.g. its cluster-ips-check): removed by the next full sync
        self._foreign: dict[str, list[str]] = {}
        self._need_full = True
        self._rules = 0
        self.last_transaction = ""

    # -- what the table should hold ---------------------------------------
    def compute(self, desired: DesiredState, full: bool) -> tuple[bool, set[ServicePortName], dict]:
        """Recompute changed services; returns (full, changed, their previous ServiceNft)."""
        full = full or self._need_full
        new = desired.services
        changed = changed_services(desired, self._applied, full)
        previous: dict[ServicePortName, ServiceNft] = {}
        for spn in changed:
            before = self._nft.pop(spn, None)
            if before is not None:
                previous[spn] = before
                self._rules -= before.rule_count
                for m, k, _, _ in before.elements:
                    claims = self._claims.get((m, k))
                    if claims is not None:
                        claims.pop(spn, None)
                        if not claims:
                            del self._claims[(m, k)]
            entry = new.get(spn)
            if entry is not None:
                after = self._nft[spn] = service_nft(entry, self.cluster_cidr)
                self._rules += after.rule_count
                for m, k, v, c in after.elements:
                    self._claims.setdefault((m, k), {})[spn] = (v, c)
        self._applied = dict(new)
        return full, changed, previous

    def _effective(self, mk: MapKey) -> Verdict | None:
        claims = self._claims.get(mk)
        return claims[min(claims)] if claims else None

    # -- transactions (pure text) -----------------------------------------
    def render_full(self) -> str:
        """Everything, without deleting the table: chains flushed and refilled, maps refilled."""
        out = [f'add table {T} {{ comment "rules for kube-proxy" ; }}']
        foreign, self._foreign = self._foreign, {}
        stale = sorted(self._known_chains - {c for s in self._nft.values() for c in s.chains})
        # empty what goes first: nothing may point at a map, set or chain when it is deleted
        out += [f"flush chain {T} {c}" for c in (*foreign.get("chain", []), *stale)]
        for name, ctype, hook, prio in BASE_CHAINS:
            out.append(f"add chain {T} {name} {{ type {ctype} hook {hook} priority {prio} ; }}")
            out.append(f"flush chain {T} {name}")
        for name in STATIC_CHAINS:
            comment = f' {{ comment "{STATIC_COMMENTS[name]}" ; }}' if name in STATIC_COMMENTS else ""
            out.append(f"add chain {T} {name}{comment}")
            out.append(f"flush chain {T} {name}")
        for name, key, comment in MAPS:
            out.append(f'add map {T} {name} {{ type {key} : verdict ; comment "{comment}" ; }}')
            out.append(f"flush map {T} {name}")
        for name, key, comment in SETS:
            out.append(f'add set {T} {name} {{ type {key} ; comment "{comment}" ; }}')
            out.append(f"flush set {T} {name}")
        out += [f"add rule {T} {chain} {rule}" for name in STATIC_CHAINS for chain, rule in
                ((name, r) for r in STATIC_CHAINS[name])]
        out += [f"add rule {T} {chain} {rule}" for chain, rule in BASE_RULES]
        wanted_chains: set[str] = set()
        wanted_sets: dict[str, int] = {}
        for spn in sorted(self._nft):
            s = self._nft[spn]
            for set_name, timeout in s.affinity_sets.items():
                known = self._known_sets.get(set_name)
                if known is not None and known not in (0, timeout):
                    out += self._flush_chains_using(set_name)
                    out.append(f"delete set {T} {set_name}")
                out.append(self._add_set(set_name, timeout))
                wanted_sets[set_name] = timeout
            for chain, rules in s.chains.items():
                out.append(f"add chain {T} {chain}")
                out.append(f"flush chain {T} {chain}")
                out += [f"add rule {T} {chain} {r}" for r in rules]
                wanted_chains.add(chain)
        by_map: dict[str, list[str]] = {}
        self._kernel_elements = {}
        for mk in sorted(self._claims):
            verdict = self._effective(mk)
            if verdict is not None:
                by_map.setdefault(mk[0], []).append(_element(mk[1], verdict))
                self._kernel_elements[mk] = verdict
        out += _elements_cmd("add", by_map)
        out += [f"delete {kind} {T} {name}" for kind in ("map", "set") for name in foreign.get(kind, [])]
        out += [f"delete chain {T} {c}" for c in (*stale, *foreign.get("chain", []))]
        out += [f"delete set {T} {s}" for s in sorted(self._known_sets.keys() - wanted_sets.keys())]
        self._known_chains, self._known_sets = wanted_chains, wanted_sets
        return "\n".join(out) + "\n"

    def _flush_chains_using(self, set_name: str) -> list[str]:
        # only a service's own chains reference its affinity sets; they are rewritten anyway
        return [f"flush chain {T} {c}" for s in self._nft.values() if set_name in s.affinity_sets
                for c in s.chains if c in self._known_chains]

    @staticmethod
    def _add_set(name: str, timeout: int) -> str:
        # "dynamic" as kube-proxy: the kernel adds it for sets updated from the packet path anyway
        return f"add set {T} {name} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ; }}"

    def render_partial(self, changed: set[ServicePortName], previous: dict[ServicePortName, ServiceNft]) -> str:
        """Only the changed services: their chains, sets and map elements."""
        empty = ServiceNft()
        creates: list[str] = []
        flushes: list[str] = []
        rules: list[str] = []
        set_ops: list[str] = []
        stale_chains: list[str] = []
        stale_sets: list[str] = []
        touched: set[MapKey] = set()
        for spn in sorted(changed):
            before, after = previous.get(spn, empty), self._nft.get(spn, empty)
            replaced = False
            for set_name, timeout in after.affinity_sets.items():
                known = self._known_sets.get(set_name)
                if known == timeout:
                    continue
                if known is not None:  # a new timeout: sets cannot be changed, only replaced
                    set_ops.append(f"delete set {T} {set_name}")
                    replaced = True
                set_ops.append(self._add_set(set_name, timeout))
                self._known_sets[set_name] = timeout
            for chain, rs in after.chains.items():
                if chain not in self._known_chains:
                    creates.append(f"add chain {T} {chain}")
                    self._known_chains.add(chain)
                elif before.chains.get(chain) == rs and not replaced:
                    continue  # identical: leave it alone
                else:
                    flushes.append(f"flush chain {T} {chain}")
                rules += [f"add rule {T} {chain} {r}" for r in rs]
            for chain in before.chains:
                if chain not in after.chains and chain in self._known_chains:
                    flushes.append(f"flush chain {T} {chain}")
                    stale_chains.append(chain)
                    self._known_chains.discard(chain)
            for set_name in before.affinity_sets:
                if set_name not in after.affinity_sets and set_name in self._known_sets:
                    stale_sets.append(set_name)
                    del self._known_sets[set_name]
            touched.update((m, k) for m, k, _, _ in before.elements)
            touched.update((m, k) for m, k, _, _ in after.elements)
        deletes: dict[str, list[str]] = {}
        adds: dict[str, list[str]] = {}
        for mk in sorted(touched):
            old, new = self._kernel_elements.get(mk), self._effective(mk)
            if old == new:
                continue
            if old is not None:
                deletes.setdefault(mk[0], []).append(mk[1])
                del self._kernel_elements[mk]
            if new is not None:
                adds.setdefault(mk[0], []).append(_element(mk[1], new))
                self._kernel_elements[mk] = new
        # Order matters inside the transaction: chains exist before anything points at
        # them; references (rules, elements) go before what they referenced is deleted.
        out = [*creates, *flushes, *set_ops, *rules, *_elements_cmd("delete", deletes),
               *_elements_cmd("add", adds),
               *(f"delete chain {T} {c}" for c in stale_chains),
               *(f"delete set {T} {s}" for s in stale_sets)]
        return "\n".join(out) + "\n" if out else ""

    # -- the kernel -------------------------------------------------------
    async def _nft_run(self, *args: str, stdin: str | None = None) -> str:
        proc = await asyncio.create_subprocess_exec(
            self.nft, *args, stdin=asyncio.subprocess.PIPE if stdin is not None else None,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        if proc.returncode != 0:
            raise RuntimeError(f"nft {' '.join(args)} failed ({proc.returncode}): {err.decode().strip()[:2000]}")
        return out.decode()

    async def apply(self, text: str, small: bool = False) -> None:
        """One transaction: in this process when small and libnftables is there, else ``nft -f``."""
        self.last_transaction = text
        if small and self._lib is not None:
            await self._lib.run(text)
        else:
            await self._nft_run("-f", "-", stdin=text)

    async def learn_kernel(self) -> None:
        """What a previous run left in our table: per-service chains and affinity sets."""
        self._known_chains, self._known_sets, self._foreign = set(), {}, {}
        try:
            await self._learn_kernel()
        except (RuntimeError, ValueError) as err:
            # not knowing only means leftovers stay until a later full sync learns them
            log.warning("could not list table %s (%s); leftovers of a previous run are kept", T, err)

    async def _learn_kernel(self) -> None:
        tables = json.loads(await self._nft_run("-j", "list", "tables", FAMILY))
        if not any(o.get("table", {}).get("name") == TABLE for o in tables.get("nftables", [])):
            return
        ours = {"chain": {c[0] for c in BASE_CHAINS} | set(STATIC_CHAINS),
                "set": {name for name, _, _ in SETS}, "map": {name for name, _, _ in MAPS}}
        foreign: dict[str, list[str]] = {"chain": [], "set": [], "map": []}
        chains = json.loads(await self._nft_run("-j", "list", "chains", FAMILY))
        for o in chains.get("nftables", []):
            c = o.get("chain")
            if not c or c.get("table") != TABLE:
                continue
            if is_service_chain(c["name"]):
                self._known_chains.add(c["name"])
            elif c["name"] not in ours["chain"]:
                foreign["chain"].append(c["name"])
        for kind in ("set", "map"):
            listing = json.loads(await self._nft_run("-j", "-t", "list", f"{kind}s", FAMILY))
            for o in listing.get("nftables", []):
                s = o.get(kind)
                if not s or s.get("table") != TABLE:
                    continue
                if kind == "set" and s["name"].startswith("affinity-"):
                    self._known_sets[s["name"]] = int(s.get("timeout", 0) or 0)
                elif s["name"] not in ours[kind]:
                    foreign[kind].append(s["name"])
        self._foreign = {k: sorted(v) for k, v in foreign.items() if v}
        if self._foreign:
            log.info("removing what this layout does not write from table %s: %s", T, self._foreign)

    async def sync(self, desired: DesiredState, *, full: bool = False) -> SyncResult:
        t0 = time.perf_counter()
        first = self._need_full
        if first:
            if self.cleanup_leftovers:
                await remove_other_modes()
                self.cleanup_leftovers = False
            await self.learn_kernel()
        t_learn = time.perf_counter() - t0
        t0 = time.perf_counter()
        full, changed, previous = self.compute(desired, full)
        text = self.render_full() if full else self.render_partial(changed, previous)
        t1 = time.perf_counter()
        try:
            if text:
                await self.apply(text, small=not full and len(changed) <= 100)
        except Exception:
            self._need_full = True  # what the kernel holds is unknown now
            raise
        t2 = time.perf_counter()
        self._need_full = False
        return SyncResult(full=full, services_written=len(self._nft) if full else len(changed),
                          rules=self.rule_counts(), compute_seconds=t1 - t0, apply_seconds=t2 - t1,
                          other_seconds=t_learn)

    def rule_counts(self) -> dict[str, int]:
        static = sum(len(r) for r in STATIC_CHAINS.values()) + len(BASE_RULES)
        return {TABLE: static + self._rules}

    async def close(self) -> None:
        """Nothing to stop: the table stays so traffic survives a restart."""


async def remove_other_modes() -> None:
    """Delete what the iptables, ipvs and userspace modes left (kube-proxy's CleanupLeftovers):
    their DNATs and REJECTs would race ours at the same hooks."""
    if shutil.which("iptables-restore") is None:
        return
    from kubesvc.proxy.dataplanes.cleanup import remove_leftovers
    from kubesvc.proxy.dataplanes.iptables import detect_backend
    backend, _ = await asyncio.to_thread(detect_backend, "auto")
    await remove_leftovers(backend, "nftables")


async def remove_table(nft: str = "nft") -> bool:
    """Delete this mode's table (for the other modes' CleanupLeftovers); True when there was one."""
    if shutil.which(nft) is None:
        return False
    p = await asyncio.create_subprocess_exec(nft, "delete", "table", FAMILY, TABLE,
                                             stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return await p.wait() == 0


def available() -> bool:
    return os.geteuid() == 0 and shutil.which("nft") is not None


def canonical(elements: dict[MapKey, Verdict]) -> list[str]:
    """Map contents as sorted lines (for tests comparing partial and full results)."""
    return [f"{m} {_element(k, v)}" for (m, k), v in sorted(elements.items())]
