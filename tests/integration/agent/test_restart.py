"""Agent restarts: kill -9 leaves running pods untouched; a "reboot" brings pods back."""

from __future__ import annotations

import os
import time

import pytest

from tests.integration.agent.harness import AgentCluster, ready, web_pod
from tests.lib.netns import sh

pytestmark = pytest.mark.root


@pytest.fixture
def one_node(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces and kernel rules); CI runs as root")
    c = AgentCluster(tmp_path)
    try:
        c.setup(1)
        c.start_agent("node01")
        yield c
    finally:
        c.close()


def test_agent_kill_9_and_restart_leaves_running_pods_untouched(one_node):
    c = one_node
    n1 = c.nodes["node01"]
    c.apply(web_pod("survivor", n1.name))
    pod = c.wait_pod("survivor", ready, what="Ready")
    ip, uid = pod["status"]["podIP"], pod["metadata"]["uid"]
    pid = _pid_in(c, "survivor")

    c.kill_agent("node01")  # kill -9
    assert _pid_in(c, "survivor") == pid
    c.start_agent("node01")
    time.sleep(2)  # a few sync rounds of the new agent
    pod = c.wait_pod("survivor", ready, what="Ready after restart")
    assert _pid_in(c, "survivor") == pid  # the same process: adopted, not restarted
    assert pod["status"]["podIP"] == ip and pod["metadata"]["uid"] == uid
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    assert c.topo.run(n1.netns, f"curl -s --max-time 5 http://{ip}/hostname.html").stdout.strip() == "survivor"
    # The adopted pod is still fully managed: its end is noticed and counted...
    os.kill(pid, 9)
    pod = c.wait_pod("survivor", lambda p: p["status"]["containerStatuses"][0]["restartCount"] == 1
                     and ready(p), what="restart of the adopted container")
    assert pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 137
    assert pod["status"]["podIP"] == ip
    # ...and its deletion cleans up.
    c.kubectl("delete", "pod", "survivor", timeout=30)
    assert not [ns for ns in c.pod_netns("node01") if "-survivor-" in ns]


def test_reboot_brings_pods_back_with_their_ip(one_node):
    c = one_node
    n1 = c.nodes["node01"]
    c.apply(web_pod("phoenix", n1.name))
    ip = c.wait_pod("phoenix", ready, what="Ready")["status"]["podIP"]
    c.kill_agent("node01")
    # A reboot: every process of the pod is gone, and so is its network namespace.
    (netns,) = [ns for ns in c.pod_netns("node01") if "-phoenix-" in ns]
    for pid in sh(f"ip netns pids {netns}").stdout.split():
        os.kill(int(pid), 9)
    sh(f"ip netns del {netns}")
    c.start_agent("node01")
    pod = c.wait_pod("phoenix", lambda p: ready(p) and p["status"]["containerStatuses"][0]["restartCount"] == 1,
                     what="back after the reboot")
    assert pod["status"]["podIP"] == ip
    assert c.topo.run(n1.netns, f"curl -s --max-time 5 http://{ip}/hostname.html").stdout.strip() == "phoenix"
    assert [ns for ns in c.pod_netns("node01") if "-phoenix-" in ns]


def test_pod_deleted_while_agent_down_is_cleaned_up(one_node):
    c = one_node
    n1 = c.nodes["node01"]
    c.apply(web_pod("orphan", n1.name))
    pod = c.wait_pod("orphan", ready, what="Ready")
    pid = _pid_in(c, "orphan")
    c.kill_agent("node01")
    c.kubectl("delete", "pod", "orphan", "--grace-period=0", "--force", check=False)
    c.start_agent("node01")
    c.wait(lambda: not [ns for ns in c.pod_netns("node01") if "-orphan-" in ns], 20, "netns removed")
    c.wait(lambda: not os.path.exists(f"/proc/{pid}"), 10, "processes gone")
    assert not (n1.state_dir / "ipam" / pod["status"]["podIP"]).exists()


