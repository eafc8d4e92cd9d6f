"""Services as kube-apiserver keeps them: defaults, update preparation and validation.

This module owns what kube-apiserver's ``SetDefaults_Service``, the service
registry strategy (``PrepareForCreate/Update``: carrying allocated values over,
normalizing clusterIP/clusterIPs, wiping type-dependent fields on a type change)
and ``ValidateService``/``ValidateServiceUpdate`` do, with the same field paths
and messages, so kubectl prints what it prints against a real cluster.

Allocation of ClusterIPs and NodePorts is not here: it needs shared state and
lives in :mod:`kubesvc.apiserver.services` (admission), which runs after this
validation. Because of that order (kube-apiserver allocates *before* it
validates), validation here tolerates what admission is about to fill in
(an empty healthCheckNodePort).

Importing this module registers :class:`ServiceStrategy` for ("", "Service").
"""

from __future__ import annotations

import copy
import ipaddress
import re
from typing import Any

from kubesvc.objects.errors import (
    FieldError,
    bad_request,
    duplicate,
    forbidden,
    invalid,
    not_supported,
    required,
)
from kubesvc.objects.meta import (
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    validate_labels,
)
from kubesvc.objects.strategy import STRATEGIES, Strategy

CLUSTER_IP = "ClusterIP"
NODE_PORT = "NodePort"
LOAD_BALANCER = "LoadBalancer"
EXTERNAL_NAME = "ExternalName"
NONE = "None"

SERVICE_TYPES = sorted([CLUSTER_IP, NODE_PORT, LOAD_BALANCER, EXTERNAL_NAME])
PROTOCOLS = ["SCTP", "TCP", "UDP"]
AFFINITIES = ["ClientIP", "None"]
TRAFFIC_POLICIES = ["Cluster", "Local"]
IP_FAMILIES = ["IPv4", "IPv6"]
IP_FAMILY_POLICIES = ["PreferDualStack", "RequireDualStack", "SingleStack"]
TRAFFIC_DISTRIBUTIONS = ["PreferClose"]

# The family of --service-cluster-ip-range: what services get when they ask for none.
# kubesvc.apiserver.services.ServiceAdmission sets it from the range it is built with.
cluster_ip_family = "IPv4"

LB_SOURCE_RANGES_ANNOTATION = "service.beta.kubernetes.io/load-balancer-source-ranges"
TOPOLOGY_HINTS_ANNOTATION = "service.kubernetes.io/topology-aware-hints"
TOPOLOGY_MODE_ANNOTATION = "service.kubernetes.io/topology-mode"
LB_IP_MODES = ["Proxy", "VIP"]

DEFAULT_CLIENT_IP_TIMEOUT = 10800  # v1.DefaultClientIPServiceAffinitySeconds
MAX_CLIENT_IP_TIMEOUT = 86400  # core.MaxClientIPServiceAffinitySeconds


# -- Go-formatted values --------------------------------------------------------------
# field.Error prints values that are neither strings nor numbers with %#v, so a list
# of cluster IPs reads []string{"10.97.97.97"}. errors.format_value prints anything
# that is not a str/int/list with str(), which is how these get through verbatim.

class GoValue:
    """A value already formatted the way Go's %#v prints it."""

    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"GoValue({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GoValue) and other.text == self.text


def go_quote(s: Any) -> str:
    s = str(s)
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def go_strings(values: list | None, type_name: str = "[]string") -> GoValue:
    if values is None:
        return GoValue(f"{type_name}(nil)")
    return GoValue(type_name + "{" + ", ".join(go_quote(v) for v in values) + "}")


def go_service_port_key(protocol: str, port: Any) -> GoValue:
    """The core.ServicePort{Protocol, Port} key ValidateService reports as a duplicate."""
    return GoValue(f'core.ServicePort{{Name:"", Protocol:{go_quote(protocol)}, AppProtocol:(*string)(nil), '
                   f'Port:{port}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:""}}, NodePort:0}}')


# -- predicates (pkg/api/service, registry helpers) ------------------------------------

def spec_of(obj: dict | None) -> dict:
    return (obj or {}).get("spec") or {}


def cluster_ips(obj: dict | None) -> list[str]:
    return list(spec_of(obj).get("clusterIPs") or [])


def is_headless(obj: dict | None) -> bool:
    ips = cluster_ips(obj)
    return len(ips) == 1 and ips[0] == NONE


def externally_accessible(obj: dict | None) -> bool:
    spec = spec_of(obj)
    t = spec.get("type")
    return t in (LOAD_BALANCER, NODE_PORT) or (t == CLUSTER_IP and bool(spec.get("externalIPs")))


