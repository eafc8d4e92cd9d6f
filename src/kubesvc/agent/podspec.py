"""What a container sees, computed from the pod spec as kubelet computes it (pure functions).

- environment: service links, then envFrom ConfigMaps, then env (with $(VAR)
  expansion, fieldRef, configMapKeyRef), plus HOSTNAME/PATH/HOME;
- argv: command + args with $(VAR) expanded;
- /etc/resolv.conf from dnsPolicy and dnsConfig; /etc/hosts, Kubernetes-managed.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(Exception):
    """The container cannot start as specified (kubelet's CreateContainerConfigError)."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes $(VAR) expansion: defined vars replaced, $$ escapes, others left as written."""
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)
    return _VAR.sub(sub, text)


def argv(container: Any, env: Mapping[str, str]) -> list[str]:
    """command + args, expanded. Without command, args alone are run (no image entrypoint here)."""
    cmd = list(container.command or [])
    args = list(container.args or [])
    if not cmd and not args:
        raise ConfigError(f"container {container.name!r} has no command: kubesvc runs containers as "
                          f"processes on the node and never pulls image {container.image!r}, "
                          f"so it has no entrypoint; set command (and args)")
    return [expand(a, env) for a in cmd + args]


def service_env(services: list[Any], namespace: str, enable_links: bool = True) -> dict[str, str]:
    """Docker-links style variables for services (kubelet's enableServiceLinks)."""
    out: dict[str, str] = {}
    for svc in services:
        md, spec = svc.metadata, svc.spec
        if spec is None or not spec.clusterIP or spec.clusterIP == "None":
            continue
        is_master = md.namespace == "default" and md.name == "kubernetes"
        if md.namespace != namespace and not is_master:
            continue
        if not enable_links and not is_master:
            continue
        prefix = md.name.upper().replace("-", "_")
        ports = spec.ports or []
        if not ports:
            continue
        ip = spec.clusterIP
        out[f"{prefix}_SERVICE_HOST"] = ip
        out[f"{prefix}_SERVICE_PORT"] = str(ports[0].port)
        for p in ports:
            if p.name:
                out[f"{prefix}_SERVICE_PORT_{p.name.upper().replace('-', '_')}"] = str(p.port)
        first = ports[0]
        out[f"{prefix}_PORT"] = f"{(first.protocol or 'TCP').lower()}://{ip}:{first.port}"
        for p in ports:
            proto = (p.protocol or "TCP")
            base = f"{prefix}_PORT_{p.port}_{proto.upper()}"
            out[base] = f"{proto.lower()}://{ip}:{p.port}"
            out[f"{base}_PROTO"] = proto.lower()
            out[f"{base}_PORT"] = str(p.port)
            out[f"{base}_ADDR"] = ip
    return out