def _pid_in(c: AgentCluster, pod: str) -> int:
    """The host pid of the python server in the pod's network namespace."""
    (netns,) = [ns for ns in c.pod_netns("node01") if f"-{pod}-" in ns]
    pids = [int(p) for p in sh(f"ip netns pids {netns}").stdout.split()]
    servers = [p for p in pids if b"http.server" in open(f"/proc/{p}/cmdline", "rb").read()
               and b"sh\x00-c" not in open(f"/proc/{p}/cmdline", "rb").read()]
    assert len(servers) == 1, servers
    return servers[0]


def test_crash_loop_back_off_keeps_restarting_with_growing_delays(one_node):
    c = one_node
    c.kill_agent("node01")
    c.start_agent("node01", "--restart-backoff", "0.3")  # 0, 0.3, 0.6, 1.2 s ... instead of 0, 10, 20, 40
    c.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: looper}}
spec:
  nodeName: {c.nodes["node01"].name}
  restartPolicy: OnFailure
  containers:
  - {{name: c, image: busybox, command: [sh, -c, 'date +%s.%N; exit 1']}}
""")
    pod = c.wait_pod("looper", lambda p: p["status"]["containerStatuses"][0]["restartCount"] >= 4,
                     timeout=30, what="4 restarts")
    cs = pod["status"]["containerStatuses"][0]
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert pod["status"]["phase"] == "Running"  # OnFailure: restarting, not failed


def test_pods_wait_for_the_node_ipam_pod_cidr(tmp_path):
    """Without --pod-cidr the agent waits for spec.podCIDR (the node IPAM controller's job)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    c = AgentCluster(tmp_path)
    try:
        c.setup(1)
        n1 = c.start_agent("node01", pod_cidr=False, wait=False)
        node = c.wait(lambda: c.get("node", n1.name), 30, "node registered")
        c.apply(web_pod("early", n1.name))
        pod = c.wait_pod("early", lambda p: p["status"]["containerStatuses"][0]["state"]["waiting"]
                         .get("message", "").startswith("network is not ready"), what="waiting for the network")
        assert pod["status"]["phase"] == "Pending"
        node = c.get("node", n1.name)
        ready_cond = next(x for x in node["status"]["conditions"] if x["type"] == "Ready")
        assert ready_cond["status"] == "False" and "NetworkPluginNotReady" in ready_cond["message"]
        # What the node IPAM controller does:
        c.kubectl("patch", "node", n1.name, "-p", '{"spec":{"podCIDR":"10.244.7.0/24","podCIDRs":["10.244.7.0/24"]}}')
        pod = c.wait_pod("early", ready, what="Ready once the node has a pod CIDR")
        assert pod["status"]["podIP"].startswith("10.244.7.")
        # The waiting message went with the wait (kubectl describe shows status.message).
        assert "message" not in pod["status"], pod["status"]["message"]
        c.wait(lambda: c.node_ready(n1.name), 10, "node Ready")
    finally:
        c.close()


def test_deletion_completes_across_an_apiserver_restart(one_node):
    """The API server is away when a deleted pod's containers have stopped: the agent
    removes the pod object once the server is back, instead of leaving it Terminating."""
    c = one_node
    n1 = c.nodes["node01"]
    c.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: slowstop}}
spec:
  nodeName: {n1.name}
  terminationGracePeriodSeconds: 2
  containers:
  - name: stubborn
    image: busybox
    command: [sh, -c, 'trap "" TERM; sleep 3600 & wait; sleep 3600']
""")
    c.wait_pod("slowstop", ready, what="Ready")
    c.kubectl("delete", "pod", "slowstop", "--wait=false")
    c.wait(lambda: "slowstop: deletion requested" in n1.log_path.read_text(errors="replace"), 20,
           "the agent to start stopping the pod")
    c.api.stop()
    # Grace period, SIGKILL, teardown: the agent's final delete finds no server.
    c.wait(lambda: "pod default/slowstop: stopped" in n1.log_path.read_text(errors="replace"), 20,
           "the agent to stop the pod's containers")
    time.sleep(1)
    c.api.start()
    c.wait(lambda: c.get("pod", "slowstop") is None, 30, "the pod object removed after the API server is back")
