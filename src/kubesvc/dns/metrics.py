"""Prometheus metrics under CoreDNS's names, counted cheaply.

prometheus-client's labelled counters take a lock and a dict lookup per
increment, which would be a large share of a ~10 µs cache hit. So the server
counts in plain dicts (and cache entries count their own hits), and this module's
collector turns those into CoreDNS's metric families at scrape time:
coredns_dns_requests_total, coredns_dns_responses_total,
coredns_dns_request_duration_seconds, coredns_cache_hits_total,
coredns_cache_misses_total, coredns_cache_entries, coredns_forward_requests_total,
coredns_forward_responses_total, coredns_forward_healthcheck_failures_total,
coredns_build_info.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

import dns.rcode
import dns.rdatatype
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

if TYPE_CHECKING:
    from kubesvc.dns.answercache import AnswerCache

# CoreDNS plugin.TimeBuckets: ExponentialBuckets(0.00025, 2, 16)
BUCKETS = [0.00025 * 2 ** i for i in range(16)]
# CoreDNS reports only these query types by name; the rest are "other".
_TYPES = {"A", "AAAA", "NS", "PTR", "SOA", "CNAME", "MX", "TXT", "SRV", "NAPTR", "DS", "DNSKEY",
          "RRSIG", "NSEC", "NSEC3", "HINFO", "ANY", "AXFR", "IXFR", "OPT", "HTTPS", "SVCB"}


def type_name(qtype: int) -> str:
    try:
        name = dns.rdatatype.to_text(qtype)
    except Exception:
        return "other"
    return name if name in _TYPES else "other"


def rcode_name(rcode: int) -> str:
    try:
        return dns.rcode.to_text(rcode)
    except Exception:
        return str(rcode)


class Histogram:
    """A fixed-bucket histogram that can take many equal observations at once."""

    __slots__ = ("counts", "total", "n")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float, times: int = 1) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += times
        self.total += value * times
        self.n += times


class Metrics:
    """The DNS server's counters; ``registry`` is what /metrics exposes."""

    def __init__(self, server: str, zone: str):
        self.server = server                 # "dns://ADDR:PORT" as CoreDNS labels it
        self.zone = zone                     # "cluster.local."
        self.requests: dict[tuple[str, str, str], int] = {}   # (proto, family, type)
        self.responses: dict[str, int] = {}                   # rcode name
        self.durations: dict[str, Histogram] = {}             # type
        self.cache_hits: dict[str, int] = {"success": 0, "denial": 0}
        self.cache_misses = 0
        self.fwd_requests: dict[str, int] = {}
        self.fwd_responses: dict[tuple[str, str], int] = {}
        self.hc_failures: dict[str, int] = {}
        self.answer_cache: AnswerCache | None = None
        self.fast_family = "1"
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # --- counting (slow path; the fast path counts on cache entries) --------
    def request(self, proto: str, family: str, qtype: int) -> None:
        k = (proto, family, type_name(qtype))
        self.requests[k] = self.requests.get(k, 0) + 1

    def response(self, rcode: int, qtype: int, seconds: float) -> None:
        name = rcode_name(rcode)
        self.responses[name] = self.responses.get(name, 0) + 1
        t = type_name(qtype)
        h = self.durations.get(t)
        if h is None:
            h = self.durations[t] = Histogram()
        h.observe(seconds)

    def fast_batch(self, qtypes_seconds: float, count: int) -> None:
        """Duration of ``count`` cache hits answered in one receive batch (spread evenly)."""
        h = self.durations.get("A")
        if h is None:
            h = self.durations["A"] = Histogram()
        h.observe(qtypes_seconds / count, count)

    def cache_hit(self, kind: str) -> None:
        self.cache_hits[kind] += 1

    def cache_miss(self) -> None:
        self.cache_misses += 1

    def forward_request(self, to: str) -> None:
        self.fwd_requests[to] = self.fwd_requests.get(to, 0) + 1

    def forward_response(self, to: str, rcode: int) -> None:
        k = (to, rcode_name(rcode))
        self.fwd_responses[k] = self.fwd_responses.get(k, 0) + 1

    def healthcheck_failure(self, to: str) -> None:
        self.hc_failures[to] = self.hc_failures.get(to, 0) + 1

    # --- the collector ----------------------------------------------------------
    def collect(self):
        requests = dict(self.requests)
        responses = dict(self.responses)
        hits = dict(self.cache_hits)
        cache_entries = {"success": 0, "denial": 0}
        ac = self.answer_cache
        if ac is not None:
            for (qtype, rcode, negative), n in list(ac.retired.items()) + [
                    ((e.qtype, e.rcode, e.negative), e.hits) for e in list(ac.entries.values())]:
                if not n:
                    continue
                k = ("udp", self.fast_family, type_name(qtype))
                requests[k] = requests.get(k, 0) + n
                rn = rcode_name(rcode)
                responses[rn] = responses.get(rn, 0) + n
                hits["denial" if negative else "success"] += n
            for e in list(ac.entries.values()):
                cache_entries["denial" if e.negative else "success"] += 1
        base = {"server": self.server, "zone": self.zone, "view": ""}

        c = CounterMetricFamily("coredns_dns_requests", "Counter of DNS requests made per zone, protocol and family.",
                                labels=["server", "zone", "view", "proto", "family", "type"])
        for (proto, fam, t), n in requests.items():
            c.add_metric([self.server, self.zone, "", proto, fam, t], n)
        yield c
        c = CounterMetricFamily("coredns_dns_responses", "Counter of response status codes.",
                                labels=["server", "zone", "view", "rcode", "plugin"])
        for rc, n in responses.items():
            c.add_metric([self.server, self.zone, "", rc, "kubernetes"], n)
        yield c
        h = HistogramMetricFamily("coredns_dns_request_duration_seconds",
                                  "Histogram of the time (in seconds) each request took per zone.",
                                  labels=["server", "zone", "view", "type"])
        for t, hist in self.durations.items():
            acc, buckets = 0, []
            for bound, cnt in zip(BUCKETS + [float("inf")], hist.counts):
                acc += cnt
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), acc))
            h.add_metric([base["server"], base["zone"], "", t], buckets, hist.total)
        yield h
        c = CounterMetricFamily("coredns_cache_hits", "The count of cache hits.",
                                labels=["server", "type", "zones", "view"])
        for kind, n in hits.items():
            c.add_metric([self.server, kind, self.zone, ""], n)
        yield c
        c = CounterMetricFamily("coredns_cache_misses", "The count of cache misses.",
                                labels=["server", "zones", "view"])
        c.add_metric([self.server, self.zone, ""], self.cache_misses)
        yield c
        g = GaugeMetricFamily("coredns_cache_entries", "The number of elements in the cache.",
                              labels=["server", "type", "zones", "view"])
        for kind, n in cache_entries.items():
            g.add_metric([self.server, kind, self.zone, ""], n)
        yield g
        c = CounterMetricFamily("coredns_forward_requests", "Counter of requests made per upstream.", labels=["to"])
        for to, n in self.fwd_requests.items():
            c.add_metric([to], n)
        yield c
        c = CounterMetricFamily("coredns_forward_responses", "Counter of responses received per upstream.",
                                labels=["to", "rcode"])
        for (to, rc), n in self.fwd_responses.items():
            c.add_metric([to, rc], n)
        yield c
        c = CounterMetricFamily("coredns_forward_healthcheck_failures",
                                "Counter of the number of failed healthchecks.", labels=["to"])
        for to, n in self.hc_failures.items():
            c.add_metric([to], n)
        yield c
        g = GaugeMetricFamily("coredns_build_info", "A metric with a constant '1' value labeled by version, "
                              "revision, and goversion from which CoreDNS was built.",
                              labels=["version", "revision", "goversion"])
        g.add_metric(["kubesvc-0.1.0", "", "python3"], 1)
        yield g
