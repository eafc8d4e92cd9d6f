"""The proxy engineer's file-fed driver (tests/integration/proxy/driver.py), with the nftables data plane.

Runs inside the node namespace: `python -m tests.integration.proxy_nft.nft_driver STATE`.
Everything but the informers is the production path (change tracker, ProxyServer.sync_once,
conntrack cleanup), exactly as driver.py; only the data plane it constructs differs.
"""

from __future__ import annotations

import inspect
import os
import sys

import tests.integration.proxy.driver as driver
from kubesvc.proxy.dataplanes import nft_rules
from kubesvc.proxy.dataplanes.nftables import NftablesDataPlane

if __name__ == "__main__":
    import uvloop
    # driver.main builds "IptablesDataPlane(backend)" for mode iptables: hand it ours instead.
    driver.IptablesDataPlane = lambda backend, **_: NftablesDataPlane()
    # tests of the many-endpoints path (one anonymous numgen map) lower its threshold
    nft_rules.VMAP_MIN_ENDPOINTS = int(os.environ.get("KUBESVC_TEST_VMAP_MIN", nft_rules.VMAP_MIN_ENDPOINTS))
    # main(mode, path, backend_choice, ...): later parameters get their default (or True: cleanup)
    extra = [p.default if p.default is not inspect.Parameter.empty else True
             for p in list(inspect.signature(driver.main).parameters.values())[3:]]
    uvloop.run(driver.main("iptables", sys.argv[1], "auto", *extra))
