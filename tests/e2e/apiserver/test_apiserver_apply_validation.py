"""Server-side apply bodies are checked by the typed patch, not the generic decoder."""

from __future__ import annotations

import json


def _call(api, method: str, path: str, body: bytes, ct: str = "application/json") -> tuple[int, dict]:
    import urllib.error
    import urllib.request
    req = urllib.request.Request(api.url + path, method=method, data=body, headers={"Content-Type": ct})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_apply_with_unknown_fields_is_refused_by_the_typed_patch(apiserver):
    # Whatever fieldValidation says, an apply naming an undeclared field is refused with
    # kube-apiserver's typed-patch message (not the decoder's strict message, not dropped).
    body = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa-x}\nbogus: 1\n"
    for mode in ("Strict", "Warn", "Ignore"):
        code, status = _call(apiserver, "PATCH", "/api/v1/namespaces/default/configmaps/ssa-x?fieldManager=t"
                             f"&fieldValidation={mode}", body, "application/apply-patch+yaml")
        assert code == 500 and "failed to create typed patch object" in status["message"], (mode, status)
        assert ".bogus: field not declared in schema" in status["message"], status
    code, status = _call(apiserver, "PATCH", "/api/v1/namespaces/default/configmaps/ssa-x?fieldManager=t"
                         "&fieldValidation=Bogus", body, "application/apply-patch+yaml")
    assert code == 400 and 'fieldValidation: Unsupported value: "Bogus"' in status["message"], status
