"""Request bodies in, responses out: content negotiation as kube-apiserver does it.

Owns: decoding JSON / YAML / Kubernetes protobuf request bodies with
kube-apiserver's error wording, reading the Accept header (Table, aggregated
discovery, PartialObjectMetadata), and encoding JSON responses with orjson.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import orjson
import yaml
from aiohttp import web

from kubesvc.objects.errors import StatusError, bad_request
from kubesvc.objects.patch import go_json_error
from kubesvc.objects.schema import json_kind

JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
PATCH_TYPES = ("application/strategic-merge-patch+json", "application/merge-patch+json",
               "application/json-patch+json", "application/apply-patch+yaml")


@dataclass(frozen=True)
class MediaType:
    """One entry of an Accept header: the type and its parameters (as, g, v, ...)."""

    type: str
    params: dict

    @property
    def as_(self) -> str:
        return self.params.get("as", "")


def parse_accept(header: str | None) -> list[MediaType]:
    out = []
    for part in (header or "").split(","):
        part = part.strip()
        if not part:
            continue
        fields = [f.strip() for f in part.split(";")]
        params = {}
        for f in fields[1:]:
            k, _, v = f.partition("=")
            params[k.strip().lower()] = v.strip()
        out.append(MediaType(fields[0].lower(), params))
    return out


def wants(request: web.Request, as_: str, group: str) -> MediaType | None:
    """The first Accept entry asking for a JSON `as=<as_>;g=<group>` rendering, if any."""
    for mt in parse_accept(request.headers.get("Accept")):
        if mt.as_ == as_ and mt.params.get("g") == group and mt.type in (JSON, "*/*"):
            return mt
        if mt.as_ == "" and mt.type in (JSON, "*/*", PROTOBUF, YAML):
            # A plain type earlier in the list wins (kube-apiserver picks the first it can serve).
            return None
    return None


_SERVED = (JSON, YAML, "*/*", "application/*")


def check_acceptable(header: str | None) -> None:
    """406 when the client accepts nothing we write (e.g. protobuf only).

    Responses are always JSON: clients that prefer protobuf list JSON too
    (client-go sends "application/vnd.kubernetes.protobuf, application/json")
    and read it; one that lists only protobuf is told so instead of getting
    something it cannot decode.
    """
    mts = parse_accept(header)
    if mts and not any(mt.type in _SERVED for mt in mts):
        raise StatusError(406, "NotAcceptable",
                          "only the following media types are accepted: application/json, application/yaml")


def response(obj, status: int = 200, content_type: str = JSON, headers: dict | None = None) -> web.Response:
    h = dict(headers or {})
    h["Content-Type"] = content_type
    return web.Response(body=orjson.dumps(obj), status=status, headers=h)


def error_response(err: StatusError) -> web.Response:
    return web.Response(body=orjson.dumps(err.status()), status=err.code, content_type=JSON)


def _summarize(body: bytes, n: int = 30) -> str:
    if not body:
        return "<empty>"
    if body[:1] == b"{":
        return body[:n].decode("utf-8", "replace") + (" ..." if len(body) > n else "")
    return body[:n].hex() + (" ..." if len(body) > n else "")


def decode_body(request_ct: str | None, body: bytes, expected_kind: str) -> dict:
    """An object from a create/update body; 400 with kube-apiserver's words when malformed."""
    ct = (request_ct or JSON).split(";")[0].strip().lower()
    if ct == PROTOBUF:
        try:
            from kubesvc.apiserver import protobuf
        except ImportError:
            raise StatusError(415, "UnsupportedMediaType",
                              'the body of the request was in an unknown format - accepted media types '
                              'include: application/json, application/yaml')
        try:
            obj = protobuf.decode(body, expected_kind)
        except StatusError:
            raise
        except Exception as err:
            raise bad_request(f"the object provided is unrecognized (must be of type {expected_kind}): "
                              f"{err} ({_summarize(body)})")
    elif ct in (YAML, "application/x-yaml", "text/yaml"):
        try:
            obj = yaml.safe_load(body)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = f"line {mark.line + 1}: " if mark else ""
            problem = getattr(err, "problem", None) or str(err)
            raise bad_request(f"the object provided is unrecognized (must be of type {expected_kind}): "
                              f"error converting YAML to JSON: yaml: {line}{problem} ({_summarize(body)})")
    elif ct in (JSON, "*/*", ""):
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            try:
                json.loads(body)
                raise AssertionError("unreachable")
            except json.JSONDecodeError:
                raise bad_request(f"the object provided is unrecognized (must be of type {expected_kind}): "
                                  f"couldn't get version/kind; json parse error: {go_json_error(body)} "
                                  f"({_summarize(body)})")
            except (UnicodeDecodeError, AssertionError):
                raise bad_request(f"the object provided is unrecognized (must be of type {expected_kind}): "
                                  "couldn't get version/kind; json parse error: invalid character "
                                  f"looking for beginning of value ({_summarize(body)})")
    else:
        raise StatusError(415, "UnsupportedMediaType",
                          'the body of the request was in an unknown format - accepted media types include: '
                          'application/json, application/yaml, application/vnd.kubernetes.protobuf')
    if not isinstance(obj, dict):
        raise bad_request(f"the object provided is unrecognized (must be of type {expected_kind}): "
                          "couldn't get version/kind; json parse error: json: cannot unmarshal "
                          f"{json_kind(obj)} into Go value of type struct {{ APIVersion string "
                          "\"json:\\\"apiVersion,omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" } "
                          f"({_summarize(body)})")
    return obj