def needs_cluster_ip(obj: dict | None) -> bool:
    return spec_of(obj).get("type") != EXTERNAL_NAME


def needs_node_port(obj: dict | None) -> bool:
    return spec_of(obj).get("type") in (NODE_PORT, LOAD_BALANCER)


def needs_health_check(obj: dict | None) -> bool:
    """apiservice.NeedsHealthCheck: only LoadBalancer services with externalTrafficPolicy Local."""
    spec = spec_of(obj)
    return spec.get("type") == LOAD_BALANCER and spec.get("externalTrafficPolicy") == "Local"


def should_allocate_node_ports(obj: dict | None) -> bool:
    spec = spec_of(obj)
    if spec.get("type") == NODE_PORT:
        return True
    if spec.get("type") == LOAD_BALANCER:
        return spec.get("allocateLoadBalancerNodePorts") is not False
    return False


def ip_family_of(ip: str) -> str | None:
    try:
        return "IPv6" if ipaddress.ip_address(ip).version == 6 else "IPv4"
    except ValueError:
        return None


def _int(v: Any) -> int:
    """A number as stored (ints), 0 for absent."""
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


# -- decoding checks ---------------------------------------------------------------------

def _decode_error(go_field: str, go_type: str, value: Any) -> None:
    kind = {str: "string", bool: "bool", list: "array", dict: "object", float: "number"}.get(type(value), "value")
    raise bad_request(f'Service in version "v1" cannot be handled as a Service: json: cannot unmarshal {kind} '
                      f'into Go struct field {go_field} of type {go_type}')


def check_types(obj: dict) -> None:
    """Refuse what Go's JSON decoding would refuse before any defaulting (400 BadRequest)."""
    spec = obj.get("spec")
    if spec is None:
        return
    if not isinstance(spec, dict):
        _decode_error("Service.spec", "v1.ServiceSpec", spec)
    ports = spec.get("ports")
    if ports is not None and not isinstance(ports, list):
        _decode_error("ServiceSpec.spec.ports", "[]v1.ServicePort", ports)
    for p in ports or []:
        if not isinstance(p, dict):
            _decode_error("ServiceSpec.spec.ports", "v1.ServicePort", p)
        for f in ("port", "nodePort"):
            v = p.get(f)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                if isinstance(v, float) and v.is_integer():
                    p[f] = int(v)
                    continue
                _decode_error(f"ServicePort.spec.ports.{f}", "int32", v)
        tp = p.get("targetPort")
        if tp is not None and (isinstance(tp, bool) or not isinstance(tp, (int, str))):
            _decode_error("ServicePort.spec.ports.targetPort", "intstr.IntOrString", tp)
    for f in ("healthCheckNodePort",):
        v = spec.get(f)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            _decode_error(f"ServiceSpec.spec.{f}", "int32", v)
    for f in ("clusterIPs", "externalIPs", "ipFamilies", "loadBalancerSourceRanges"):
        v = spec.get(f)
        if v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            _decode_error(f"ServiceSpec.spec.{f}", "[]string", v)
    sel = spec.get("selector")
    if sel is not None and not (isinstance(sel, dict) and all(isinstance(x, str) for x in sel.values())):
        _decode_error("ServiceSpec.spec.selector", "map[string]string", sel)


# -- defaulting ----------------------------------------------------------------------------

def default_service(obj: dict) -> None:
    """SetDefaults_Service: the decoder's defaults (see default_service_storage for the rest)."""
    check_types(obj)
    spec = obj.get("spec")
    if spec is None:
        spec = obj["spec"] = {}

    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if spec["sessionAffinity"] == "None":
        spec.pop("sessionAffinityConfig", None)
    elif spec["sessionAffinity"] == "ClientIP":
        cfg = spec.get("sessionAffinityConfig") or {}
        if (cfg.get("clientIP") or {}).get("timeoutSeconds") is None:
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": DEFAULT_CLIENT_IP_TIMEOUT}}
    if not spec.get("type"):
        spec["type"] = CLUSTER_IP
    stype = spec["type"]
    for p in spec.get("ports") or []:
        if not p.get("protocol"):
            p["protocol"] = "TCP"
        if p.get("targetPort") in (None, 0, ""):
            if p.get("port") is not None:
                p["targetPort"] = p["port"]
    if externally_accessible(obj) and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if spec.get("internalTrafficPolicy") is None and stype in (NODE_PORT, LOAD_BALANCER, CLUSTER_IP):
        spec["internalTrafficPolicy"] = "Cluster"
    if stype == LOAD_BALANCER and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    default_lb_ip_mode(obj)


