"""`kubesvc up` without root: userspace mode, hostNetwork pods, NodePorts, and saying what it cannot do.

`up` runs as uid 65534 (nobody) with no capability but reading files (the test
machine's Python lives under /root), in a throw-away namespace of its own so its
fixed ports (6443, 10250, 30080, ...) meet no one else's; all traffic is on that
namespace's loopback. The myapp pods are hostNetwork, each on its own port
(unprivileged, and one node cannot give three pods port 80), named `http`; the
service's targetPort names it, so each endpoint gets its pod's port, as in
Kubernetes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.e2e.up.harness import UpNode, wait_for

pytestmark = pytest.mark.root  # setting up the namespace and dropping to nobody needs root first

NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
          "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "--")


def hostnet_pod(i: int) -> str:
    return f"""
apiVersion: v1
kind: Pod
metadata:
  name: myapp-{i}
  labels: {{app: myapp, release: canary}}
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 2
  containers:
  - name: myapp
    image: ikubernetes/myapp:v1
    command: [sh, -c, 'd=$(mktemp -d) && echo myapp-{i} > $d/hostname.html && cd $d && exec python3 -m http.server --bind 127.0.0.1 808{i}']
    ports: [{{name: http, containerPort: 808{i}}}]
    readinessProbe: {{httpGet: {{path: /hostname.html, port: http}}, periodSeconds: 1}}
---
"""


SERVICE = """
apiVersion: v1
kind: Service
metadata:
  name: myapp
spec:
  selector: {app: myapp, release: canary}
  clusterIP: 10.99.99.99
  type: NodePort
  ports:
  - port: 80
    targetPort: http
    nodePort: 30080
---
apiVersion: v1
kind: Service
metadata:
  name: redis
spec:
  selector: {app: redis, role: logstor}
  clusterIP: 10.97.97.97
  ports:
  - port: 6379
"""


@pytest.fixture(scope="module")
def world():
    # Not under pytest's tmp (mode 700, root's): nobody must reach it by the ordinary rules.
    tmp = Path(tempfile.mkdtemp(prefix="kubesvc-up-nobody-"))
    os.chmod(tmp, 0o777)
    node = UpNode(tmp, as_user=NOBODY, client=False)
    try:
        node.start()
        yield node
    except BaseException:
        print(node.output(), node.logs())
        raise
    finally:
        node.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_up_runs_userspace_and_says_what_it_cannot_do(world):
    out = world.output()
    assert "proxy mode userspace" in out and "not root" in out
    assert "cannot: no ClusterIPs" in out and "cannot: no pod networks" in out
    assert "port 1053" in out
    assert world.state()["proxy_mode"] == "userspace"
    owner = os.stat(world.data_dir / "kubeconfig").st_uid
    assert owner == 65534  # really ran as nobody


def test_hostnetwork_pods_behind_a_nodeport_on_loopback(world):
    world.kubectl("apply", "-f", "-", input="".join(hostnet_pod(i) for i in (1, 2, 3)) + SERVICE)
    wait_for(lambda: len(world.ready_pods("app=myapp")) == 3 and len(world.endpoint_ips("myapp")) == 1, 60,
             "3 ready hostNetwork pods")
    ports = json.loads(world.kubectl("get", "endpoints", "myapp", "-o", "json").stdout)
    assert sorted(p["port"] for s in ports["subsets"] for p in s["ports"]) == [8081, 8082, 8083]
    rows = {l.split()[0]: l.split()[1:5] for l in world.kubectl("get", "svc").stdout.splitlines()[1:]}
    assert rows["myapp"] == ["NodePort", "10.99.99.99", "<none>", "80:30080/TCP"]

    def loop() -> set[str]:
        # check=False: until the proxy's first sync opens the NodePort, curl is refused (exit 7)
        # and the wait tries again.
        out = world.node("sh -c 'for i in $(seq 30); do curl -s -m 2 http://127.0.0.1:30080/hostname.html; "
                         "done'", check=False).stdout
        return set(out.split())
    wait_for(lambda: loop() == {"myapp-1", "myapp-2", "myapp-3"}, 30, "the NodePort to reach all 3 pods")


def test_cluster_dns_answers_on_the_node_port(world):
    out = world.node("dig -p 1053 -t A redis.default.svc.cluster.local. @127.0.0.1").stdout
    assert re.search(r"^redis\.default\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+10\.97\.97\.97$", out, re.M), out


def test_a_pod_network_pod_says_why_it_cannot_run(world):
    world.kubectl("apply", "-f", "-", input="""
apiVersion: v1
kind: Pod
metadata: {name: podnet}
spec:
  containers:
  - {name: c, image: busybox, command: [sleep, "3600"]}
""")
    wait_for(lambda: "only hostNetwork pods can run" in world.kubectl(
        "get", "pod", "podnet", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.message}",
        check=False).stdout, 30, "the pod to say why")


def test_explain_and_status_in_userspace(world):
    out = world.kubesvc("explain", "svc/myapp", "--data-dir", str(world.data_dir)).stdout
    assert "proxy mode: userspace" in out
    assert re.search(r"listener: tcp\s+LISTEN .*:30080", out), out
    assert "without root the userspace proxy cannot catch ClusterIP traffic" in out
    assert "myapp.default.svc.cluster.local. A → 10.99.99.99" in out  # asked of the DNS on port 1053
    st = world.kubesvc("status", "--data-dir", str(world.data_dir)).stdout
    assert "proxy mode: userspace" in st and "cannot: no ClusterIPs" in st


def test_ctrl_c_stops_the_host_network_pods(world):
    assert world.interrupt(60) == 0
    assert world.node_pids() == []
