"""Shared fixtures: a real API server, and a root-only marker that skips with a reason."""

from __future__ import annotations

import os

import pytest

from tests.lib.cluster import APIServer


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (network namespaces and kernel rules); CI runs as root")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory):
    """A kubesvc apiserver on a free loopback port, shared by one test module."""
    server = APIServer(tmp_path_factory.mktemp("apiserver")).start()
    yield server
    server.stop()
