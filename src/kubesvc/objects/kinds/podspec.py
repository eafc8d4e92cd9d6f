"""PodSpec defaults and validation shared by pods and pod templates
(SetDefaults_PodSpec / SetDefaults_Container and ValidatePodSpec, the parts
kubesvc's users meet)."""

from __future__ import annotations

from kubesvc.objects.errors import FieldError, duplicate, invalid, not_supported, required
from kubesvc.objects.meta import is_dns1123_label

RESTART_POLICIES = ["Always", "OnFailure", "Never"]
DNS_POLICIES = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
PULL_POLICIES = ["Always", "IfNotPresent", "Never"]
PROTOCOLS = ["SCTP", "TCP", "UDP"]


def _pull_policy(image: str) -> str:
    # SetDefaults_Container: Always for :latest or no tag, else IfNotPresent.
    ref = image.split("@")[0]
    last = ref.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    if "@" in image:
        return "IfNotPresent"
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def default_container(c: dict) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if "imagePullPolicy" not in c and isinstance(c.get("image"), str):
        c["imagePullPolicy"] = _pull_policy(c["image"])
    c.setdefault("resources", {})
    for p in c.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        pr = c.get(probe)
        if isinstance(pr, dict):
            pr.setdefault("timeoutSeconds", 1)
            pr.setdefault("periodSeconds", 10)
            pr.setdefault("successThreshold", 1)
            pr.setdefault("failureThreshold", 3)
            h = pr.get("httpGet")
            if isinstance(h, dict):
                h.setdefault("path", "/")
                h.setdefault("scheme", "HTTP")


def default_pod_spec(spec: dict) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                default_container(c)


def validate_pod_spec(spec: dict, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(spec, dict):
        return [required(path)]
    containers = spec.get("containers")
    if not containers:
        errs.append(required(f"{path}.containers"))
    names: set[str] = set()
    for key in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(key) or []):
            p = f"{path}.{key}[{i}]"
            if not isinstance(c, dict):
                errs.append(invalid(p, c, "must be an object"))
                continue
            name = c.get("name") or ""
            if not name:
                errs.append(required(f"{p}.name"))
            else:
                errs.extend(invalid(f"{p}.name", name, m) for m in is_dns1123_label(name))
                if name in names:
                    errs.append(duplicate(f"{p}.name", name))
                names.add(name)
            if not c.get("image"):
                errs.append(required(f"{p}.image"))
            if c.get("imagePullPolicy") not in (None, *PULL_POLICIES):
                errs.append(not_supported(f"{p}.imagePullPolicy", c["imagePullPolicy"], PULL_POLICIES))
            for j, port in enumerate(c.get("ports") or []):
                pp = f"{p}.ports[{j}]"
                cp = port.get("containerPort") if isinstance(port, dict) else None
                if cp is None:
                    errs.append(required(f"{pp}.containerPort"))
                elif not isinstance(cp, int) or not 1 <= cp <= 65535:
                    errs.append(invalid(f"{pp}.containerPort", cp, "must be between 1 and 65535, inclusive"))
                if isinstance(port, dict) and port.get("protocol") not in (None, *PROTOCOLS):
                    errs.append(not_supported(f"{pp}.protocol", port["protocol"], PROTOCOLS))
    rp = spec.get("restartPolicy")
    if rp is not None and rp not in RESTART_POLICIES:
        errs.append(not_supported(f"{path}.restartPolicy", rp, RESTART_POLICIES))
    dp = spec.get("dnsPolicy")
    if dp is not None and dp not in DNS_POLICIES:
        errs.append(not_supported(f"{path}.dnsPolicy", dp, DNS_POLICIES))
    tg = spec.get("terminationGracePeriodSeconds")
    if tg is not None and (not isinstance(tg, int) or tg < 0):
        errs.append(invalid(f"{path}.terminationGracePeriodSeconds", tg, "must be greater than or equal to 0"))
    return errs
