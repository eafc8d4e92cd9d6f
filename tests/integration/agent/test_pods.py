"""Pods on agent-run nodes, as a user sees them: kubectl, curl, ip netns."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import time

import pytest

from tests.integration.agent.harness import ready, web_pod

pytestmark = pytest.mark.root


def test_nodes_registered_ready_with_internal_ip(cluster):
    out = cluster.kubectl("get", "nodes", "-o", "wide").stdout
    for node in cluster.nodes.values():
        line = next(l for l in out.splitlines() if l.startswith(node.name))
        assert " Ready " in line and node.ip in line, out
    lease = cluster.get("lease", cluster.nodes["node01"].name, "kube-node-lease")
    assert lease["spec"]["holderIdentity"] == cluster.nodes["node01"].name
    node = cluster.get("node", cluster.nodes["node01"].name)
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
    assert node["spec"]["podCIDR"] == "10.244.1.0/24"


def test_node_network_bridge_routes_and_masquerade(cluster):
    n1, n2 = cluster.nodes["node01"], cluster.nodes["node02"]
    assert "inet 10.244.1.1/24" in cluster.topo.run(n1.netns, "ip addr show cni0").stdout
    # Each node routes the other's pod CIDR via the other's InternalIP.
    cluster.wait(lambda: f"10.244.1.0/24 via {n1.ip}" in cluster.topo.run(n2.netns, "ip route").stdout,
                 10, "route on node02")
    assert f"10.244.2.0/24 via {n2.ip}" in cluster.topo.run(n1.netns, "ip route").stdout
    nat = cluster.topo.run(n1.netns, "iptables-save -t nat").stdout
    assert "-A POSTROUTING -s 10.244.1.0/24 -m comment --comment \"kubesvc: masquerade pods\" " \
           "-j KUBESVC-POD-MASQ" in nat, nat
    assert "-A KUBESVC-POD-MASQ -d 10.244.0.0/16" in nat and "-j MASQUERADE" in nat
    assert cluster.topo.run(n1.netns, "cat /proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"


def test_pod_running_with_ip_answers_its_hostname(cluster):
    n1 = cluster.nodes["node01"]
    cluster.apply(web_pod("myapp-1", n1.name))
    pod = cluster.wait_pod("myapp-1", ready, what="Ready")
    ip = pod["status"]["podIP"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(n1.pod_cidr)
    wide = cluster.kubectl("get", "pods", "-o", "wide").stdout
    line = next(l for l in wide.splitlines() if l.startswith("myapp-1 "))
    assert re.search(rf"myapp-1\s+1/1\s+Running\s+0\s+\S+\s+{re.escape(ip)}\s+{n1.name}\s", line), wide
    # From the node, at the pod IP, the pod answers with its own name.
    assert cluster.topo.run(n1.netns, f"curl -s --max-time 5 http://{ip}/hostname.html").stdout.strip() == "myapp-1"
    # The agent's own endpoint lists it, as kubelet's /pods does.
    listed = json.loads(cluster.topo.run(n1.netns, "curl -s --max-time 5 http://127.0.0.1:10250/pods").stdout)
    assert "myapp-1" in [p["metadata"]["name"] for p in listed["items"]]
    assert cluster.topo.run(n1.netns, "curl -s --max-time 5 http://127.0.0.1:10250/healthz").stdout == "ok"
    # Its network namespace is a named one, visible to `ip netns`.
    assert any("-default-myapp-1-" in ns for ns in cluster.pod_netns("node01"))
    assert pod["status"]["hostIP"] == n1.ip
    assert {c["type"] for c in pod["status"]["conditions"]} >= {"PodScheduled", "Initialized",
                                                                 "ContainersReady", "Ready"}


def test_pod_on_another_node_reaches_pod_ip(cluster):
    n1, n2 = cluster.nodes["node01"], cluster.nodes["node02"]
    cluster.apply(web_pod("myapp-2", n1.name))
    ip = cluster.wait_pod("myapp-2", ready, what="Ready")["status"]["podIP"]
    cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: client-2}}
spec:
  nodeName: {n2.name}
  restartPolicy: Never
  containers:
  - name: curl
    image: curlimages/curl
    command: [curl, -s, --max-time, "5", --retry, "10", --retry-connrefused, --retry-delay, "1",
              "http://{ip}/hostname.html"]
""")
    pod = cluster.wait_pod("client-2", lambda p: p["status"].get("phase") in ("Succeeded", "Failed"),
                           what="curl to finish")
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(n2.pod_cidr)
    assert pod["status"]["phase"] == "Succeeded", cluster.kubectl("logs", "client-2", check=False).stdout
    assert cluster.kubectl("logs", "client-2").stdout.strip() == "myapp-2"