def default_service_storage(obj: dict) -> None:
    """What the service REST storage fills after the field manager: NormalizeClusterIPs
    and initIPFamilyFields (owned by no manager in a real cluster)."""
    spec = obj.setdefault("spec", {})
    # NormalizeClusterIPs (create): an old client sets only the singular field.
    if spec.get("clusterIP") and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [spec["clusterIP"]]
    if spec.get("type") == EXTERNAL_NAME:
        return
    _default_ip_families(obj)


def _default_ip_families(obj: dict) -> None:
    """initIPFamilyFields on a single-stack cluster: policy, then families from the IPs."""
    spec = obj["spec"]
    headless_selectorless = spec.get("clusterIP") == NONE and not spec.get("selector")
    if spec.get("ipFamilyPolicy") is None:
        spec["ipFamilyPolicy"] = "RequireDualStack" if headless_selectorless else "SingleStack"
    families = list(spec.get("ipFamilies") or [])
    for i, ip in enumerate(spec.get("clusterIPs") or []):
        if ip == NONE:
            break
        fam = ip_family_of(ip)
        if fam is None:
            return  # validation reports the bad address
        if i >= len(families):
            families.append(fam)
    if headless_selectorless:
        if not families:
            families = [cluster_ip_family]
        if len(families) < 2 and spec["ipFamilyPolicy"] != "SingleStack":
            families.append("IPv6" if families[0] == "IPv4" else "IPv4")
    elif not families:
        families = [cluster_ip_family]
    spec["ipFamilies"] = families


# -- update preparation ---------------------------------------------------------------------

def _node_ports_used(obj: dict) -> set[int]:
    return {_int(p.get("nodePort")) for p in spec_of(obj).get("ports") or [] if _int(p.get("nodePort"))}


def patch_allocated_values(new: dict, old: dict) -> None:
    """An update that omits allocated values (kubectl replace/apply) keeps the old ones."""
    spec, old_spec = new.setdefault("spec", {}), spec_of(old)
    if needs_cluster_ip(old) and needs_cluster_ip(new):
        if not spec.get("clusterIP") and old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
        if not spec.get("clusterIPs") and old_spec.get("clusterIPs"):
            spec["clusterIPs"] = list(old_spec["clusterIPs"])
        # initIPFamilyFields: an update that names no policy keeps the stored one.
        if spec.get("ipFamilyPolicy") is None and old_spec.get("ipFamilyPolicy") is not None:
            spec["ipFamilyPolicy"] = old_spec["ipFamilyPolicy"]
    if needs_node_port(old) and needs_node_port(new):
        used = _node_ports_used(old) & _node_ports_used(new)
        by_name = {p.get("name") or "": _int(p.get("nodePort")) for p in old_spec.get("ports") or []}
        for p in spec.get("ports") or []:
            if not _int(p.get("nodePort")):
                old_val = by_name.get(p.get("name") or "", 0)
                if old_val and old_val not in used:
                    p["nodePort"] = old_val
    if needs_health_check(old) and needs_health_check(new):
        if not _int(spec.get("healthCheckNodePort")):
            spec["healthCheckNodePort"] = old_spec.get("healthCheckNodePort")


def normalize_cluster_ips_update(new: dict, old: dict) -> None:
    """NormalizeClusterIPs for an update: keep clusterIP and clusterIPs[0] in step."""
    spec, old_spec = new.setdefault("spec", {}), spec_of(old)
    same_plural = (spec.get("clusterIPs") or []) == (old_spec.get("clusterIPs") or [])
    if old_spec.get("clusterIP") and not spec.get("clusterIP"):
        if same_plural:
            spec.pop("clusterIPs", None)
        return
    if spec.get("clusterIP") and spec.get("clusterIP") != old_spec.get("clusterIP"):
        if same_plural:
            spec["clusterIPs"] = [spec["clusterIP"]]