def field_ref(pod: Any, path: str, pod_ip: str, host_ip: str) -> str:
    md, spec = pod.metadata, pod.spec
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.*)'\]", path)
    if m:
        src = (md.labels if m.group(1) == "labels" else md.annotations) or {}
        return src.get(m.group(2), "")
    simple = {
        "metadata.name": md.name, "metadata.namespace": md.namespace, "metadata.uid": md.uid,
        "spec.nodeName": spec.nodeName, "spec.serviceAccountName": spec.serviceAccountName,
        "status.podIP": pod_ip, "status.podIPs": pod_ip, "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path not in simple:
        raise ConfigError(f"unsupported fieldRef {path!r}")
    return simple[path] or ""


def container_env(pod: Any, container: Any, *, configmaps: Mapping[str, dict | None],
                  services_env: Mapping[str, str], pod_ip: str, host_ip: str,
                  hostname: str) -> dict[str, str]:
    """The environment of one container; configmaps maps name -> data (None: not found)."""
    env: dict[str, str] = {"PATH": DEFAULT_PATH, "HOSTNAME": hostname, "HOME": "/root"}
    for src in container.envFrom or []:
        if src.configMapRef is not None:
            data = configmaps.get(src.configMapRef.name)
            if data is None:
                if src.configMapRef.optional:
                    continue
                raise ConfigError(f'configmap "{src.configMapRef.name}" not found')
            for k, v in data.items():
                env[(src.prefix or "") + k] = v
        elif src.secretRef is not None and not src.secretRef.optional:
            raise ConfigError(f'secret "{src.secretRef.name}" not found')
    # $(VAR) in env values sees earlier env entries and the service variables.
    lookup = {**services_env, **env}
    for var in container.env or []:
        if var.valueFrom is None:
            value = expand(var.value or "", lookup)
        elif var.valueFrom.fieldRef is not None:
            value = field_ref(pod, var.valueFrom.fieldRef.fieldPath, pod_ip, host_ip)
        elif var.valueFrom.configMapKeyRef is not None:
            ref = var.valueFrom.configMapKeyRef
            data = configmaps.get(ref.name)
            if data is None or ref.key not in data:
                if ref.optional:
                    continue
                what = f'configmap "{ref.name}"' if data is None else f'key "{ref.key}" in configmap "{ref.name}"'
                raise ConfigError(f"{what} not found")
            value = data[ref.key]
        elif var.valueFrom.secretKeyRef is not None:
            if var.valueFrom.secretKeyRef.optional:
                continue
            raise ConfigError(f'secret "{var.valueFrom.secretKeyRef.name}" not found')
        else:
            continue
        env[var.name] = value
        lookup[var.name] = value
    for k, v in services_env.items():
        env.setdefault(k, v)
    return env


def configmap_names(container: Any) -> set[str]:
    names = {s.configMapRef.name for s in container.envFrom or [] if s.configMapRef is not None}
    names |= {v.valueFrom.configMapKeyRef.name for v in container.env or []
              if v.valueFrom is not None and v.valueFrom.configMapKeyRef is not None}
    return names


def pod_hostname(pod: Any) -> str:
    return (pod.spec.hostname or pod.metadata.name)[:63]


def resolv_conf(pod: Any, cluster_dns: str, domain: str) -> str | None:
    """The pod's resolv.conf text, or None to keep the node's (dnsPolicy Default)."""
    spec = pod.spec
    policy = spec.dnsPolicy or "ClusterFirst"
    if policy == "ClusterFirst" and spec.hostNetwork:
        policy = "Default"
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        ns = pod.metadata.namespace
        nameservers = [cluster_dns]
        searches = [f"{ns}.svc.{domain}", f"svc.{domain}", domain]
        options = ["ndots:5"]
    elif policy == "Default":
        if spec.dnsConfig is None:
            return None
        nameservers, searches, options = _host_resolv()
    cfg = spec.dnsConfig
    if cfg is not None:
        nameservers += [n for n in cfg.nameservers or [] if n not in nameservers]
        searches += [s for s in cfg.searches or [] if s not in searches]
        for opt in cfg.options or []:
            text = opt.name + (f":{opt.value}" if opt.value is not None else "")
            options = [o for o in options if o.split(":")[0] != opt.name] + [text]
    lines = [f"nameserver {n}" for n in nameservers[:3]]
    if searches:
        lines.append("search " + " ".join(searches[:32]))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def _host_resolv() -> tuple[list[str], list[str], list[str]]:
    ns: list[str] = []
    search: list[str] = []
    opts: list[str] = []
    try:
        text = open("/etc/resolv.conf").read()
    except OSError:
        return ns, search, opts
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0].startswith(("#", ";")):
            continue
        if parts[0] == "nameserver":
            ns += parts[1:2]
        elif parts[0] in ("search", "domain"):
            search = parts[1:]
        elif parts[0] == "options":
            opts += parts[1:]
    return ns, search, opts


def hosts_file(pod: Any, pod_ip: str, domain: str) -> str:
    """Kubelet's managed /etc/hosts: localhost entries, the pod's own name, hostAliases."""
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
    ]
    host = pod_hostname(pod)
    if pod.spec.subdomain:
        fqdn = f"{host}.{pod.spec.subdomain}.{pod.metadata.namespace}.svc.{domain}"
        lines.append(f"{pod_ip}\t{fqdn}\t{host}")
    elif pod_ip:
        lines.append(f"{pod_ip}\t{host}")
    if pod.spec.hostAliases:
        lines += ["", "# Entries added by HostAliases."]
        for alias in pod.spec.hostAliases:
            lines.append(f"{alias.ip}\t" + "\t".join(alias.hostnames or []))
    return "\n".join(lines) + "\n"
