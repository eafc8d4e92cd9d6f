"""make_client(server=URL) must give a usable client (no kubeconfig, no credentials)."""

from kubesvc.client import make_client


def test_make_client_from_server_url():
    client = make_client(server="http://127.0.0.1:1")
    assert client is not None
