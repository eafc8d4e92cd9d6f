"""The seed, end to end, on one `kubesvc up` (as root, iptables mode).

A namespace plays the node (`kubesvc up` runs in it), another plays the seed's
outside client (the Mac running the curl loop). The seed's three services are
applied from its YAML verbatim, beside a 3-replica myapp-deployment whose pods
answer /hostname.html with their own name; then what the seed shows is checked
through kubectl, curl, dig and `kubesvc explain`/`status`, a crash, Ctrl-C and
the next `up`.
"""

from __future__ import annotations

import ipaddress
import json
import re
import signal
import os

import pytest

from tests.e2e.up.harness import MANIFESTS, UpNode, wait_for

pytestmark = pytest.mark.root

SEED_SVC_ROWS = {  # NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S), as the seed prints them (AGE aside)
    "kubernetes": ["ClusterIP", "10.96.0.1", "<none>", "443/TCP"],
    "myapp": ["NodePort", "10.99.99.99", "<none>", "80:30080/TCP"],
    "myapp-svc-headless": ["ClusterIP", "None", "<none>", "80/TCP"],
    "redis": ["ClusterIP", "10.97.97.97", "<none>", "6379/TCP"],
}
POD_NAME = re.compile(r"^myapp-deployment-[a-z0-9]{8,10}-[a-z0-9]{5}$")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    node = UpNode(tmp_path_factory.mktemp("up"))
    try:
        node.start()
        for f in ("myapp-deployment.yaml", "redis-svc.yaml", "myapp-svc.yaml", "myapp-svc-headless.yaml"):
            node.kubectl("apply", "-f", str(MANIFESTS / f))
        wait_for(lambda: len(node.ready_pods("app=myapp")) == 3 and len(node.endpoint_ips("myapp")) == 3,
                 60, "3 ready myapp pods behind the myapp service")
        yield node
    except BaseException:
        print(node.output(), node.logs())
        raise
    finally:
        node.close()


def curl_loop(node: UpNode, times: int = 30) -> list[str]:
    """The seed's `while True; do curl http://NODE_IP:30080/hostname.html; done`, bounded, from the client."""
    out = node.from_client(f"sh -c 'for i in $(seq {times}); do curl -s -m 2 "
                           f"http://{node.node_ip}:30080/hostname.html; done'", timeout=120, check=False).stdout
    return out.split()


def test_up_says_how_to_use_kubectl_and_which_mode(world):
    out = world.output()
    assert f"export KUBECONFIG={world.data_dir / 'kubeconfig'}" in out
    assert "proxy mode iptables" in out and "no IPVS" in out  # the machine's kernel has no IPVS
    for step in ("✓ apiserver", "✓ controllers", "✓ agent", "✓ proxy", "✓ cluster DNS"):
        assert step in out


def test_kubectl_get_svc_as_the_seed_shows(world):
    lines = world.kubectl("get", "svc").stdout.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    rows = {l.split()[0]: l.split()[1:5] for l in lines[1:]}
    assert rows == SEED_SVC_ROWS
    dns = world.kubectl("get", "svc", "-n", "kube-system").stdout.splitlines()
    assert dns[1].split()[:5] == ["kube-dns", "ClusterIP", "10.96.0.10", "<none>", "53/UDP,53/TCP,9153/TCP"]


def test_kubectl_get_pods_wide_as_the_seed_shows(world):
    lines = world.kubectl("get", "pods", "-o", "wide", "-l", "app=myapp").stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED",
                                "NODE", "READINESS", "GATES"]
    rows = [l.split() for l in lines[1:]]
    assert len(rows) == 3
    for name, ready, status, restarts, _age, ip, node, nominated, gates in rows:
        assert POD_NAME.match(name), name
        assert (ready, status, restarts, node, nominated, gates) == ("1/1", "Running", "0", world.node_name,
                                                                    "<none>", "<none>")
        assert ipaddress.ip_address(ip) in ipaddress.ip_network("10.244.0.0/16")


def test_seed_curl_loop_from_outside_reaches_every_pod(world):
    names = {p["metadata"]["name"] for p in world.ready_pods("app=myapp")}
    seen = curl_loop(world)
    assert set(seen) == names, seen


def test_dig_redis_answers_its_cluster_ip_as_the_seed(world):
    out = world.node("dig -t A redis.default.svc.cluster.local. @10.96.0.10").stdout
    assert "status: NOERROR" in out and "flags: qr aa rd;" in out
    assert re.search(r"^redis\.default\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+10\.97\.97\.97$", out, re.M), out
    assert "SERVER: 10.96.0.10#53(10.96.0.10)" in out


def test_dig_headless_answers_the_pod_ips(world):
    out = world.node("dig -t A myapp-svc-headless.default.svc.cluster.local. @10.96.0.10").stdout
    answers = re.findall(r"^myapp-svc-headless\.default\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+(\S+)$", out, re.M)
    pod_ips = {p["status"]["podIP"] for p in world.ready_pods("app=myapp")}
    assert "ANSWER: 3," in out and set(answers) == pod_ips


def test_a_pod_reaches_myapp_by_name(world):
    world.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: curlimages/curl
    command: [sh, -c, 'while true; do curl -s -m 2 http://myapp.default.svc.cluster.local/hostname.html; sleep 0.3; done']
