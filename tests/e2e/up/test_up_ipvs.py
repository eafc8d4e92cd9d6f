"""`kubesvc up` where the kernel has IPVS: auto picks ipvs, as the seed says, and explain reads ipvsadm.

Skipped where the kernel has no IPVS (this project's build machine); run it in a
kernel that has it, e.g. `run-in-ipvs-vm.sh -C . -- python3 -m pytest
tests/e2e/up/test_up_ipvs.py` (/work/shared/tools).
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from kubesvc.up.modes import kernel_has_ipvs
from tests.e2e.up.harness import MANIFESTS, UpNode, wait_for

HAS_IPVS, WHY = kernel_has_ipvs()
pytestmark = [pytest.mark.root,
              pytest.mark.skipif(not HAS_IPVS, reason=WHY),
              pytest.mark.skipif(shutil.which("ipvsadm") is None, reason="needs ipvsadm")]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    node = UpNode(tmp_path_factory.mktemp("up-ipvs"))
    try:
        node.start(timeout=900)
        deployment = (MANIFESTS / "myapp-deployment.yaml").read_text().replace("replicas: 3", "replicas: 2")
        node.kubectl("apply", "-f", "-", input=deployment)
        node.kubectl("apply", "-f", str(MANIFESTS / "myapp-svc.yaml"))
        wait_for(lambda: len(node.endpoint_ips("myapp")) == 2, 600, "2 myapp endpoints")
        yield node
    except BaseException:
        print(node.output(), node.logs())
        raise
    finally:
        node.close()


def test_auto_picks_ipvs_and_says_why(world):
    assert "proxy mode ipvs (auto: the kernel has" in world.output()
    assert world.state()["proxy_mode"] == "ipvs"


def test_the_seed_loop_reaches_both_pods(world):
    names = {p["metadata"]["name"] for p in world.ready_pods("app=myapp")}

    def loop() -> set[str]:
        return set(world.from_client(f"sh -c 'for i in $(seq 20); do curl -s -m 5 "
                                     f"http://{world.node_ip}:30080/hostname.html; done'",
                                     timeout=180, check=False).stdout.split())
    wait_for(lambda: loop() == names, 120, "the loop to reach both pods")


def test_explain_reads_ipvsadm(world):
    out = world.kubesvc("explain", "svc/myapp", "--data-dir", str(world.data_dir), timeout=600).stdout
    assert "proxy mode: ipvs" in out
    assert re.search(r"TCP\s+10\.99\.99\.99:80 rr", out), out
    assert re.search(rf"TCP\s+{re.escape(world.node_ip)}:30080 rr", out), out
    data = json.loads(world.kubesvc("explain", "svc/myapp", "--data-dir", str(world.data_dir), "-o", "json",
                                    timeout=600).stdout)
    assert all(e["rules"] for e in data["ports"][0]["endpoints"])
