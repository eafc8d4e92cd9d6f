"""Removing what the other proxy modes left in the kernel (kube-proxy's CleanupLeftovers).

Another mode's chains act at the same hooks as ours: the iptables mode's DNATs would
take ClusterIP traffic before IPVS or the userspace REDIRECTs see it, its filter
REJECTs would refuse services that now have endpoints, userspace REDIRECTs left
behind send traffic to a relay that no longer exists. A proxy starting in one mode
therefore removes, in one iptables-restore, every chain that another mode owns and
it does not, and every rule elsewhere that jumps into one of them:

- each mode's chains are listed once, here (``OWNED``), by table; a name two modes
  share (KUBE-SERVICES, KUBE-FORWARD, ...) is kept by a mode that owns it: that mode
  rewrites it on its first sync;
- a rule that jumps (``-j`` or ``-g``) into a removed chain, or (for a mode other
  than ipvs) matches one of the ipvs mode's ipsets, is deleted wherever it
  is: in a built-in chain, in someone else's chain (both get ``-D``), or in one of
  the starting mode's own chains, which is flushed instead (it is rewritten anyway,
  and ten thousand ``-D`` would cost seconds);
- a jump from a built-in chain into a chain the starting mode keeps is deleted when
  it is another mode's known jump and not one of the starting mode's own (the
  iptables mode's "kubernetes load balancer firewall" jumps into KUBE-PROXY-FIREWALL,
  when ipvs writes its "kube-proxy firewall rules" ones). Jumps are compared as
  iptables-save prints them, token by token.

A mode other than ipvs also destroys the ipvs mode's ipsets (once no rule uses them)
and deletes kube-ipvs0, whose addresses would otherwise stay local to the node.
IPVS virtual servers themselves are left alone, as kube-proxy leaves them outside
``--cleanup``: nothing reaches them once kube-ipvs0 is gone.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shlex

from kubesvc.proxy.dataplanes.iptables import PER_SERVICE_PREFIXES, Backend, chain_names

log = logging.getLogger(__name__)

BUILTIN = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}
MODES = ("userspace", "iptables", "ipvs", "nftables")

# Chains each mode writes, by table (a name ending in "-" is a prefix). nftables writes none.
OWNED: dict[str, dict[str, tuple[str, ...]]] = {
    "userspace": {"nat": ("KUBE-PORTALS-CONTAINER", "KUBE-PORTALS-HOST"),
                  "filter": ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES")},
    "iptables": {"nat": ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ",
                         *PER_SERVICE_PREFIXES),
                 "filter": ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS", "KUBE-FORWARD",
                            "KUBE-PROXY-FIREWALL")},
    "ipvs": {"nat": ("KUBE-SERVICES", "KUBE-POSTROUTING", "KUBE-NODE-PORT", "KUBE-LOAD-BALANCER",
                     "KUBE-MARK-MASQ"),
             "filter": ("KUBE-FORWARD", "KUBE-NODE-PORT", "KUBE-PROXY-FIREWALL", "KUBE-SOURCE-RANGES-FIREWALL",
                        "KUBE-IPVS-FILTER", "KUBE-IPVS-OUT-FILTER")},
    "nftables": {},
}
TABLES = ("nat", "filter")
_TARGET = re.compile(r" -[jg] (\S+)")
_MATCH_SET = re.compile(r" --match-set (\S+)")


def _owned(name: str, owned: tuple[str, ...]) -> bool:
    return any(name == o or (o.endswith("-") and name.startswith(o)) for o in owned)


def mode_jumps(mode: str) -> list[tuple[str, str, str]]:
    """The (table, built-in chain, rule spec) jumps `mode` ensures (its own module's JUMPS)."""
    import importlib
    module = {"iptables": "iptables", "ipvs": "ipvs", "userspace": "userspace"}.get(mode)
    if module is None:
        return []
    try:
        return importlib.import_module(f"kubesvc.proxy.dataplanes.{module}").JUMPS
    except ImportError as err:  # a mode that cannot load cannot have left jumps we know of
        log.warning("cleanup: cannot read the %s mode's jumps: %s", mode, err)
        return []


def chains_to_remove(table: str, chains, mode: str) -> list[str]:
    """Of `chains` (names present in `table`), those another mode owns and `mode` does not."""
    ours = OWNED[mode].get(table, ())
    theirs = tuple(c for m, owned in OWNED.items() if m != mode for c in owned.get(table, ()))
    return [c for c in chains if _owned(c, theirs) and not _owned(c, ours)]


def removal_restore(saved: dict[str, str], mode: str) -> str:
    """Restore input removing the other modes' chains and every jump into them before `mode`
    runs (see the module docstring). `saved` is iptables-save output per table."""
    if mode not in OWNED:
        raise ValueError(f"unknown proxy mode {mode!r}")
    own = {(t, c, tuple(shlex.split(spec))) for t, c, spec in mode_jumps(mode)}
    # the other modes' known jumps that are not also ours (ipvs and iptables share the nat ones)
    foreign = {(t, c, tuple(shlex.split(spec))) for m in MODES if m != mode
               for t, c, spec in mode_jumps(m)} - own
    # the ipvs mode's ipsets: a rule still naming one keeps the set from being destroyed
    from kubesvc.proxy.dataplanes.ipset import SETS
    foreign_sets = set() if mode == "ipvs" else set(SETS)
    out: list[str] = []
    for table in TABLES:
        text = saved.get(table, "")
        present = re.findall(r"^:(\S+)", text, re.M)
        remove = set(chains_to_remove(table, present, mode))
        ours = OWNED[mode].get(table, ())
        flush: dict[str, None] = {}
        deletes: list[str] = []
        for line in text.splitlines():
            if not line.startswith("-A "):
                continue
            chain = line.split(None, 2)[1]
            if chain in remove or chain in flush:
                continue
            m = _TARGET.search(line)
            if m is None:
                continue
            sm = _MATCH_SET.search(line) if foreign_sets else None
            if m.group(1) in remove or (sm is not None and sm.group(1) in foreign_sets):
                if chain not in BUILTIN and _owned(chain, ours):
                    flush[chain] = None  # ours, and rewritten on our first sync anyway
                else:
                    deletes.append("-D" + line[2:])
            elif chain in BUILTIN and (table, chain, tuple(shlex.split(line)[2:])) in foreign:
                deletes.append("-D" + line[2:])  # another mode's jump into a chain we keep
        if not (remove or deletes):
            continue
        names = sorted(remove)
        out.append(f"*{table}")
        out.extend(f":{c} - [0:0]" for c in [*names, *flush])
        out.extend(deletes)
        out.extend(f"-X {c}" for c in names)
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def leftover_restore(saved: dict[str, str], other_mode: str) -> str:
    """The older two-mode form: remove `other_mode`'s rules for the mode it pairs with
    (userspace ↔ iptables). New code calls removal_restore(saved, starting_mode)."""
    return removal_restore(saved, {"userspace": "iptables", "iptables": "userspace"}[other_mode])


async def _save(backend: Backend, table: str) -> str:
    p = await asyncio.create_subprocess_exec(backend.save, "-t", table, stdout=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.DEVNULL)
    return (await p.communicate())[0].decode()


async def remove_leftovers(backend: Backend, mode: str) -> bool:
    """Remove the other modes' rules before `mode` starts; True when something was removed."""
    saved = {}
    for table in TABLES:
        # the names first: cheap, and usually there is nothing to remove, so nothing to read
        # back (another mode that ran always leaves chains only it owns, e.g. KUBE-NODE-PORT)
        if chains_to_remove(table, await chain_names(backend, table), mode):
            saved[table] = await _save(backend, table)
    text = removal_restore(saved, mode)
    removed = False
    if text:
        rc, err = await backend.restore_noflush(text)
        if rc != 0:
            log.warning("could not remove the other proxy modes' leftover rules: %s", err)
            return False
        removed = True
        log.info("removed the other proxy modes' leftover rules before starting in %s mode", mode)
    if mode != "ipvs":
        removed = await remove_ipvs_leftovers() or removed
    return removed


async def remove_ipvs_leftovers() -> bool:
    """The ipvs mode's ipsets and kube-ipvs0, once its rules are gone; True when something went."""
    import shutil
    from kubesvc.proxy.dataplanes import ipset as ipsets
    from kubesvc.proxy.dataplanes.ipvs_netlink import DUMMY_DEVICE
    removed = False
    if shutil.which("ipset"):
        p = await asyncio.create_subprocess_exec("ipset", "list", "-n", stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.DEVNULL)
        present = set((await p.communicate())[0].decode().split())
        if present & ipsets.SETS.keys():
            failed = await ipsets.destroy_ours(present)
            if failed:
                log.warning("could not destroy the ipvs mode's ipsets: %s", "; ".join(failed))
            removed = True
    p = await asyncio.create_subprocess_exec("ip", "link", "del", DUMMY_DEVICE, stdout=asyncio.subprocess.DEVNULL,
                                             stderr=asyncio.subprocess.DEVNULL)
    if await p.wait() == 0:
        log.info("deleted %s, left by the ipvs mode", DUMMY_DEVICE)
        removed = True
    return removed
