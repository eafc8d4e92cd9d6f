"""Stale UDP conntrack cleanup: DNS must not black-hole after a DNS pod moves.

UDP has no connection end, so a conntrack entry DNATed to a removed endpoint
keeps sending a client's packets to nowhere until it times out. As kube-proxy
does, after each sync: for UDP service ports whose endpoint went away, delete the
entries NATed to it; for UDP service ports that gained their first endpoint,
delete entries to the service address (they recorded the REJECT). Uses the
`conntrack` CLI, like kube-proxy did for years.
"""

from __future__ import annotations

import asyncio
import logging
import shutil

from kubesvc.proxy.model import ServiceEntry, ServicePortName

log = logging.getLogger(__name__)


def stale_flows(old: dict[ServicePortName, ServiceEntry], new: dict[ServicePortName, ServiceEntry]
                ) -> list[list[str]]:
    """conntrack argument lists to run for the change old → new (pure, for tests)."""
    cmds: list[list[str]] = []
    for spn, before in old.items():
        if before.port.protocol != "UDP":
            continue
        after = new.get(spn)
        gone = {e.ip for e in before.endpoints.all} - {e.ip for e in (after.endpoints.all if after else ())}
        sp = before.port
        for ip in sorted(gone):
            for dst in (sp.cluster_ip, *sp.external_ips, *sp.load_balancer_ips):
                cmds.append(["-D", "-p", "udp", "--orig-dst", dst, "--dst-nat", ip])
            if sp.node_port:
                cmds.append(["-D", "-p", "udp", "--dport", str(sp.node_port), "--dst-nat", ip])
    for spn, after in new.items():
        if after.port.protocol != "UDP" or not after.endpoints.all:
            continue
        before = old.get(spn)
        if before is None or not before.endpoints.all:
            sp = after.port
            for dst in (sp.cluster_ip, *sp.external_ips, *sp.load_balancer_ips):
                cmds.append(["-D", "-p", "udp", "--orig-dst", dst])
            if sp.node_port:
                cmds.append(["-D", "-p", "udp", "--dport", str(sp.node_port)])
    return cmds


class ConntrackCleaner:
    """Runs the deletions; a missing conntrack tool is reported once, not fatal."""

    def __init__(self) -> None:
        self.tool = shutil.which("conntrack")
        self._warned = False

    async def cleanup(self, old: dict[ServicePortName, ServiceEntry],
                      new: dict[ServicePortName, ServiceEntry]) -> int:
        cmds = stale_flows(old, new)
        if not cmds:
            return 0
        if self.tool is None:
            if not self._warned:
                log.warning("conntrack tool not found: stale UDP flows will only expire")
                self._warned = True
            return 0
        for args in cmds:
            p = await asyncio.create_subprocess_exec(self.tool, *args, stdout=asyncio.subprocess.DEVNULL,
                                                     stderr=asyncio.subprocess.DEVNULL)
            await p.wait()  # exit 1 = nothing matched: fine
        return len(cmds)
