"""kubesvc's kube-controller-manager and kube-scheduler: API clients that keep derived
objects true (Endpoints, EndpointSlices, ReplicaSets, Pods, pod bindings, node
podCIDRs, LoadBalancer addresses). `kubesvc controllers` runs them; see manager.py."""
