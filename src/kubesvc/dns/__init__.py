"""Cluster DNS (`kubesvc dns`): kubesvc's CoreDNS, one module per concern.

records      the zone: Kubernetes DNS spec 1.1.0 with CoreDNS's kubernetes-plugin rules
sources      informers (Services, EndpointSlices, Namespaces, Pods) feeding the zone
wire         hand-parsed query header/question, prebuilt answers spliced per query
answercache  prebuilt answers, invalidated by the dependencies a change touched
server       the resolver (fast path, dnspython slow path), portable UDP and TCP servers
udpbatch     UDP through recvmmsg/sendmmsg with an exact-bytes reply table
forward      upstreams, health checks, failover, loop detection, 30 s cache
metrics      CoreDNS's metric names, counted without locks
httpd        /health, /ready, /metrics
app, cmd     wiring and the click command
"""
