"""The ipvs data plane under a kernel that has IPVS: one VM boot runs every scenario.

This machine's kernel has no IPVS, so vm_scenarios.py runs inside the small VM of
run-in-ipvs-vm.sh (a Debian kernel sharing this filesystem; the repository is its
writable directory). One boot per session: software emulation makes a boot cost
about half a minute, so all ipvs scenarios are bundled into that one inner run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root
ROOT = Path(__file__).resolve().parents[3]


def vm_script() -> Path | None:
    for cand in (os.environ.get("KUBESVC_IPVS_VM", ""), ROOT.parent / "shared/tools/run-in-ipvs-vm.sh",
                 Path("/work/shared/tools/run-in-ipvs-vm.sh")):
        if cand and Path(cand).is_file():
            return Path(cand)
    return None


@pytest.mark.timeout(1800)
def test_ipvs_scenarios_in_a_vm_with_ipvs():
    script = vm_script()
    if script is None:
        pytest.skip("run-in-ipvs-vm.sh not found (set KUBESVC_IPVS_VM to its path)")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 missing")
    argv = ["bash", str(script), "-C", str(ROOT), "-e", "KUBESVC_IN_IPVS_VM=1", "-e", "PYTHONPATH",
            "--", sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-x", "-rs",
            "-o", "timeout=600", "tests/integration/proxy_ipvs/vm_scenarios.py"]
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT / 'src'}")
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1700)
    out = p.stdout + p.stderr
    if p.returncode == 125:
        pytest.skip(f"the IPVS VM could not be set up here: {out.strip()[-500:]}")
    print(out[-6000:])
    assert p.returncode == 0, out[-12000:]
    assert re.search(r"\d+ passed", out) and "skipped" not in out, out[-3000:]
