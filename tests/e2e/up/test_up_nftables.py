"""`kubesvc up --proxy-mode nftables`: the seed's NodePort through kube-proxy's nftables table.

Smaller than the iptables run (two pods, the myapp service): the point is that
`up` passes the mode through, the proxy runs it, the outside client's loop
reaches the pods, and `kubesvc explain` reads the hops out of `nft list table ip
kube-proxy`.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from tests.e2e.up.harness import MANIFESTS, UpNode, wait_for

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(shutil.which("nft") is None, reason="needs the nft tool (nftables)")]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    node = UpNode(tmp_path_factory.mktemp("up-nft"))
    try:
        node.start("--proxy-mode", "nftables")
        deployment = (MANIFESTS / "myapp-deployment.yaml").read_text().replace("replicas: 3", "replicas: 2")
        node.kubectl("apply", "-f", "-", input=deployment)
        node.kubectl("apply", "-f", str(MANIFESTS / "myapp-svc.yaml"))
        wait_for(lambda: len(node.endpoint_ips("myapp")) == 2, 60, "2 myapp endpoints")
        yield node
    except BaseException:
        print(node.output(), node.logs())
        raise
    finally:
        node.close()


def test_up_runs_the_nftables_data_plane(world):
    assert "proxy mode nftables" in world.output()
    assert world.state()["proxy_mode"] == "nftables"
    # The endpoints reach the proxy's next sync (--min-sync-period 1s) a moment after the API has them.
    wait_for(lambda: "10.99.99.99 . tcp . 80 : goto service-" in world.node("nft list table ip kube-proxy").stdout,
             15, "myapp in the service-ips map")


def test_the_seed_loop_reaches_both_pods(world):
    names = {p["metadata"]["name"] for p in world.ready_pods("app=myapp")}

    def loop() -> set[str]:
        return set(world.from_client(f"sh -c 'for i in $(seq 20); do curl -s -m 2 "
                                     f"http://{world.node_ip}:30080/hostname.html; done'", check=False).stdout.split())
    wait_for(lambda: loop() == names, 20, "the loop to reach both pods")


def test_explain_reads_the_nft_table(world):
    out = world.kubesvc("explain", "svc/myapp", "--data-dir", str(world.data_dir)).stdout
    assert "proxy mode: nftables" in out
    assert "service-nodeports: tcp . 30080 : goto external-" in out
    assert "service-ips: 10.99.99.99 . tcp . 80 : goto service-" in out
    for ip in world.endpoint_ips("myapp"):
        assert re.search(rf"service-\S+default/myapp/tcp/: .*dnat to {re.escape(ip)}:80", out), out
    data = json.loads(world.kubesvc("explain", "svc/myapp", "--data-dir", str(world.data_dir), "-o", "json").stdout)
    assert all(e["rules"] for e in data["ports"][0]["endpoints"])
