"""Prometheus metrics named as kube-proxy names them (pkg/proxy/metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# kube-proxy's buckets: exponential from 1ms
_BUCKETS = tuple(0.001 * 2 ** i for i in range(15))
_NPL_BUCKETS = (0.25, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
                45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 65, 70, 75, 80, 85, 90,
                95, 100, 105, 110, 115, 120, 150, 180, 210, 240, 270, 300)


class ProxyMetrics:
    """One registry per proxy, served on --metrics-bind-address /metrics."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.sync_duration = Histogram("kubeproxy_sync_proxy_rules_duration_seconds",
                                       "SyncProxyRules latency in seconds", registry=r, buckets=_BUCKETS)
        self.full_sync_duration = Histogram("kubeproxy_sync_full_proxy_rules_duration_seconds",
                                            "SyncProxyRules latency in seconds for full resyncs",
                                            registry=r, buckets=_BUCKETS)
        self.partial_sync_duration = Histogram("kubeproxy_sync_partial_proxy_rules_duration_seconds",
                                               "SyncProxyRules latency in seconds for partial resyncs",
                                               registry=r, buckets=_BUCKETS)
        self.last_sync = Gauge("kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                               "The last time proxy rules were successfully synced", registry=r)
        self.last_queued = Gauge("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
                                 "The last time a sync of proxy rules was queued", registry=r)
        self.programming = Histogram("kubeproxy_network_programming_duration_seconds",
                                     "In Cluster Network Programming Latency in seconds",
                                     registry=r, buckets=_NPL_BUCKETS)
        self.iptables_rules = Gauge("kubeproxy_sync_proxy_rules_iptables_total",
                                    "Total number of iptables rules owned by kube-proxy", ["table"], registry=r)
        self.restore_failures = Counter("kubeproxy_sync_proxy_rules_iptables_restore_failures",
                                        "Cumulative proxy iptables restore failures", registry=r)
        self.service_changes = Counter("kubeproxy_sync_proxy_rules_service_changes",
                                       "Cumulative proxy rules Service changes", registry=r)
        self.no_local_endpoints = Gauge("kubeproxy_sync_proxy_rules_no_local_endpoints_total",
                                        "Number of services with a Local traffic policy and no endpoints",
                                        ["traffic_policy"], registry=r)