def test_container_sees_hostname_dns_config_and_env(cluster):
    n1 = cluster.nodes["node01"]
    cluster.apply(f"""
apiVersion: v1
kind: ConfigMap
metadata: {{name: envcm}}
data: {{COLOR: blue}}
---
apiVersion: v1
kind: Pod
metadata: {{name: envpod}}
spec:
  nodeName: {n1.name}
  restartPolicy: Never
  containers:
  - name: c
    image: busybox
    workingDir: /etc
    command: [sh, -c, 'hostname; pwd; cat /etc/resolv.conf; grep envpod /etc/hosts; echo "$1 $MY_IP $COLOR"', sh, '$(MY_POD)']
    envFrom: [{{configMapRef: {{name: envcm}}}}]
    env:
    - {{name: MY_POD, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: MY_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
""")
    pod = cluster.wait_pod("envpod", lambda p: p["status"].get("phase") == "Succeeded", what="Succeeded")
    ip = pod["status"]["podIP"]
    out = cluster.kubectl("logs", "envpod").stdout
    assert out.splitlines()[:2] == ["envpod", "/etc"]
    assert "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\n" \
           "options ndots:5\n" in out
    assert f"{ip}\tenvpod" in out
    assert out.splitlines()[-1] == f"envpod {ip} blue"  # $(MY_POD) in args expanded by the agent
    # `kubectl get` shows a finished pod as Completed.
    assert re.search(r"envpod\s+0/1\s+Completed\s+0", cluster.kubectl("get", "pod", "envpod").stdout)


def test_crashing_container_restarted_and_counted(cluster):
    n1 = cluster.nodes["node01"]
    cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: crasher}}
spec:
  nodeName: {n1.name}
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'echo "run at $(date +%s%N)"; echo boom >&2; exit 3']
""")
    pod = cluster.wait_pod("crasher", lambda p: p["status"]["containerStatuses"][0]["restartCount"] >= 1
                           and "waiting" in p["status"]["containerStatuses"][0]["state"],
                           what="a restart and a back-off")
    cs = pod["status"]["containerStatuses"][0]
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert "back-off 10s restarting failed container=c pod=crasher_default(" in cs["state"]["waiting"]["message"]
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert pod["status"]["phase"] == "Running"
    line = cluster.kubectl("get", "pod", "crasher").stdout.splitlines()[1]
    assert re.search(r"crasher\s+0/1\s+CrashLoopBackOff\s+1 \(\S+ ago\)", line), line
    assert "boom" in cluster.kubectl("logs", "crasher", "--previous").stdout
    events = cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=crasher").stdout
    assert "BackOff" in events


def test_failing_readiness_probe_keeps_pod_not_ready(cluster):
    n1 = cluster.nodes["node01"]
    cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: unready}}
spec:
  nodeName: {n1.name}
  containers:
  - name: c
    image: busybox
    command: [sleep, "3600"]
    readinessProbe:
      exec: {{command: [sh, -c, 'test -e /tmp/kubesvc-never-there']}}
      periodSeconds: 1
""")
    pod = cluster.wait_pod("unready", lambda p: p["status"].get("phase") == "Running", what="Running")
    time.sleep(3)
    pod = cluster.get("pod", "unready")
    assert not ready(pod)
    cond = next(c for c in pod["status"]["conditions"] if c["type"] == "ContainersReady")
    assert cond["status"] == "False" and cond["reason"] == "ContainersNotReady"
    assert re.search(r"unready\s+0/1\s+Running\s+0", cluster.kubectl("get", "pod", "unready").stdout)
    events = cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=unready").stdout
    assert "Readiness probe failed" in events
    # A probe failing every second is one Event with a growing count, not one per failure.
    unhealthy = [e for e in json.loads(cluster.kubectl(
        "get", "events", "--field-selector", "involvedObject.name=unready", "-o", "json").stdout)["items"]
        if e["reason"] == "Unhealthy"]
    assert len(unhealthy) == 1 and unhealthy[0]["count"] >= 2, unhealthy


