"""Service, Endpoints and EndpointSlice rows (printService, formatEndpoints, printEndpointSlice)."""

from __future__ import annotations

import ipaddress

from kubesvc.objects.printers.base import (CORE, Cells, Column, Printer, age, age_column, doc,
                                           format_labels, list_with_more, name, name_column)

_LB_WIDTH = 16  # loadBalancerWidth; only applies to narrow output, and the server prints wide


def _lb_ingress(svc: dict) -> str:
    # loadBalancerStatusStringer: a sorted set of ingress IPs (or hostnames)
    found = set()
    for ing in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        if ing.get("ip"):
            found.add(ing["ip"])
        elif ing.get("hostname"):
            found.add(ing["hostname"])
    return ",".join(sorted(found))


def external_ip(svc: dict) -> str:
    """getServiceExternalIP (wide)."""
    spec = svc.get("spec") or {}
    kind = spec.get("type", "ClusterIP")
    external = spec.get("externalIPs") or []
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if kind == "LoadBalancer":
        lb = _lb_ingress(svc)
        if external:
            return ",".join(([*lb.split(",")] if lb else []) + external)
        return lb or "<pending>"
    if kind == "ExternalName":
        return spec.get("externalName", "")
    return "<unknown>"


def port_string(ports: list[dict] | None) -> str:
    """makePortString: 80/TCP, or 80:30080/TCP when a node port is allocated."""
    pieces = []
    for p in ports or []:
        proto = p.get("protocol", "TCP")
        if p.get("nodePort"):
            pieces.append(f"{p.get('port')}:{p['nodePort']}/{proto}")
        else:
            pieces.append(f"{p.get('port')}/{proto}")
    return ",".join(pieces)


def service_row(svc: dict, now: float) -> tuple[Cells, None]:
    spec = svc.get("spec") or {}
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    cluster_ip = ips[0] if ips else "<none>"
    return [name(svc), spec.get("type", "ClusterIP"), cluster_ip, external_ip(svc),
            port_string(spec.get("ports")) or "<none>", age(svc, now), format_labels(spec.get("selector"))], None


def _join_host_port(ip: str, port: int) -> str:
    try:
        if ipaddress.ip_address(ip).version == 6:
            return f"[{ip}]:{port}"
    except ValueError:
        pass
    return f"{ip}:{port}"


def format_endpoints(endpoints: dict, max_items: int = 3) -> str:
    """formatEndpoints: up to three ip:port pairs of ready addresses, then "+ N more..."."""
    subsets = endpoints.get("subsets") or []
    if not subsets:
        return "<none>"
    items: list[str] = []
    more = False
    count = 0
    for ss in subsets:
        addresses = ss.get("addresses") or []
        ports = ss.get("ports") or []
        if not ports:  # headless services may have no ports
            count += len(addresses)
            for a in addresses:
                if len(items) == max_items:
                    more = True
                    break
                items.append(a.get("ip", ""))
            continue
        for port in ports:
            count += len(addresses)
            for a in addresses:
                if len(items) == max_items:
                    more = True
                    break
                items.append(_join_host_port(a.get("ip", ""), port.get("port", 0)))
    text = ",".join(items)
    return f"{text} + {count - max_items} more..." if more else text


def endpoints_row(ep: dict, now: float) -> tuple[Cells, None]:
    return [name(ep), format_endpoints(ep), age(ep, now)], None


def _slice_ports(ports: list[dict] | None) -> str:
    ports = ports or []
    items = []
    for p in ports[:3]:
        if p.get("port") is not None:
            items.append(str(p["port"]))
        elif p.get("name") is not None:
            items.append(p["name"])
        else:
            items.append("*")
    return list_with_more(items, len(ports))


def _slice_endpoints(endpoints: list[dict] | None) -> str:
    addresses = [a for e in endpoints or [] for a in e.get("addresses") or []]
    return list_with_more(addresses[:3], len(addresses))


def endpointslice_row(es: dict, now: float) -> tuple[Cells, None]:
    return [name(es), es.get("addressType", ""), _slice_ports(es.get("ports")),
            _slice_endpoints(es.get("endpoints")), age(es, now)], None


_SPEC = CORE + "ServiceSpec"
_SLICE = "io.k8s.api.discovery.v1.EndpointSlice"

SERVICE = Printer((
    name_column(),
    Column("Type", "string", doc(_SPEC, "type")),
    Column("Cluster-IP", "string", doc(_SPEC, "clusterIP")),
    Column("External-IP", "string", doc(_SPEC, "externalIPs")),
    Column("Port(s)", "string", doc(_SPEC, "ports")),
    age_column(),
    Column("Selector", "string", doc(_SPEC, "selector"), priority=1),
), service_row)

ENDPOINTS = Printer((
    name_column(),
    Column("Endpoints", "string", doc(CORE + "Endpoints", "subsets")),
    age_column(),
), endpoints_row)

ENDPOINT_SLICE = Printer((
    name_column(),
    Column("AddressType", "string", doc(_SLICE, "addressType")),
    Column("Ports", "string", doc(_SLICE, "ports")),
    Column("Endpoints", "string", doc(_SLICE, "endpoints")),
    age_column(),
), endpointslice_row)

PRINTERS = {
    ("", "Service"): SERVICE,
    ("", "Endpoints"): ENDPOINTS,
    ("discovery.k8s.io", "EndpointSlice"): ENDPOINT_SLICE,
}
