"""`kubesvc explain svc/NAME`: the path a connection to a service takes on this node.

Hop by hop as the seed draws it (client → NodeIP:NodePort → ClusterIP:port →
PodIP:containerPort), each hop with what really carries it in the active proxy
mode — the iptables-save lines, nft rules, ipvsadm entries or the userspace
listener — plus each endpoint's readiness and the DNS names that resolve to the
service, asked of cluster DNS itself. Readable in a terminal, or `-o json`.

It reads, never writes: the API (service, EndpointSlices, pods, node) through the
kubeconfig `kubesvc up` wrote, and the kernel's tables through the same tools a
user would run. Run it where the proxy runs (the node) to see the rules.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

from kubesvc.up import rules as R
from kubesvc.up import state as upstate

ZONE = "cluster.local"


@dataclass
class EndpointInfo:
    ip: str
    port: int
    ready: bool
    serving: bool
    terminating: bool
    pod: str | None
    node: str | None
    rules: list[str] = field(default_factory=list)


@dataclass
class Hop:
    kind: str  # entry, NodePort, ClusterIP, Endpoints, Headless
    to: str
    rules: list[str] = field(default_factory=list)
    note: str = ""


@dataclass
class PortPath:
    name: str
    protocol: str
    port: int
    target_port: str
    node_port: int | None
    path: list[str] = field(default_factory=list)  # the seed's arrow line
    hops: list[Hop] = field(default_factory=list)
    endpoints: list[EndpointInfo] = field(default_factory=list)


@dataclass
class DNSName:
    name: str
    rtype: str
    expected: list[str]
    answer: list[str] | None
    server: str
    error: str = ""


@dataclass
class Explanation:
    service: str
    type: str
    cluster_ip: str
    node: str
    node_ip: str
    mode: str
    mode_why: str
    source: str  # client, node or pod
    ports: list[PortPath] = field(default_factory=list)
    dns: list[DNSName] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# -- gathering from the API ------------------------------------------------------------------

async def fetch(kubeconfig: str | None, server: str | None, ns: str, name: str) -> dict[str, Any]:
    from lightkube import ApiError
    from lightkube.resources.core_v1 import Node, Service
    from lightkube.resources.discovery_v1 import EndpointSlice

    from kubesvc.client import make_client

    client = make_client(kubeconfig, server)
    try:
        try:
            svc = await client.get(Service, name, namespace=ns)
        except ApiError as err:
            raise click.ClickException(err.status.message or str(err))
        slices = [s async for s in client.list(EndpointSlice, namespace=ns,
                                               labels={"kubernetes.io/service-name": name})]
        nodes = [n async for n in client.list(Node)]
    finally:
        await client.close()
    return {"svc": svc, "slices": slices, "nodes": nodes}


def endpoints_of(slices: list, port_name: str, protocol: str) -> list[EndpointInfo]:
    out: dict[str, EndpointInfo] = {}
    for s in slices:
        ports = [p for p in (s.ports or []) if (p.name or "") == port_name and (p.protocol or "TCP") == protocol]
        if not ports:
            continue
        for ep in s.endpoints or []:
            c = ep.conditions
            ready = c.ready is not False if c else True
            for addr in ep.addresses:
                out[addr] = EndpointInfo(
                    ip=addr, port=ports[0].port, ready=ready,
                    serving=(c.serving if c and c.serving is not None else ready),
                    terminating=bool(c and c.terminating), pod=ep.targetRef.name if ep.targetRef else None,
                    node=ep.nodeName)
    return sorted(out.values(), key=lambda e: tuple(int(x) for x in e.ip.split(".")) if "." in e.ip else (0,))


# -- the hops in each mode ----------------------------------------------------------------------

def iptables_hops(pp: PortPath, ipt: R.IptablesRules, ns: str, name: str, cluster_ip: str, source: str,
                  portal: bool) -> None:
    """Fill pp.hops' rules from iptables-save (the iptables mode, or userspace's REDIRECT portals)."""
    proto = pp.protocol.lower()
    by_kind = {h.kind: h for h in pp.hops}
    entry_chain = "OUTPUT" if source == "node" else "PREROUTING"
    if portal:
        portal_chain = "KUBE-PORTALS-HOST" if source == "node" else "KUBE-PORTALS-CONTAINER"
        entry = [r for r in ipt.chain(entry_chain) if r.target == portal_chain]
        svc_rules = [r for r in ipt.chain(portal_chain)
                     if f"-d {cluster_ip}/32" in r.text and f"--dport {pp.port} " in r.text + " "
                     and f"-p {proto}" in r.text]
    else:
        entry = [r for r in ipt.chain(entry_chain) if r.target == "KUBE-SERVICES"]
        svc_rules = [r for r in ipt.chain("KUBE-SERVICES")
                     if f"-d {cluster_ip}/32" in r.text and f"--dport {pp.port} " in r.text + " "
                     and f"-p {proto}" in r.text]
    if "entry" in by_kind:
        by_kind["entry"].rules = [r.text for r in entry]
    if "NodePort" in by_kind and pp.node_port:
        np_rules = [r for r in ipt.chain("KUBE-NODEPORTS")
                    if f"--dport {pp.node_port} " in r.text + " " and f"-p {proto}" in r.text]
        last = [r for r in ipt.chain("KUBE-SERVICES") if r.target == "KUBE-NODEPORTS"]
        by_kind["NodePort"].rules = [r.text for r in entry + last + R.follow(ipt, np_rules, ("KUBE-SVC-",))]
    for hop in pp.hops:
        if hop.kind == "LoadBalancer":
            ip = hop.to.rsplit(":", 1)[0]
            chain = "KUBE-PORTALS-CONTAINER" if portal else "KUBE-SERVICES"
            lb = [r for r in ipt.chain(chain) if f"-d {ip}/32" in r.text and f"--dport {pp.port} " in r.text + " "]
            hop.rules = [r.text for r in entry + R.follow(ipt, lb, ("KUBE-SVC-",))]
    if "ClusterIP" in by_kind:
        chain_rules = R.follow(ipt, svc_rules, ("KUBE-SEP-",))
        by_kind["ClusterIP"].rules = [r.text for r in chain_rules]
        # The KUBE-SVC chain when reached from a NodePort's KUBE-EXT chain
        if "NodePort" in by_kind and not svc_rules:
            by_kind["ClusterIP"].rules = [r.text for r in ipt.rules if r.chain.startswith("KUBE-SVC-")
                                          and R.comment_matches(r.text, ns, name)]
    for ep in pp.endpoints:
        dest = f"--to-destination {ep.ip}:{ep.port}"
        seps = {r.chain for r in ipt.rules if r.chain.startswith("KUBE-SEP-") and dest in r.text
                and R.comment_matches(r.text, ns, name)}
        ep.rules = [r.text for r in ipt.rules if r.chain in seps]
    # Filter-table rules for this service (REJECT when it has no endpoints, ...)
    rejects = [r.text for r in ipt.rules if r.table == "filter" and R.comment_matches(r.text, ns, name)
               and (f"--dport {pp.port} " in r.text + " " or (pp.node_port and f"--dport {pp.node_port}" in r.text))]
    if rejects and "ClusterIP" in by_kind:
        by_kind["ClusterIP"].rules.extend(rejects)


def userspace_hops(pp: PortPath, ipt: R.IptablesRules, ss: str, ns: str, name: str, cluster_ip: str,
                   source: str) -> None:
    iptables_hops(pp, ipt, ns, name, cluster_ip, source, portal=True)
    by_kind = {h.kind: h for h in pp.hops}
    if "NodePort" in by_kind and pp.node_port:
        by_kind["NodePort"].rules = ["listener: " + line for line in R.listeners(ss, pp.node_port)] or \
            [f"(no listener on port {pp.node_port}: the service has no ready endpoints, or the proxy is down)"]
    if "ClusterIP" in by_kind:
        hop = by_kind["ClusterIP"]
        relay_ports = {int(m) for line in hop.rules for m in re.findall(r"--to-ports (\d+)", line)}
        for port in sorted(relay_ports):
            hop.rules.extend("listener: " + line for line in R.listeners(ss, port))
        if not hop.rules:
            hop.note = "no portal rules: without root the userspace proxy cannot catch ClusterIP traffic"
    for ep in pp.endpoints:
        ep.rules = [f"the relay connects to {ep.ip}:{ep.port} (round robin over ready endpoints)"]


def nft_hops(pp: PortPath, chains: dict[str, list[str]], ns: str, name: str, cluster_ip: str,
             source: str) -> None:
    """Rules of kube-proxy's `ip kube-proxy` table: map elements, then the service's own chains."""
    key = f"{ns}/{name}/{pp.protocol.lower()}/{pp.name}"
    by_kind = {h.kind: h for h in pp.hops}
    mine = {c: body for c, body in chains.items() if key in c}

    def lines_with(needle: str, where: tuple[str, ...] = ()) -> list[str]:
        return [f"{c}: {element(line)}" for c, body in chains.items() for line in body
                if needle in line and key not in c and (not where or c in where)]

    def element(line: str) -> str:  # one map element, without the set syntax around it
        line = line.removeprefix("elements = {").strip()
        return line.removesuffix("}").strip().rstrip(",").strip()

    entry_chain = "nat-output" if source == "node" else "nat-prerouting"
    entry = [f"{entry_chain}: {line}" for line in chains.get(entry_chain, []) if "jump services" in line]
    if "entry" in by_kind:
        by_kind["entry"].rules = entry
    if "ClusterIP" in by_kind:
        by_kind["ClusterIP"].rules = (
            lines_with("@service-ips", ("services",))
            + lines_with(f"{cluster_ip} . {pp.protocol.lower()} . {pp.port}")
            + [f"{c}: {line}" for c, body in mine.items() if c.startswith("service-") for line in body
               if "dnat to" not in line])
    for hop in pp.hops:
        if hop.kind == "LoadBalancer":
            ip = hop.to.rsplit(":", 1)[0]
            hop.rules = entry + lines_with("@service-ips", ("services",)) + lines_with(
                f"{ip} . {pp.protocol.lower()} . {pp.port}")
    if "NodePort" in by_kind and pp.node_port:
        by_kind["NodePort"].rules = (
            entry + lines_with("@service-nodeports", ("services",))
            + lines_with(f"{pp.protocol.lower()} . {pp.node_port} ")
            + [f"{c}: {line}" for c, body in mine.items() if c.startswith("external-") for line in body])
    for ep in pp.endpoints:
        dest = f"{ep.ip}:{ep.port}"
        ep.rules = [f"{c}: {line}" for c, body in mine.items() for line in body
                    if f"dnat to {dest}" in line or (c.startswith("endpoint-") and f"{ep.ip}/" in c)]


def ipvs_hops(pp: PortPath, services: dict[str, list[str]], cluster_ip: str, node_ip: str) -> None:
    by_kind = {h.kind: h for h in pp.hops}
    if "ClusterIP" in by_kind:
        by_kind["ClusterIP"].rules = services.get(f"{pp.protocol} {cluster_ip}:{pp.port}", [])
    if "NodePort" in by_kind and pp.node_port:
        by_kind["NodePort"].rules = services.get(f"{pp.protocol} {node_ip}:{pp.node_port}", [])
    for hop in pp.hops:
        if hop.kind == "LoadBalancer":
            hop.rules = services.get(f"{pp.protocol} {hop.to}", [])
    for ep in pp.endpoints:
        ep.rules = [line for entries in services.values() for line in entries[1:]
                    if f"-> {ep.ip}:{ep.port} " in line + " "][:1]


# -- DNS -------------------------------------------------------------------------------------------

def dns_names(svc, ns: str, name: str, endpoints: list[EndpointInfo]) -> list[tuple[str, str, list[str]]]:
    """(name, type, expected answers) by the Kubernetes DNS spec."""
    fqdn = f"{name}.{ns}.svc.{ZONE}."
    spec = svc.spec
    if spec.type == "ExternalName":
        return [(fqdn, "CNAME", [spec.externalName.rstrip(".") + "."])]
    if spec.clusterIP in (None, "", "None"):
        ready = sorted({e.ip for e in endpoints if e.ready})
        return [(fqdn, "A", ready)]
    out = [(fqdn, "A", [spec.clusterIP])]
    for p in spec.ports or []:
        if p.name:
            out.append((f"_{p.name}._{(p.protocol or 'TCP').lower()}.{fqdn}", "SRV",
                        [f"0 100 {p.port} {fqdn}"]))
    return out


def ask_dns(names: list[tuple[str, str, list[str]]], server: str, port: int) -> list[DNSName]:
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode

    out = []
    for qname, rtype, expected in names:
        item = DNSName(qname, rtype, expected, None, f"{server}#{port}")
        try:
            reply = dns.query.udp(dns.message.make_query(qname, rtype), server, port=port, timeout=1.5)
            if reply.rcode() != dns.rcode.NOERROR:
                item.error = dns.rcode.to_text(reply.rcode())
            item.answer = sorted(rd.to_text() for rrset in reply.answer for rd in rrset
                                 if rrset.rdtype == dns.rdatatype.from_text(rtype))
        except (dns.exception.DNSException, OSError) as err:
            item.error = f"no answer from {server}#{port}: {err.__class__.__name__} {err}".strip()
        out.append(item)
    return out


# -- putting it together ---------------------------------------------------------------------------

def explain(data: dict[str, Any], ns: str, name: str, source: str | None, mode: str, mode_why: str,
            node_name: str, node_ip: str, dns_server: tuple[str, int] | None,
            capture: bool = True) -> Explanation:
    svc = data["svc"]
    spec = svc.spec
    stype = spec.type or "ClusterIP"
    headless = spec.clusterIP in (None, "", "None")
    source = source or ("client" if stype in ("NodePort", "LoadBalancer") else "pod")
    ex = Explanation(f"{ns}/{name}", stype, spec.clusterIP or "None", node_name, node_ip, mode, mode_why, source)
    if source == "client" and stype not in ("NodePort", "LoadBalancer"):
        ex.notes.append(f"a {stype} service is not reachable from outside the cluster; showing the path from a pod")
        source = ex.source = "pod"
    if stype == "ExternalName":
        ex.notes.append(f"ExternalName: no proxying; DNS answers a CNAME to {spec.externalName}")
    ipt = R.IptablesRules.capture() if capture and mode in ("iptables", "userspace") else R.IptablesRules()
    ss = R.run(["ss", "-Hltunp"]) if capture and mode == "userspace" else ""
    nft = R.nft_chains(R.run(["nft", "list", "table", "ip", "kube-proxy"])) if capture and mode == "nftables" else {}
    ipvs = R.ipvs_services(R.run(["ipvsadm", "-Ln"])) if capture and mode == "ipvs" else {}
    for p in spec.ports or []:
        proto = p.protocol or "TCP"
        pp = PortPath(p.name or "", proto, p.port, str(p.targetPort if p.targetPort is not None else p.port),
                      p.nodePort if stype in ("NodePort", "LoadBalancer") else None)
        pp.endpoints = endpoints_of(data["slices"], p.name or "", proto)
        first = {"client": "client", "node": f"node {node_name}", "pod": "pod"}[source]
        if headless:
            pp.path = [first, f"PodIP:{pp.target_port}"]
            pp.hops = [Hop("Headless", f"PodIP:{pp.target_port}",
                           note="headless: DNS answers the pods' addresses; no proxy rules, no NAT")]
        elif stype != "ExternalName":
            pp.path = [first]
            if source == "client":
                lb_ips = [i.ip for i in ((svc.status.loadBalancer.ingress if svc.status and
                                          svc.status.loadBalancer else None) or []) if i.ip]
                for ip in lb_ips:  # the LB address is caught on the node as directly as the node port
                    pp.hops.append(Hop("LoadBalancer", f"{ip}:{p.port}"))
                pp.path.append(" or ".join([f"{ip}:{p.port}" for ip in lb_ips] + [f"{node_ip}:{pp.node_port}"]))
                pp.hops.append(Hop("NodePort", f"{node_ip}:{pp.node_port}"))
            else:
                pp.hops.append(Hop("entry", f"{first} → {spec.clusterIP}:{p.port}"))
            pp.path.append(f"{spec.clusterIP}:{p.port}")
            pp.hops.append(Hop("ClusterIP", f"{spec.clusterIP}:{p.port}"))
            pp.path.append(f"PodIP:{pp.target_port}")
            pp.hops.append(Hop("Endpoints", f"PodIP:{pp.target_port}"))
            if mode == "iptables":
                iptables_hops(pp, ipt, ns, name, spec.clusterIP, source, portal=False)
            elif mode == "userspace":
                userspace_hops(pp, ipt, ss, ns, name, spec.clusterIP, source)
            elif mode == "nftables":
                nft_hops(pp, nft, ns, name, spec.clusterIP, source)
            elif mode == "ipvs":
                ipvs_hops(pp, ipvs, spec.clusterIP, node_ip)
        if not pp.endpoints:
            ex.notes.append(f"port {p.port}/{proto} has no endpoints: connections are refused "
                            f"(no pod matches {spec.selector or {}} and is ready)")
        elif not any(e.ready for e in pp.endpoints):
            ex.notes.append(f"port {p.port}/{proto}: no endpoint is ready; nothing receives traffic")
        ex.ports.append(pp)
    if dns_server is not None:
        eps = ex.ports[0].endpoints if ex.ports else []
        ex.dns = ask_dns(dns_names(svc, ns, name, eps), *dns_server)
    return ex


def render(ex: Explanation) -> None:
    """Hops as numbered headings with their rules beneath, whole lines (a rule cut short explains nothing)."""
    from rich.console import Console
    from rich.markup import escape

    con = Console(highlight=False, soft_wrap=True)
    con.print(f"[bold]service/{ex.service}[/] ({ex.type}, cluster IP {ex.cluster_ip}) on node "
              f"[bold]{ex.node}[/] ({ex.node_ip}), from {ex.source}")
    con.print(f"proxy mode: [bold]{ex.mode}[/] ({escape(ex.mode_why)})")
    for pp in ex.ports:
        con.print()
        con.print(f"[bold]port {pp.name + ' ' if pp.name else ''}{pp.port}/{pp.protocol}:[/]  "
                  + " [bold]→[/] ".join(pp.path))
        for i, hop in enumerate(pp.hops, 1):
            con.print(f" [bold cyan]{i}. {hop.to}[/] [dim]({hop.kind})[/]")
            if hop.kind == "Endpoints":
                if not pp.endpoints:
                    con.print("      [red](no endpoints)[/]")
                for ep in pp.endpoints:
                    state = ("[green]ready[/]" if ep.ready else
                             "[yellow]terminating[/]" if ep.terminating else "[red]not ready[/]")
                    con.print(f"    {ep.ip}:{ep.port}  pod {ep.pod or '-'}  node {ep.node or '-'}  {state}")
                    for rule in ep.rules:
                        con.print(f"        {escape(rule)}", style="dim")
                continue
            for rule in hop.rules:
                con.print(f"      {escape(rule)}", style="dim")
            if not hop.rules and hop.kind != "Headless":
                con.print("      (no rules found)", style="yellow")
            if hop.note:
                con.print(f"      {escape(hop.note)}", style="yellow")
    if ex.dns:
        con.print()
        con.print("[bold]DNS names[/]")
        for d in ex.dns:
            ans = ", ".join(d.answer) if d.answer else (d.error or "(empty)")
            ok = d.answer is not None and not d.error and sorted(d.answer) == sorted(d.expected)
            verdict = "[green]ok[/]" if ok else f"[yellow]expected {', '.join(d.expected) or 'nothing'}[/]"
            con.print(f"    {d.name} {d.rtype} → {escape(ans)}  [dim](@{d.server})[/] {verdict}")
    for note in ex.notes:
        con.print(f"[yellow]note[/]: {escape(note)}")


@click.command("explain")
@click.argument("target", metavar="svc/NAME")
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("--from", "source", type=click.Choice(["client", "node", "pod"]), default=None,
              help="Where the connection starts (default: client for NodePort/LoadBalancer, else pod).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--data-dir", envvar="KUBESVC_DATA_DIR", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="kubesvc up's data dir (finds the kubeconfig, node and proxy mode).")
@click.option("--kubeconfig", envvar="KUBECONFIG", default=None, type=click.Path(dir_okay=False),
              help="Kubeconfig (default: DATA/kubeconfig, then $KUBECONFIG).")
@click.option("--server", default=None, help="API server URL (instead of a kubeconfig).")
@click.option("--mode", type=click.Choice(["iptables", "ipvs", "nftables", "userspace"]), default=None,
              help="Proxy mode to read rules for (default: what `up` runs, else the proxy's /proxyMode).")
@click.option("--dns-server", default=None, metavar="ADDR[:PORT]",
              help="Cluster DNS to ask (default: 10.96.0.10, or what `up` runs); 'off' to skip.")
def command(target, namespace, source, output, data_dir, kubeconfig, server, mode, dns_server):
    """How traffic to a service flows on this node, hop by hop, with the real rules behind each hop."""
    kind, _, name = target.partition("/")
    if not name or kind not in ("svc", "service", "services"):
        raise click.BadParameter("expected svc/NAME", param_hint="svc/NAME")
    st = upstate.read((data_dir or upstate.find_data_dir()).resolve())
    if st and not kubeconfig and not server:
        kubeconfig = st.kubeconfig
    data = asyncio.run(fetch(kubeconfig, server, namespace, name))
    node_name = st.node_name if st else None
    node_ip = st.node_ip if st else None
    if not node_name and data["nodes"]:
        node_name = data["nodes"][0].metadata.name
    if not node_ip:
        for n in data["nodes"]:
            if n.metadata.name == node_name:
                node_ip = next((a.address for a in (n.status.addresses or []) if a.type == "InternalIP"), None)
    mode_why = st.proxy_why if st else ""
    if mode is None:
        mode = st.proxy_mode if st else None
    if mode is None:
        from kubesvc.up.cmd import proxy_mode_running
        mode = asyncio.run(proxy_mode_running()) or "iptables"
        mode_why = mode_why or "the proxy's /proxyMode"
    dns = None
    if dns_server != "off":
        if dns_server:
            host, _, port = dns_server.partition(":")
            dns = (host, int(port or 53))
        elif st and st.limits:  # unprivileged: DNS is on the node, not behind 10.96.0.10
            host, _, port = st.dns_listen.rpartition(":")
            dns = (host, int(port))
        else:
            dns = ("10.96.0.10", 53)
    ex = explain(data, namespace, name, source, mode, mode_why or f"--mode={mode}", node_name or "?",
                 node_ip or "?", dns)
    if output == "json":
        click.echo(json.dumps(asdict(ex), indent=2))
    else:
        render(ex)
