"""Kubernetes protobuf message definitions (public field numbers of k8s.io/api), as data.

:mod:`.schema` lists every message kubesvc decodes; :mod:`kubesvc.apiserver.protobuf`
turns it into protobuf descriptors at import time, so no protoc step is needed.
"""