def drop_type_dependent_fields(new: dict, old: dict) -> None:
    """On a type change, wipe what no longer applies unless the user changed it too."""
    spec, old_spec = new.setdefault("spec", {}), spec_of(old)
    if needs_cluster_ip(old) and not needs_cluster_ip(new):
        if ((spec.get("clusterIP") or "") == (old_spec.get("clusterIP") or "")
                and (spec.get("clusterIPs") or []) == (old_spec.get("clusterIPs") or [])):
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
        if (spec.get("ipFamilies") or []) == (old_spec.get("ipFamilies") or []):
            spec.pop("ipFamilies", None)
        if spec.get("ipFamilyPolicy") == old_spec.get("ipFamilyPolicy"):
            spec.pop("ipFamilyPolicy", None)
    if needs_node_port(old) and not needs_node_port(new):
        # Ports may be added, removed or changed, as long as no net-new node port appears.
        if _node_ports_used(new) <= _node_ports_used(old):
            for p in spec.get("ports") or []:
                p.pop("nodePort", None)
    if needs_health_check(old) and not needs_health_check(new):
        if _int(spec.get("healthCheckNodePort")) == _int(old_spec.get("healthCheckNodePort")):
            spec.pop("healthCheckNodePort", None)
    if old_spec.get("type") == LOAD_BALANCER and spec.get("type") != LOAD_BALANCER:
        if (spec.get("allocateLoadBalancerNodePorts") is not None
                and spec.get("allocateLoadBalancerNodePorts") == old_spec.get("allocateLoadBalancerNodePorts")):
            spec.pop("allocateLoadBalancerNodePorts", None)
        if spec.get("loadBalancerClass") == old_spec.get("loadBalancerClass"):
            spec.pop("loadBalancerClass", None)
    if externally_accessible(old) and not externally_accessible(new):
        if spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy"):
            spec.pop("externalTrafficPolicy", None)
    if spec.get("type") != LOAD_BALANCER:
        status = new.get("status")
        if isinstance(status, dict):
            status["loadBalancer"] = {}


# -- validation -------------------------------------------------------------------------------

def is_valid_port_num(port: Any) -> list[str]:
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        return ["must be between 1 and 65535, inclusive"]
    return []


_PORT_NAME_CHARSET = re.compile(r"^[-a-z0-9]+$")
_PORT_NAME_LETTER = re.compile(r"[a-z]")


