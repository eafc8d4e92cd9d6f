"""Endpoints (core/v1) and EndpointSlices (discovery.k8s.io/v1): port protocol
defaults and the validation that keeps data planes safe (IPs, ports, addressType)."""

from __future__ import annotations

import ipaddress

from kubesvc.objects.errors import FieldError, invalid, not_supported, required
from kubesvc.objects.strategy import STRATEGIES, Strategy

ADDRESS_TYPES = ["FQDN", "IPv4", "IPv6"]


def _port_errs(port, path: str) -> list[FieldError]:
    p = port.get("port") if isinstance(port, dict) else None
    if p is None:
        return []
    if not isinstance(p, int) or not 0 <= p <= 65535:
        return [invalid(f"{path}.port", p, "must be between 1 and 65535, inclusive")]
    return []


class EndpointsStrategy(Strategy):
    """registry/core/endpoint.endpointsStrategy."""

    def default(self, obj: dict) -> None:
        for s in obj.get("subsets") or []:
            for p in s.get("ports") or []:
                p.setdefault("protocol", "TCP")

    def validate(self, obj: dict) -> list[FieldError]:
        errs = []
        for i, s in enumerate(obj.get("subsets") or []):
            for key in ("addresses", "notReadyAddresses"):
                for j, a in enumerate(s.get(key) or []):
                    ip = a.get("ip") if isinstance(a, dict) else None
                    try:
                        ipaddress.ip_address(ip or "")
                    except ValueError:
                        errs.append(invalid(f"subsets[{i}].{key}[{j}].ip", ip,
                                            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
            for j, p in enumerate(s.get("ports") or []):
                errs.extend(_port_errs(p, f"subsets[{i}].ports[{j}]"))
        return errs


class EndpointSliceStrategy(Strategy):
    """registry/discovery/endpointslice.endpointSliceStrategy."""

    def default(self, obj: dict) -> None:
        for p in obj.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
        for e in obj.get("endpoints") or []:
            if isinstance(e, dict):
                e.setdefault("conditions", {})

    def validate(self, obj: dict) -> list[FieldError]:
        errs = []
        at = obj.get("addressType")
        if not at:
            errs.append(required("addressType"))
        elif at not in ADDRESS_TYPES:
            errs.append(not_supported("addressType", at, ADDRESS_TYPES))
        for i, e in enumerate(obj.get("endpoints") or []):
            addrs = e.get("addresses") if isinstance(e, dict) else None
            if not addrs:
                errs.append(required(f"endpoints[{i}].addresses", "must contain at least 1 address"))
                continue
            if at in ("IPv4", "IPv6"):
                for j, a in enumerate(addrs):
                    try:
                        ok = ipaddress.ip_address(a).version == (4 if at == "IPv4" else 6)
                    except ValueError:
                        ok = False
                    if not ok:
                        errs.append(invalid(f"endpoints[{i}].addresses[{j}]", a,
                                            f"must be a valid {at} address"))
        for j, p in enumerate(obj.get("ports") or []):
            errs.extend(_port_errs(p, f"ports[{j}]"))
        return errs

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        errs = self.validate(obj)
        if old.get("addressType") and obj.get("addressType") != old.get("addressType"):
            errs.append(invalid("addressType", obj.get("addressType"), "field is immutable"))
        return errs


STRATEGIES[("", "Endpoints")] = EndpointsStrategy()
STRATEGIES[("discovery.k8s.io", "EndpointSlice")] = EndpointSliceStrategy()