""")
    names = {p["metadata"]["name"] for p in world.ready_pods("app=myapp")}
    wait_for(lambda: set(world.kubectl("logs", "client", check=False).stdout.split()) & names, 30,
             "the client pod to fetch a myapp page by name")
    world.kubectl("delete", "pod", "client", "--wait=false")


def test_explain_names_the_real_hops(world):
    out = world.kubesvc("explain", "svc/myapp", "--data-dir", str(world.data_dir)).stdout
    pod_ips = sorted(p["status"]["podIP"] for p in world.ready_pods("app=myapp"))
    assert f"client → {world.node_ip}:30080 → 10.99.99.99:80 → PodIP:80" in out
    assert re.search(r"-A KUBE-NODEPORTS -p tcp .*--dport 30080 -j KUBE-EXT-", out)
    assert re.search(r"-A KUBE-SERVICES -d 10.99.99.99/32 -p tcp .*--dport 80 -j KUBE-SVC-", out)
    for ip in pod_ips:
        assert re.search(rf"-A KUBE-SEP-\S+ -p tcp .* -j DNAT --to-destination {re.escape(ip)}:80", out)
        assert re.search(rf"{re.escape(ip)}:80\s+pod myapp-deployment-\S+\s+node {world.node_name}\s+ready", out)
    assert "myapp.default.svc.cluster.local. A → 10.99.99.99" in out
    data = json.loads(world.kubesvc("explain", "svc/myapp", "--data-dir", str(world.data_dir), "-o", "json").stdout)
    assert data["mode"] == "iptables"
    assert [h["kind"] for h in data["ports"][0]["hops"]] == ["NodePort", "ClusterIP", "Endpoints"]
    assert sorted(e["ip"] for e in data["ports"][0]["endpoints"]) == pod_ips
    assert data["dns"][0]["answer"] == ["10.99.99.99"]
    missing = world.kubesvc("explain", "svc/nope", "--data-dir", str(world.data_dir), check=False)
    assert missing.returncode == 1 and 'services "nope" not found' in missing.stderr


def test_explain_headless_and_from_the_node(world):
    out = world.kubesvc("explain", "svc/myapp-svc-headless", "--data-dir", str(world.data_dir), "-o", "json").stdout
    data = json.loads(out)
    pod_ips = sorted(p["status"]["podIP"] for p in world.ready_pods("app=myapp"))
    assert [h["kind"] for h in data["ports"][0]["hops"]] == ["Headless"]
    assert data["dns"][0]["answer"] == data["dns"][0]["expected"] == pod_ips
    out = world.kubesvc("explain", "svc/redis", "--from", "node", "--data-dir", str(world.data_dir)).stdout
    assert '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in out
    assert re.search(r'-d 10.97.97.97/32 .*"default/redis has no endpoints".* -j REJECT', out)
    assert "has no endpoints: connections are refused" in out


def test_status_shows_components_mode_and_counts(world):
    p = world.kubesvc("status", "--data-dir", str(world.data_dir))
    assert "proxy mode: iptables" in p.stdout
    for comp in ("apiserver", "controllers", "agent", "proxy", "cluster DNS"):
        assert re.search(rf"^{comp}\s+.*\b(ok|process alive)\b", p.stdout, re.M), p.stdout
    info = json.loads(world.kubesvc("status", "--data-dir", str(world.data_dir), "-o", "json").stdout)
    assert info["counts"]["servicesByType"]["NodePort"] == 1 and info["counts"]["servicesByType"]["headless"] == 1


def test_scaling_to_2_changes_what_the_loop_sees(world):
    world.kubectl("scale", "deployment", "myapp-deployment", "--replicas=2")
    wait_for(lambda: len(world.endpoint_ips("myapp")) == 2 and len(world.ready_pods("app=myapp")) == 2, 60,
             "2 myapp endpoints")
    names = {p["metadata"]["name"] for p in world.ready_pods("app=myapp")}
    # The proxy syncs within its min-sync-period (1s) of the endpoint change.
    wait_for(lambda: set(curl_loop(world, 20)) == names, 20, "the loop to see exactly the 2 pods")


def test_a_crashed_component_is_restarted_and_reported(world):
    pid = next(c["pid"] for c in world.state()["components"] if c["name"] == "controllers")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: "controllers restarted" in world.output(), 20, "up to restart the controllers")
    assert "controllers exited with -9" in world.output()
    comp = next(c for c in world.state()["components"] if c["name"] == "controllers")
    assert comp["restarts"] == 1 and comp["pid"] != pid


def test_ctrl_c_stops_everything_and_the_next_up_brings_the_world_back(world):
    assert world.interrupt(90) == 0
    assert "kubesvc stopped" in world.output()
    assert world.pod_namespaces() == []  # pods stopped, their namespaces gone
    assert world.node_pids() == []
    world.start()
    wait_for(lambda: len(world.ready_pods("app=myapp")) == 2 and len(world.endpoint_ips("myapp")) == 2, 60,
             "the 2 stored myapp pods running again")
    names = {p["metadata"]["name"] for p in world.ready_pods("app=myapp")}
    wait_for(lambda: set(curl_loop(world, 20)) == names, 20, "the loop to reach the pods again")