def test_liveness_probe_failure_restarts_container(cluster):
    n1 = cluster.nodes["node01"]
    cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: notalive}}
spec:
  nodeName: {n1.name}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: [sleep, "3600"]
    livenessProbe:
      tcpSocket: {{port: 8080}}
      periodSeconds: 1
      failureThreshold: 2
""")
    pod = cluster.wait_pod("notalive", lambda p: p["status"]["containerStatuses"][0]["restartCount"] >= 1,
                           what="a liveness restart")
    assert pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] in (137, 143)


def test_kubectl_logs_tail_and_follow(cluster):
    n1 = cluster.nodes["node01"]
    cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: talker}}
spec:
  nodeName: {n1.name}
  restartPolicy: Never
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done']
""")
    cluster.wait_pod("talker", lambda p: p["status"].get("phase") == "Running", what="Running")
    # -f streams until the container ends.
    out = cluster.kubectl("logs", "-f", "talker", timeout=20).stdout
    assert out.splitlines() == [f"line {i}" for i in range(1, 6)]
    assert cluster.kubectl("logs", "talker", "--tail", "2").stdout.splitlines() == ["line 4", "line 5"]
    assert cluster.kubectl("logs", "talker", "-c", "c", "--tail", "1").stdout == "line 5\n"


def pids(pattern: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()


def test_graceful_deletion_leaves_nothing(cluster):
    n1 = cluster.nodes["node01"]
    marker = f"kubesvc-gd-{cluster.topo.token}"
    cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: goner}}
spec:
  nodeName: {n1.name}
  terminationGracePeriodSeconds: 10
  containers:
  - name: polite
    image: busybox
    command: [sh, -c, 'trap "echo got TERM; exit 0" TERM; while :; do sleep 0.1; done', {marker}-a]
  - name: stubborn
    image: busybox
    command: [sh, -c, 'trap "" TERM; sleep 3600 & wait; sleep 3600', {marker}-b]
""")
    pod = cluster.wait_pod("goner", ready, what="Ready")
    ip = pod["status"]["podIP"]
    uid = pod["metadata"]["uid"]
    assert pids(marker)
    netns = [ns for ns in cluster.pod_netns("node01") if "-goner-" in ns]
    assert len(netns) == 1
    t0 = time.monotonic()
    cluster.kubectl("delete", "pod", "goner", "--grace-period", "2", timeout=30)
    took = time.monotonic() - t0
    # The stubborn one waits out its grace period, then SIGKILL. (No lower bound: the API
    # server may remove the object itself once deletionTimestamp passes; the agent then
    # kills what is left at once.)
    assert took < 10, took
    assert cluster.get("pod", "goner") is None
    # The agent's SIGKILL comes when the grace period ends; the object may be gone just before.
    cluster.wait(lambda: not pids(marker), 5, "the pod's processes to end")
    assert not pids(marker), subprocess.run(["ps", "-o", "pid,ppid,stat,args", "-p", ",".join(pids(marker))],
                                            capture_output=True, text=True).stdout + cluster.agent_logs()
    cluster.wait(lambda: not (n1.state_dir / "pods" / uid).exists(), 5, "the pod's state removed (the last step)")
    assert not [ns for ns in cluster.pod_netns("node01") if "-goner-" in ns]
    links = cluster.topo.run(n1.netns, "ip -br link").stdout
    from kubesvc.agent.network import veth_name
    assert veth_name(uid) not in links
    assert not (n1.state_dir / "ipam" / ip).exists()
    assert not (n1.state_dir / "pods" / uid).exists()


def test_host_network_pod_uses_node_ip(cluster):
    n2 = cluster.nodes["node02"]
    cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: hostnet}}
spec:
  nodeName: {n2.name}
  hostNetwork: true
  restartPolicy: Never
  containers:
  - name: c
    image: busybox
    command: [sh, -c, 'ip -br addr show | grep -c {n2.ip}']
""")
    pod = cluster.wait_pod("hostnet", lambda p: p["status"].get("phase") in ("Succeeded", "Failed"),
                           what="done")
    assert pod["status"]["podIP"] == n2.ip
    assert cluster.kubectl("logs", "hostnet").stdout.strip() == "1"