def is_valid_port_name(port: str) -> list[str]:
    """validation.IsValidPortName (an IANA_SVC_NAME)."""
    errs = []
    if len(port) > 15:
        errs.append("must be no more than 15 characters")
    if not _PORT_NAME_CHARSET.match(port):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _PORT_NAME_LETTER.search(port):
        errs.append("must contain at least one letter (a-z)")
    if "--" in port:
        errs.append("must not contain consecutive hyphens")
    if port and (port[0] == "-" or port[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def _parse_ip(value: str) -> ipaddress._BaseAddress | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def is_valid_ip(path: str, value: str) -> list[FieldError]:
    if _parse_ip(value) is None:
        return [invalid(path, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")]
    return []


def is_valid_cidr(path: str, value: str) -> list[FieldError]:
    try:
        ipaddress.ip_network(value, strict=False)
        if "/" not in value:
            raise ValueError
    except ValueError:
        return [invalid(path, value, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")]
    return []


def validate_non_special_ip(value: str, path: str) -> list[FieldError]:
    ip = _parse_ip(value)
    if ip is None:
        return [invalid(path, value, "must be a valid IP address")]
    errs = []
    if ip.is_unspecified:
        errs.append(invalid(path, value, f"may not be unspecified ({value})"))
    if ip.is_loopback:
        errs.append(invalid(path, value, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
    if ip.is_link_local and not ip.is_multicast:
        errs.append(invalid(path, value, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
    if ip.is_multicast and (ip in ipaddress.ip_network("224.0.0.0/24") if ip.version == 4
                            else ip in ipaddress.ip_network("ff02::/16")):
        errs.append(invalid(path, value, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
    return errs


def _validate_port(p: dict, require_name: bool, names: set, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    name = p.get("name") or ""
    if require_name and not name:
        errs.append(required(f"{path}.name"))
    elif name:
        errs.extend(invalid(f"{path}.name", name, m) for m in is_dns1123_label(name))
        if name in names:
            errs.append(duplicate(f"{path}.name", name))
        else:
            names.add(name)
    port = p.get("port")
    for m in is_valid_port_num(port):
        errs.append(invalid(f"{path}.port", port if port is not None else 0, m))
    proto = p.get("protocol") or ""
    if not proto:
        errs.append(required(f"{path}.protocol"))
    elif proto not in PROTOCOLS:
        errs.append(not_supported(f"{path}.protocol", proto, PROTOCOLS))
    tp = p.get("targetPort")
    if isinstance(tp, str):
        errs.extend(invalid(f"{path}.targetPort", tp, m) for m in is_valid_port_name(tp))
    else:
        errs.extend(invalid(f"{path}.targetPort", tp if tp is not None else 0, m) for m in is_valid_port_num(tp))
    if p.get("appProtocol") is not None:
        errs.extend(invalid(f"{path}.appProtocol", p["appProtocol"], m)
                    for m in is_qualified_name(p["appProtocol"]))
    return errs


def _validate_client_ip_affinity(cfg: Any, path: str) -> list[FieldError]:
    detail = "when session affinity type is ClientIP"
    if not cfg:
        return [required(path, detail)]
    if not cfg.get("clientIP"):
        return [required(f"{path}.clientIP", detail)]
    timeout = cfg["clientIP"].get("timeoutSeconds")
    if timeout is None:
        return [required(f"{path}.clientIP.timeoutSeconds", detail)]
    if not isinstance(timeout, int) or timeout <= 0 or timeout > MAX_CLIENT_IP_TIMEOUT:
        return [invalid(f"{path}.clientIP.timeoutSeconds", timeout,
                        f"must be greater than 0 and less than {MAX_CLIENT_IP_TIMEOUT}")]
    return []


def validate_cluster_ips_related(obj: dict) -> list[FieldError]:
    """ValidateServiceClusterIPsRelatedFields."""
    spec = spec_of(obj)
    if spec.get("type") == EXTERNAL_NAME:
        return []
    errs: list[FieldError] = []
    ips = spec.get("clusterIPs")
    ips_list = list(ips or [])
    cip = spec.get("clusterIP") or ""
    if cip:
        if not ips_list:
            errs.append(required("spec.clusterIPs"))
        elif ips_list[0] != cip:
            errs.append(invalid("spec.clusterIPs", go_strings(ips), "first value must match `clusterIP`"))
    elif ips_list:
        errs.append(invalid("spec.clusterIPs", go_strings(ips), "must be empty when `clusterIP` is not specified"))

    seen: set[str] = set()
    for i, fam in enumerate(spec.get("ipFamilies") or []):
        if fam not in IP_FAMILIES:
            errs.append(not_supported(f"spec.ipFamilies[{i}]", fam, IP_FAMILIES))
        if fam in seen:
            errs.append(duplicate(f"spec.ipFamilies[{i}]", fam))
        seen.add(fam)
    pol = spec.get("ipFamilyPolicy")
    if pol is not None and pol not in IP_FAMILY_POLICIES:
        errs.append(not_supported("spec.ipFamilyPolicy", pol, IP_FAMILY_POLICIES))

    bad = False
    for i, ip in enumerate(ips_list):
        if i == 0 and ip == NONE:
            if len(ips_list) > 1:
                bad = True
                errs.append(invalid("spec.clusterIPs", go_strings(ips), "'None' must be the first and only value"))
            continue
        e = is_valid_ip(f"spec.clusterIPs[{i}]", ip)
        bad = bad or bool(e)
        errs.extend(e)
    if len(ips_list) > 2:
        errs.append(invalid("spec.clusterIPs", go_strings(ips), "may only hold up to 2 values"))
    if bad:
        return errs
    if len(ips_list) > 1:
        fams = {ip_family_of(ip) for ip in ips_list}
        if len(ips_list) != 2 or len(fams) != 2:
            errs.append(invalid("spec.clusterIPs", go_strings(ips), "may specify no more than one IP for each IP family"))
    families = spec.get("ipFamilies") or []
    if not is_headless(obj) and ips_list and families:
        for i, ip in enumerate(ips_list):
            if i > len(families) - 1:
                break
            v6 = ip_family_of(ip) == "IPv6"
            if families[i] == "IPv4" and v6:
                errs.append(invalid(f"spec.clusterIPs[{i}]", ip, f"expected an IPv4 value as indicated by `ipFamilies[{i}]`"))
            if families[i] == "IPv6" and not v6:
                errs.append(invalid(f"spec.clusterIPs[{i}]", ip, f"expected an IPv6 value as indicated by `ipFamilies[{i}]`"))
    return errs


def validate_service(obj: dict) -> list[FieldError]:
    """ValidateService without ObjectMeta (the API server validates metadata generically)."""
    spec = spec_of(obj)
    stype = spec.get("type") or ""
    ports = spec.get("ports") or []
    headless = is_headless(obj)
    errs: list[FieldError] = []

    if not ports and not headless and stype != EXTERNAL_NAME:
        errs.append(required("spec.ports"))
    if stype in (LOAD_BALANCER, NODE_PORT) and headless:
        errs.append(invalid("spec.clusterIPs[0]", NONE, f"may not be set to 'None' for {stype} services"))
    elif stype == EXTERNAL_NAME:
        if spec.get("clusterIPs"):
            errs.append(forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
        if spec.get("ipFamilies"):
            errs.append(forbidden("spec.ipFamilies", "may not be set for ExternalName services"))
        if spec.get("ipFamilyPolicy") is not None:
            errs.append(forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"))
        cname = (spec.get("externalName") or "").removesuffix(".")
        if cname:
            errs.extend(invalid("spec.externalName", cname, m) for m in is_dns1123_subdomain(cname))
        else:
            errs.append(required("spec.externalName"))

    names: set[str] = set()
    for i, p in enumerate(ports):
        errs.extend(_validate_port(p, len(ports) > 1, names, f"spec.ports[{i}]"))

    if spec.get("selector") is not None:
        errs.extend(validate_labels(spec["selector"], "spec.selector"))

    aff = spec.get("sessionAffinity") or ""
    if not aff:
        errs.append(required("spec.sessionAffinity"))
    elif aff not in AFFINITIES:
        errs.append(not_supported("spec.sessionAffinity", aff, AFFINITIES))
    if aff == "ClientIP":
        errs.extend(_validate_client_ip_affinity(spec.get("sessionAffinityConfig"), "spec.sessionAffinityConfig"))
    elif aff == "None" and spec.get("sessionAffinityConfig") is not None:
        errs.append(forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None"))

    errs.extend(validate_cluster_ips_related(obj))

    for i, ip in enumerate(spec.get("externalIPs") or []):
        e = is_valid_ip(f"spec.externalIPs[{i}]", ip)
        errs.extend(e or validate_non_special_ip(ip, f"spec.externalIPs[{i}]"))

    if not stype:
        errs.append(required("spec.type"))
    elif stype not in SERVICE_TYPES:
        errs.append(not_supported("spec.type", stype, SERVICE_TYPES))

    if stype == CLUSTER_IP:
        for i, p in enumerate(ports):
            if _int(p.get("nodePort")):
                errs.append(forbidden(f"spec.ports[{i}].nodePort", "may not be used when `type` is 'ClusterIP'"))

    seen_np: set[tuple] = set()
    for i, p in enumerate(ports):
        np_ = _int(p.get("nodePort"))
        if not np_:
            continue
        key = (p.get("protocol"), np_)
        if key in seen_np:
            errs.append(duplicate(f"spec.ports[{i}].nodePort", np_))
        seen_np.add(key)
    seen_port: set[tuple] = set()
    for i, p in enumerate(ports):
        key = (p.get("protocol") or "", _int(p.get("port")))
        if key in seen_port:
            errs.append(duplicate(f"spec.ports[{i}]", go_service_port_key(*key)))
        seen_port.add(key)

    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    hints, mode = annotations.get(TOPOLOGY_HINTS_ANNOTATION), annotations.get(TOPOLOGY_MODE_ANNOTATION)
    if hints is not None and mode is not None and hints != mode:
        errs.insert(0, invalid(f"metadata.annotations[{TOPOLOGY_MODE_ANNOTATION}]", mode,
                               f"must match annotations[{TOPOLOGY_HINTS_ANNOTATION}] when both are specified"))

    ranges = spec.get("loadBalancerSourceRanges") or []
    if ranges:
        # "LoadBalancerSourceRanges" (capitalised) is kube-apiserver's own spelling of this path.
        path = "spec.LoadBalancerSourceRanges"
        if stype != LOAD_BALANCER:
            errs.append(forbidden(path, "may only be used when `type` is 'LoadBalancer'"))
        for i, v in enumerate(ranges):
            errs.extend(is_valid_cidr(f"{path}[{i}]", v.strip()))
    elif LB_SOURCE_RANGES_ANNOTATION in annotations:
        path = f"metadata.annotations[{LB_SOURCE_RANGES_ANNOTATION}]"
        if stype != LOAD_BALANCER:
            errs.append(forbidden(path, "may only be used when `type` is 'LoadBalancer'"))
        val = (annotations[LB_SOURCE_RANGES_ANNOTATION] or "").strip()
        if val:
            for v in val.split(","):
                errs.extend(is_valid_cidr(path, v.strip()))

    if spec.get("allocateLoadBalancerNodePorts") is not None and stype != LOAD_BALANCER:
        errs.append(forbidden("spec.allocateLoadBalancerNodePorts", "may only be used when `type` is 'LoadBalancer'"))
    if stype == LOAD_BALANCER and spec.get("allocateLoadBalancerNodePorts") is None:
        errs.append(required("allocateLoadBalancerNodePorts"))

    lbc = spec.get("loadBalancerClass")
    if stype == LOAD_BALANCER:
        if lbc is not None:
            errs.extend(invalid("spec.loadBalancerClass", lbc, m) for m in is_qualified_name(lbc))
    elif lbc is not None:
        errs.append(forbidden("spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'"))

    etp = spec.get("externalTrafficPolicy") or ""
    if not externally_accessible(obj):
        if etp:
            errs.append(invalid("spec.externalTrafficPolicy", etp, "may only be set for externally-accessible services"))
    elif not etp:
        errs.append(required("spec.externalTrafficPolicy"))
    elif etp not in TRAFFIC_POLICIES:
        errs.append(not_supported("spec.externalTrafficPolicy", etp, TRAFFIC_POLICIES))
    hc = spec.get("healthCheckNodePort")
    if not needs_health_check(obj):
        if _int(hc):
            errs.append(invalid("spec.healthCheckNodePort", hc,
                                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
    elif _int(hc):
        # 0 is left for admission to allocate (kube-apiserver allocates before it validates).
        errs.extend(invalid("spec.healthCheckNodePort", hc, m) for m in is_valid_port_num(hc))

    itp = spec.get("internalTrafficPolicy")
    if itp is None:
        if stype in (NODE_PORT, LOAD_BALANCER, CLUSTER_IP):
            errs.append(required("spec.internalTrafficPolicy"))
    elif itp not in TRAFFIC_POLICIES:
        errs.append(not_supported("spec.internalTrafficPolicy", itp, TRAFFIC_POLICIES))

    td = spec.get("trafficDistribution")
    if td is not None and td not in TRAFFIC_DISTRIBUTIONS:
        errs.append(not_supported("spec.trafficDistribution", td, TRAFFIC_DISTRIBUTIONS))
    return errs


def _validate_upgrade_downgrade_cluster_ips(old: dict, new: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    if spec_of(new).get("type") == EXTERNAL_NAME or spec_of(old).get("type") == EXTERNAL_NAME:
        return errs
    if is_headless(old) and is_headless(new):
        return errs
    old_ips, new_raw = cluster_ips(old), spec_of(new).get("clusterIPs")
    new_ips = list(new_raw or [])
    value = go_strings(new_raw)
    if len(old_ips) == len(new_ips):
        for i, ip in enumerate(old_ips):
            if ip != new_ips[i]:
                errs.append(invalid(f"spec.clusterIPs[{i}]", value, "may not change once set"))
    elif len(old_ips) > len(new_ips):
        if not new_ips:
            errs.append(invalid("spec.clusterIPs[0]", value, "primary clusterIP can not be unset"))
        if old_ips and new_ips and new_ips[0] != old_ips[0]:
            errs.append(invalid("spec.clusterIPs[0]", value, "may not change once set"))
        if len(new_ips) == 1 and spec_of(new).get("ipFamilyPolicy") != "SingleStack":
            errs.append(invalid("spec.ipFamilyPolicy", spec_of(new).get("ipFamilyPolicy"),
                                "must be set to 'SingleStack' when releasing the secondary clusterIP"))
    else:
        if old_ips and new_ips[0] != old_ips[0]:
            errs.append(invalid("spec.clusterIPs[0]", value, "may not change once set"))
    return errs


def _validate_upgrade_downgrade_ip_families(old: dict, new: dict) -> list[FieldError]:
    errs: list[FieldError] = []
    if spec_of(new).get("type") == EXTERNAL_NAME or spec_of(old).get("type") == EXTERNAL_NAME:
        return errs
    if is_headless(old) != is_headless(new) or is_headless(new):
        return errs
    old_f = list(spec_of(old).get("ipFamilies") or [])
    new_raw = spec_of(new).get("ipFamilies")
    new_f = list(new_raw or [])
    value = go_strings(new_raw, "[]core.IPFamily")
    ips_value = go_strings(spec_of(new).get("clusterIPs"))
    if len(old_f) == len(new_f):
        for i, f in enumerate(old_f):
            if f != new_f[i]:
                errs.append(invalid("spec.ipFamilies[0]", value, "may not change once set"))
    elif len(old_f) > len(new_f):
        if not spec_of(new).get("clusterIPs"):
            errs.append(invalid("spec.ipFamilies[0]", value, "primary ipFamily can not be unset"))
        if new_f and new_f[0] != old_f[0]:
            errs.append(invalid("spec.ipFamilies[0]", ips_value, "may not change once set"))
        if len(new_f) == 1 and spec_of(new).get("ipFamilyPolicy") != "SingleStack":
            errs.append(invalid("spec.ipFamilyPolicy", spec_of(new).get("ipFamilyPolicy"),
                                "must be set to 'SingleStack' when releasing the secondary ipFamily"))
    else:
        if old_f and new_f and new_f[0] != old_f[0]:
            errs.append(invalid("spec.ipFamilies[0]", ips_value, "may not change once set"))
    return errs


def default_lb_ip_mode(obj: dict) -> None:
    """SetDefaults_Service: ingress entries with an IP and no ipMode get VIP (LoadBalancer only)."""
    if spec_of(obj).get("type") != LOAD_BALANCER:
        return
    for ing in ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
        if isinstance(ing, dict) and ing.get("ip") and ing.get("ipMode") is None:
            ing["ipMode"] = "VIP"


def validate_load_balancer_status(obj: dict) -> list[FieldError]:
    """ValidateLoadBalancerStatus for status.loadBalancer."""
    errs: list[FieldError] = []
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    path = "status.loadBalancer.ingress"
    if spec_of(obj).get("type") != LOAD_BALANCER and ingress:
        return [forbidden(path, "may only be used when `spec.type` is 'LoadBalancer'")]
    for i, ing in enumerate(ingress):
        p = f"{path}[{i}]"
        ip, mode, host = ing.get("ip") or "", ing.get("ipMode"), ing.get("hostname") or ""
        if ip:
            errs.extend(is_valid_ip(f"{p}.ip", ip))
        if mode is None:
            if ip:
                errs.append(required(f"{p}.ipMode", "must be specified when `ip` is set"))
        elif not ip:
            errs.append(forbidden(f"{p}.ipMode", "may not be specified when `ip` is not set"))
        elif mode not in LB_IP_MODES:
            errs.append(not_supported(f"{p}.ipMode", mode, LB_IP_MODES))
        if host:
            errs.extend(invalid(f"{p}.hostname", host, m) for m in is_dns1123_subdomain(host))
            if _parse_ip(host) is not None:
                errs.append(invalid(f"{p}.hostname", host, "must be a DNS name, not an IP address"))
    return errs


def validate_service_update(new: dict, old: dict) -> list[FieldError]:
    """ValidateServiceUpdate (metadata aside): immutable addresses and families, then ValidateService."""
    errs = _validate_upgrade_downgrade_cluster_ips(old, new)
    errs.extend(_validate_upgrade_downgrade_ip_families(old, new))
    ns, os_ = spec_of(new), spec_of(old)
    if ns.get("type") == LOAD_BALANCER and os_.get("type") == LOAD_BALANCER \
            and ns.get("loadBalancerClass") != os_.get("loadBalancerClass"):
        errs.append(invalid("spec.loadBalancerClass", ns.get("loadBalancerClass"), "may not change once set"))
    if needs_health_check(old) and needs_health_check(new) \
            and _int(ns.get("healthCheckNodePort")) != _int(os_.get("healthCheckNodePort")):
        errs.append(forbidden("spec.healthCheckNodePort", "field is immutable"))
    errs.extend(validate_service(new))
    if (new.get("status") or {}) != (old.get("status") or {}):
        # a /status write (a main-resource update carries the stored status over)
        errs.extend(validate_load_balancer_status(new))
    return errs


# -- the strategy -----------------------------------------------------------------------------

class ServiceStrategy(Strategy):
    """kube-apiserver's service strategy: status handling, defaults, update preparation, validation."""

    def prepare_for_create(self, obj: dict) -> None:
        obj["status"] = {"loadBalancer": {}}

    def prepare_for_update(self, obj: dict, old: dict) -> None:
        obj["status"] = copy.deepcopy(old.get("status") or {"loadBalancer": {}})
        patch_allocated_values(obj, old)
        normalize_cluster_ips_update(obj, old)
        drop_type_dependent_fields(obj, old)

    def prepare_for_status_update(self, obj: dict, old: dict) -> None:
        obj["spec"] = copy.deepcopy(old.get("spec") or {})
        default_lb_ip_mode(obj)

    def default(self, obj: dict) -> None:
        default_service(obj)

    def default_for_storage(self, obj: dict) -> None:
        default_service_storage(obj)

    def validate(self, obj: dict) -> list[FieldError]:
        return validate_service(obj)

    def validate_update(self, obj: dict, old: dict) -> list[FieldError]:
        return validate_service_update(obj, old)


STRATEGIES[("", "Service")] = ServiceStrategy()
