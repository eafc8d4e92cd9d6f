"""Fixtures for the agent's integration tests (root: network namespaces play the nodes)."""

from __future__ import annotations

import os

import pytest

from tests.integration.agent.harness import AgentCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """node01 and node02 with their agents, and the API server on node01."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces and kernel rules); CI runs as root")
    c = AgentCluster(tmp_path_factory.mktemp("agent"))
    try:
        c.setup(2)
        c.start_agent("node01")
        c.start_agent("node02")
        yield c
    finally:
        c.close()
