"""Removing what another proxy mode left in the kernel (kube-proxy's CleanupLeftovers).

The iptables data plane's chains would DNAT ClusterIPs before the userspace
REDIRECTs could see them, and userspace REDIRECTs left behind would send
traffic to a relay that no longer exists: a proxy starting in one mode removes
the other mode's chains and the jumps into them, in one iptables-restore.
"""

from __future__ import annotations

import asyncio
import logging
import re

from kubesvc.proxy.dataplanes.iptables import PER_SERVICE_PREFIXES, Backend, chain_names

log = logging.getLogger(__name__)

BUILTIN = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

# chains each mode owns, by table; the filter KUBE-SERVICES / KUBE-EXTERNAL-SERVICES are shared
OWNED: dict[str, dict[str, tuple[str, ...]]] = {
    "userspace": {"nat": ("KUBE-PORTALS-CONTAINER", "KUBE-PORTALS-HOST")},
    "iptables": {"nat": ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ",
                         *PER_SERVICE_PREFIXES),
                 "filter": ("KUBE-FORWARD", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL")},
}


def _owned(name: str, owned: tuple[str, ...]) -> bool:
    return any(name == o or (o.endswith("-") and name.startswith(o)) for o in owned)


def leftover_restore(saved: dict[str, str], other_mode: str) -> str:
    """Restore input deleting `other_mode`'s chains and the built-in chains' jumps into them."""
    out: list[str] = []
    for table, owned in OWNED[other_mode].items():
        text = saved.get(table, "")
        chains = [m.group(1) for m in re.finditer(r"^:(\S+)", text, re.M) if _owned(m.group(1), owned)]
        if not chains:
            continue
        targets = set(chains)
        jumps = [line for line in text.splitlines()
                 if line.startswith("-A ") and line.split()[1] in BUILTIN
                 and re.search(r"-j (\S+)", line) and re.search(r"-j (\S+)", line).group(1) in targets]
        out.append(f"*{table}")
        out.extend(f":{c} - [0:0]" for c in chains)
        out.extend("-D" + line[2:] for line in jumps)
        out.extend(f"-X {c}" for c in chains)
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


async def remove_leftovers(backend: Backend, mode: str) -> bool:
    """Remove the other mode's rules before `mode` starts; True when something was removed."""
    other = "userspace" if mode == "iptables" else "iptables"
    saved = {}
    for table, owned in OWNED[other].items():
        if not any(_owned(c, owned) for c in await chain_names(backend, table)):
            continue  # the common case, and cheap: no rules to read back
        p = await asyncio.create_subprocess_exec(backend.save, "-t", table, stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.DEVNULL)
        saved[table] = (await p.communicate())[0].decode()
    text = leftover_restore(saved, other)
    if not text:
        return False
    rc, err = await backend.restore_noflush(text)
    if rc != 0:
        log.warning("could not remove %s mode's leftover rules: %s", other, err)
        return False
    log.info("removed the %s mode's leftover rules", other)
    return True