def test_init_containers_run_first_in_order(cluster):
    n1 = cluster.nodes["node01"]
    cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: initpod}}
spec:
  nodeName: {n1.name}
  initContainers:
  - {{name: first, image: busybox, command: [sh, -c, 'sleep 3; echo first > /tmp/kubesvc-init-$(POD)']}}
  - {{name: second, image: busybox, command: [sh, -c, 'echo second >> /tmp/kubesvc-init-$(POD)']}}
  containers:
  - name: app
    image: busybox
    command: [sh, -c, 'cat /tmp/kubesvc-init-$(POD); rm -f /tmp/kubesvc-init-$(POD); exec sleep 3600']
  restartPolicy: Always
  terminationGracePeriodSeconds: 1
""".replace("$(POD)", cluster.topo.token))
    pod = cluster.wait_pod("initpod", lambda p: p["status"]["initContainerStatuses"][0]["state"].get("running"),
                           what="the first init container running")
    assert pod["status"]["phase"] == "Pending"
    init = next(c for c in pod["status"]["conditions"] if c["type"] == "Initialized")
    assert init["status"] == "False" and init["message"] == "containers with incomplete status: [first second]"
    assert pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    assert re.search(r"initpod\s+0/1\s+Init:0/2", cluster.kubectl("get", "pod", "initpod").stdout)
    pod = cluster.wait_pod("initpod", ready, what="Ready")
    assert [s["state"]["terminated"]["reason"] for s in pod["status"]["initContainerStatuses"]] == \
        ["Completed", "Completed"]
    cluster.wait(lambda: cluster.kubectl("logs", "initpod").stdout == "first\nsecond\n", 10, "app log")


def test_failing_init_container_with_restart_never_fails_the_pod(cluster):
    n1 = cluster.nodes["node01"]
    cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: badinit}}
spec:
  nodeName: {n1.name}
  restartPolicy: Never
  initContainers:
  - {{name: check, image: busybox, command: [sh, -c, 'exit 4']}}
  containers:
  - {{name: app, image: busybox, command: [sleep, "3600"]}}
""")
    pod = cluster.wait_pod("badinit", lambda p: p["status"]["phase"] == "Failed", what="Failed")
    assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 4
    assert "running" not in pod["status"]["containerStatuses"][0]["state"]


def test_container_without_command_waits_and_says_why(cluster):
    n2 = cluster.nodes["node02"]
    cluster.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: nocmd}}
spec:
  nodeName: {n2.name}
  containers:
  - {{name: web, image: nginx:1.25}}
""")
    pod = cluster.wait_pod("nocmd", lambda p: p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                           == "CreateContainerConfigError", what="CreateContainerConfigError")
    msg = pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
    assert "never pulls image 'nginx:1.25'" in msg and "set command" in msg
    assert re.search(r"nocmd\s+0/1\s+CreateContainerConfigError", cluster.kubectl("get", "pod", "nocmd").stdout)
    cluster.wait(lambda: "has no command" in cluster.kubectl(
        "get", "events", "--field-selector", "involvedObject.name=nocmd").stdout, 10, "a Failed event")
