"""What a container sees, computed from the pod spec (no root, no processes)."""

from __future__ import annotations

import pytest
from lightkube import codecs

from kubesvc.agent import podspec


def pod(spec: dict, name: str = "web-1", ns: str = "shop") -> object:
    return codecs.from_dict({"apiVersion": "v1", "kind": "Pod",
                             "metadata": {"name": name, "namespace": ns, "uid": "u-1", "labels": {"app": "web"}},
                             "spec": {"nodeName": "node01", **spec}})


def svc(name: str, ns: str, ip: str, ports: list[dict]) -> object:
    return codecs.from_dict({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
                             "spec": {"clusterIP": ip, "ports": ports}})


def test_expand_follows_kubernetes_rules():
    env = {"A": "1", "B": "two"}
    assert podspec.expand("$(A)-$(B)", env) == "1-two"
    assert podspec.expand("$(MISSING)", env) == "$(MISSING)"
    assert podspec.expand("$$(A)", env) == "$(A)"
    assert podspec.expand("$A", env) == "$A"


def test_argv_without_command_is_a_config_error_naming_the_image():
    p = pod({"containers": [{"name": "c", "image": "nginx"}]})
    with pytest.raises(podspec.ConfigError, match="never pulls image 'nginx'"):
        podspec.argv(p.spec.containers[0], {})
    p = pod({"containers": [{"name": "c", "image": "x", "command": ["echo"], "args": ["$(X)"]}]})
    assert podspec.argv(p.spec.containers[0], {"X": "hi"}) == ["echo", "hi"]


def test_env_order_fieldrefs_configmaps_and_service_links():
    p = pod({"containers": [{"name": "c", "image": "x", "command": ["true"],
                             "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
                             "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                     {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                                     {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                                     {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
                                     {"name": "URL", "value": "http://$(REDIS_SERVICE_HOST):$(REDIS_SERVICE_PORT)"}]}]})
    services = [svc("redis", "shop", "10.97.97.97", [{"port": 6379, "protocol": "TCP"}]),
                svc("kubernetes", "default", "10.96.0.1", [{"name": "https", "port": 443, "protocol": "TCP"}]),
                svc("other", "elsewhere", "10.99.0.1", [{"port": 80, "protocol": "TCP"}])]
    senv = podspec.service_env(services, "shop")
    env = podspec.container_env(p, p.spec.containers[0], configmaps={"cm": {"k": "v"}}, services_env=senv,
                                pod_ip="10.244.1.5", host_ip="192.168.0.1", hostname="web-1")
    assert env["POD"] == "web-1" and env["APP"] == "web" and env["IP"] == "10.244.1.5"
    assert env["CM_k"] == "v" and env["K"] == "v"
    assert env["URL"] == "http://10.97.97.97:6379"
    assert env["REDIS_PORT_6379_TCP"] == "tcp://10.97.97.97:6379"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1" and env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert "OTHER_SERVICE_HOST" not in env
    assert env["HOSTNAME"] == "web-1"


def test_missing_configmap_is_an_error_unless_optional():
    c = {"name": "c", "image": "x", "command": ["true"], "envFrom": [{"configMapRef": {"name": "nope"}}]}
    p = pod({"containers": [c]})
    with pytest.raises(podspec.ConfigError, match='configmap "nope" not found'):
        podspec.container_env(p, p.spec.containers[0], configmaps={"nope": None}, services_env={},
                              pod_ip="", host_ip="", hostname="h")
    c["envFrom"][0]["configMapRef"]["optional"] = True
    p = pod({"containers": [c]})
    podspec.container_env(p, p.spec.containers[0], configmaps={"nope": None}, services_env={},
                          pod_ip="", host_ip="", hostname="h")


def test_resolv_conf_cluster_first_and_dns_config():
    p = pod({"containers": []})
    assert podspec.resolv_conf(p, "10.96.0.10", "cluster.local") == (
        "nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n")
    p = pod({"containers": [], "dnsConfig": {"searches": ["corp.example"], "options": [{"name": "ndots", "value": "2"}]}})
    text = podspec.resolv_conf(p, "10.96.0.10", "cluster.local")
    assert "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example" in text
    assert "options ndots:2" in text
    p = pod({"containers": [], "dnsPolicy": "None",
             "dnsConfig": {"nameservers": ["1.1.1.1"]}})
    assert podspec.resolv_conf(p, "10.96.0.10", "cluster.local") == "nameserver 1.1.1.1\n"
    # hostNetwork with ClusterFirst falls back to the node's resolv.conf, as kubelet does.
    assert podspec.resolv_conf(pod({"containers": [], "hostNetwork": True}), "10.96.0.10", "cluster.local") is None


def test_hosts_file_has_pod_name_subdomain_and_aliases():
    p = pod({"containers": [], "hostname": "db-0", "subdomain": "db",
             "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}]})
    text = podspec.hosts_file(p, "10.244.1.9", "cluster.local")
    assert text.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert "10.244.1.9\tdb-0.db.shop.svc.cluster.local\tdb-0\n" in text
    assert "# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n" in text
