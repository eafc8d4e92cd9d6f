"""The Kubernetes-compatible API server: see docs/apiserver.md (app wires the parts together)."""
