"""Services through the real kubectl against a real kubesvc apiserver: the seed's transcripts,
`kubectl create service ...`, `kubectl expose`, every validation rule with kube-apiserver's
message, concurrent creates racing for one address, and the start-up repair.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.lib.cluster import APIServer

# The seed's manifests, byte for byte.
REDIS_SVC = """\
apiVersion: v1
kind: Service
metadata:
  name: redis
  namespace: default
spec:
  selector:
    app: redis
    role: logstor
  clusterIP: 10.97.97.97
  type: ClusterIP
  ports:
  - port: 6379
    targetPort: 6379
"""

MYAPP_SVC = """\
apiVersion: v1
kind: Service
metadata:
  name: myapp
  namespace: default
spec:
  selector:
    app: myapp
    release: canary
  clusterIP: 10.99.99.99
  type: NodePort
  ports:
  - port: 80
    targetPort: 80
    nodePort: 30080
"""

MYAPP_SVC_HEADLESS = """\
apiVersion: v1
kind: Service
metadata:
  name: myapp-svc-headless
  namespace: default
spec:
  selector:
    app: myapp
    release: canary
  clusterIP: "None"
  ports:
  - port: 80
    targetPort: 80
"""


def without_age(table: str) -> list[str]:
    """Table lines with the last column (AGE) cut off; AGE is last, so widths before it hold."""
    return [re.sub(r"\s+\S+$", "", line.rstrip()) for line in table.strip().splitlines()]


def apply(api: APIServer, tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return api.kubectl("apply", "-f", str(path), check=False)


def make(name: str, ns: str = "default", **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": spec}


def post(api: APIServer, obj: dict, ns: str = "default") -> tuple[int, dict]:
    req = urllib.request.Request(f"{api.url}/api/v1/namespaces/{ns}/services", data=json.dumps(obj).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get_svc(api: APIServer, name: str, ns: str = "default") -> dict:
    return json.loads(api.kubectl("get", "svc", name, "-n", ns, "-o", "json").stdout)


def refused(api: APIServer, tmp_path, obj: dict) -> str:
    """Apply obj with kubectl; it must fail; returns kubectl's stderr."""
    p = apply(api, tmp_path, f"{obj['metadata']['name']}.json", json.dumps(obj))
    assert p.returncode != 0, p.stdout
    return p.stderr.strip()


# -- the seed ---------------------------------------------------------------------------------

def test_seed_transcripts(apiserver, tmp_path):
    assert apply(apiserver, tmp_path, "redis-svc.yaml", REDIS_SVC).stdout == "service/redis created\n"
    assert apply(apiserver, tmp_path, "myapp-svc.yaml", MYAPP_SVC).stdout == "service/myapp created\n"
    assert without_age(apiserver.kubectl("get", "svc").stdout) == without_age("""\
NAME         TYPE        CLUSTER-IP    EXTERNAL-IP   PORT(S)        AGE
kubernetes   ClusterIP   10.96.0.1     <none>        443/TCP        5d17h
myapp        NodePort    10.99.99.99   <none>        80:30080/TCP   4s
redis        ClusterIP   10.97.97.97   <none>        6379/TCP       7m35s
""")
    assert apply(apiserver, tmp_path, "myapp-svc-headless.yaml", MYAPP_SVC_HEADLESS).stdout == \
        "service/myapp-svc-headless created\n"
    assert without_age(apiserver.kubectl("get", "svc").stdout) == without_age("""\
NAME                 TYPE        CLUSTER-IP    EXTERNAL-IP   PORT(S)        AGE
kubernetes           ClusterIP   10.96.0.1     <none>        443/TCP        5d20h
myapp                NodePort    10.99.99.99   <none>        80:30080/TCP   174m
myapp-svc-headless   ClusterIP   None          <none>        80/TCP         6s
redis                ClusterIP   10.97.97.97   <none>        6379/TCP       3h1m
""")
    assert without_age(apiserver.kubectl("get", "svc", "-n", "kube-system").stdout) == without_age("""\
NAME       TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)                  AGE
kube-dns   ClusterIP   10.96.0.10   <none>        53/UDP,53/TCP,9153/TCP   5d20h
""")
    # applying the same file again changes nothing
    assert apply(apiserver, tmp_path, "myapp-svc.yaml", MYAPP_SVC).stdout == "service/myapp unchanged\n"
    # the stored object carries kube-apiserver's defaults
    spec = get_svc(apiserver, "myapp")["spec"]
    assert spec["clusterIPs"] == ["10.99.99.99"] and spec["ipFamilies"] == ["IPv4"]
    assert spec["ipFamilyPolicy"] == "SingleStack" and spec["sessionAffinity"] == "None"
    assert spec["externalTrafficPolicy"] == "Cluster" and spec["internalTrafficPolicy"] == "Cluster"
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30080}]


def test_builtin_kubernetes_service(apiserver):
    k = get_svc(apiserver, "kubernetes")
    assert k["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes"}
    assert k["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": apiserver.port}]
    assert "selector" not in k["spec"]
    ep = json.loads(apiserver.kubectl("get", "endpoints", "kubernetes", "-o", "json").stdout)
    assert ep["subsets"][0]["ports"][0]["port"] == apiserver.port
    dns = get_svc(apiserver, "kube-dns", "kube-system")
    assert dns["spec"]["selector"] == {"k8s-app": "kube-dns"}
    assert dns["metadata"]["labels"]["kubernetes.io/name"] == "CoreDNS"


# -- kubectl create service / expose ------------------------------------------------------------

def test_kubectl_create_service_kinds(apiserver):
    k = apiserver.kubectl
    assert k("create", "service", "clusterip", "cip", "--tcp=5678:8080").stdout == "service/cip created\n"
    assert k("create", "service", "clusterip", "hl", "--clusterip=None").stdout == "service/hl created\n"
    assert k("create", "service", "nodeport", "np", "--tcp=80:8080", "--node-port=30123").stdout == \
        "service/np created\n"
    assert k("create", "service", "loadbalancer", "lb", "--tcp=443:8443").stdout == "service/lb created\n"
    assert k("create", "service", "externalname", "ext", "--external-name=db.example.com").stdout == \
        "service/ext created\n"
    rows = {line.split()[0]: line.split()[1:5] for line in k("get", "svc").stdout.splitlines()[1:]}
    assert rows["cip"][:2] == ["ClusterIP", rows["cip"][1]] and rows["cip"][3] == "5678/TCP"
    assert rows["hl"] == ["ClusterIP", "None", "<none>", "<none>"]
    assert rows["np"][0] == "NodePort" and rows["np"][3] == "80:30123/TCP"
    assert rows["lb"][0] == "LoadBalancer" and rows["lb"][2] == "<pending>"
    assert re.fullmatch(r"443:3\d{4}/TCP", rows["lb"][3])
    assert rows["ext"] == ["ExternalName", "<none>", "db.example.com", "<none>"]
    cip = get_svc(apiserver, "cip")["spec"]
    assert cip["ports"] == [{"name": "5678-8080", "port": 5678, "protocol": "TCP", "targetPort": 8080}]
    assert cip["selector"] == {"app": "cip"}


def test_kubectl_expose_deployment(apiserver):
    apiserver.kubectl("create", "deployment", "web", "--image=nginx")
    p = apiserver.kubectl("expose", "deployment", "web", "--port=80", "--target-port=8080", "--type=NodePort")
    assert p.stdout == "service/web exposed\n"
    spec = get_svc(apiserver, "web")["spec"]
    assert spec["selector"] == {"app": "web"} and spec["type"] == "NodePort"
    assert spec["ports"][0]["targetPort"] == 8080 and 30000 <= spec["ports"][0]["nodePort"] <= 32767


# -- the rules, as kubectl prints them -----------------------------------------------------------

RULES = [
    (make("Bad_Name", ports=[{"port": 80}]),
     'The Service "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a DNS-1035 label must consist '
     "of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an "
     "alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is "
     "'[a-z]([-a-z0-9]*[a-z0-9])?')"),
    (make("r-port", ports=[{"port": 70000, "targetPort": 80}]),
     'The Service "r-port" is invalid: spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, '
     "inclusive"),
    (make("r-target", ports=[{"port": 80, "targetPort": 0x10000}]),
     'The Service "r-target" is invalid: spec.ports[0].targetPort: Invalid value: 65536: must be between 1 and '
     "65535, inclusive"),
    (make("r-names", ports=[{"port": 80}, {"port": 81}]),
     'The Service "r-names" is invalid: \n* spec.ports[0].name: Required value\n* spec.ports[1].name: Required value'),
    (make("r-dupname", ports=[{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]),
     'The Service "r-dupname" is invalid: spec.ports[1].name: Duplicate value: "a"'),
    (make("r-dupport", ports=[{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]),
     'The Service "r-dupport" is invalid: spec.ports[1]: Duplicate value: core.ServicePort{Name:"", '
     'Protocol:"TCP", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, '
     'StrVal:""}, NodePort:0}'),
    (make("r-np", ports=[{"port": 80, "nodePort": 30500}]),
     "The Service \"r-np\" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` is "
     "'ClusterIP'"),
    (make("r-ext", type="ExternalName"),
     'The Service "r-ext" is invalid: spec.externalName: Required value'),
    (make("r-ext-ip", type="ExternalName", externalName="db.example.com", clusterIP="10.96.44.44"),
     'The Service "r-ext-ip" is invalid: spec.clusterIPs: Forbidden: may not be set for ExternalName services'),
    (make("r-hl-np", type="NodePort", clusterIP="None", ports=[{"port": 80}]),
     'The Service "r-hl-np" is invalid: spec.clusterIPs[0]: Invalid value: "None": may not be set to \'None\' '
     "for NodePort services"),
    (make("r-aff", ports=[{"port": 80}], sessionAffinity="Sticky"),
     'The Service "r-aff" is invalid: spec.sessionAffinity: Unsupported value: "Sticky": supported values: '
     '"ClientIP", "None"'),
    (make("r-extip", ports=[{"port": 80}], externalIPs=["127.0.0.1"]),
     'The Service "r-extip" is invalid: spec.externalIPs[0]: Invalid value: "127.0.0.1": may not be in the '
     "loopback range (127.0.0.0/8, ::1/128)"),
    (make("r-lbsr", type="LoadBalancer", ports=[{"port": 80}], loadBalancerSourceRanges=["10.0.0.0/40"]),
     'The Service "r-lbsr" is invalid: spec.LoadBalancerSourceRanges[0]: Invalid value: "10.0.0.0/40": must be a '
     "valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"),
    (make("r-range", ports=[{"port": 80}], clusterIP="192.168.0.10"),
     'The Service "r-range" is invalid: spec.clusterIPs: Invalid value: []string{"192.168.0.10"}: failed to '
     "allocate IP 192.168.0.10: the provided IP (192.168.0.10) is not in the valid range. The range of valid IPs "
     "is 10.96.0.0/12"),
    (make("r-extname", type="ExternalName", externalName="db_1.example.com"),
     'The Service "r-extname" is invalid: spec.externalName: Invalid value: "db_1.example.com": a lowercase RFC '
     "1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with "
     "an alphanumeric character (e.g. 'example.com', regex used for validation is "
     "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
    (make("r-hl-port", clusterIP="None", ports=[{"port": 80, "nodePort": 30600}]),
     "The Service \"r-hl-port\" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` is "
     "'ClusterIP'"),
    (make("r-proto", ports=[{"port": 80, "protocol": "ICMP"}]),
     'The Service "r-proto" is invalid: spec.ports[0].protocol: Unsupported value: "ICMP": supported values: '
     '"SCTP", "TCP", "UDP"'),
    (make("r-timeout", ports=[{"port": 80}], sessionAffinity="ClientIP",
          sessionAffinityConfig={"clientIP": {"timeoutSeconds": 90000}}),
     'The Service "r-timeout" is invalid: spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: '
     "90000: must be greater than 0 and less than 86400"),
    (make("r-etp", ports=[{"port": 80}], externalTrafficPolicy="Local"),
     'The Service "r-etp" is invalid: spec.externalTrafficPolicy: Invalid value: "Local": may only be set for '
     "externally-accessible services"),
    (make("r-nprange", type="NodePort", ports=[{"port": 80, "nodePort": 8080}]),
     'The Service "r-nprange" is invalid: spec.ports[0].nodePort: Invalid value: 8080: provided port is not in '
     "the valid range. The range of valid ports is 30000-32767"),
]


@pytest.mark.parametrize("obj,message", RULES, ids=[o["metadata"]["name"] for o, _ in RULES])
def test_rule_through_kubectl(apiserver, tmp_path, obj, message):
    assert refused(apiserver, tmp_path, obj) == message


def test_taken_ip_and_port_refused(apiserver, tmp_path):
    apply(apiserver, tmp_path, "a.json", json.dumps(make("taken-a", type="NodePort", clusterIP="10.98.0.5",
                                                         ports=[{"port": 80, "nodePort": 30555}])))
    assert refused(apiserver, tmp_path, make("taken-b", clusterIP="10.98.0.5", ports=[{"port": 80}])) == (
        'The Service "taken-b" is invalid: spec.clusterIPs: Invalid value: []string{"10.98.0.5"}: failed to '
        "allocate IP 10.98.0.5: provided IP is already allocated")
    assert refused(apiserver, tmp_path, make("taken-c", type="NodePort", ports=[{"port": 80, "nodePort": 30555}])) \
        == 'The Service "taken-c" is invalid: spec.ports[0].nodePort: Invalid value: 30555: provided port is ' \
           "already allocated"
    # deleting gives them back
    apiserver.kubectl("delete", "svc", "taken-a")
    assert apply(apiserver, tmp_path, "b.json", json.dumps(make("taken-b", clusterIP="10.98.0.5",
                                                                ports=[{"port": 80}]))).returncode == 0


def test_health_check_node_port_and_shared_tcp_udp_node_port(apiserver):
    code, body = post(apiserver, make("local-lb", type="LoadBalancer", externalTrafficPolicy="Local",
                                      ports=[{"name": "dns", "port": 53, "protocol": "UDP"},
                                             {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]))
    assert code == 201, body
    spec = body["spec"]
    a, b = (p["nodePort"] for p in spec["ports"])
    assert a == b, "TCP and UDP of one service port share a node port"
    assert 30000 <= spec["healthCheckNodePort"] <= 32767 and spec["healthCheckNodePort"] != a
    code, body = post(apiserver, make("local-lb2", type="LoadBalancer", externalTrafficPolicy="Local",
                                      healthCheckNodePort=spec["healthCheckNodePort"], ports=[{"port": 80}]))
    assert code == 500 and body["message"] == (
        f"Internal error occurred: failed to allocate requested HealthCheck NodePort {spec['healthCheckNodePort']}: "
        "provided port is already allocated")


def test_cluster_ip_immutable(apiserver, tmp_path):
    apiserver.kubectl("create", "service", "clusterip", "immut", "--tcp=80:80")
    p = apiserver.kubectl("patch", "svc", "immut", "-p", '{"spec":{"clusterIP":"10.96.99.99"}}', check=False)
    assert p.returncode != 0
    assert p.stderr.strip() == ('The Service "immut" is invalid: spec.clusterIPs[0]: Invalid value: '
                                '[]string{"10.96.99.99"}: may not change once set')


def test_type_transitions_through_kubectl(apiserver):
    k = apiserver.kubectl
    k("create", "service", "externalname", "trans", "--external-name=db.example.com")
    # ExternalName -> ClusterIP allocates an address
    k("patch", "svc", "trans", "-p", '{"spec":{"type":"ClusterIP","ports":[{"port":80}]}}')
    ip = get_svc(apiserver, "trans")["spec"]["clusterIP"]
    assert re.fullmatch(r"10\.(9[6-9]|10[0-9]|11[01])\.\d+\.\d+", ip)
    # ClusterIP -> NodePort gets a node port
    k("patch", "svc", "trans", "-p", '{"spec":{"type":"NodePort"}}')
    np_ = get_svc(apiserver, "trans")["spec"]["ports"][0]["nodePort"]
    # NodePort -> ClusterIP gives the node port back
    k("patch", "svc", "trans", "-p", '{"spec":{"type":"ClusterIP"}}')
    assert "nodePort" not in get_svc(apiserver, "trans")["spec"]["ports"][0]
    k("create", "service", "nodeport", "trans2", "--tcp=80:80", f"--node-port={np_}")
    # ClusterIP -> ExternalName gives the address back
    k("patch", "svc", "trans", "-p", '{"spec":{"type":"ExternalName","externalName":"db.example.com"}}')
    spec = get_svc(apiserver, "trans")["spec"]
    assert "clusterIP" not in spec and "ipFamilies" not in spec
    assert post(apiserver, make("trans3", clusterIP=ip, ports=[{"port": 80}]))[0] == 201


# -- concurrency ----------------------------------------------------------------------------------

def test_parallel_creates_for_one_ip_and_port_exactly_one_wins(apiserver):
    objs = [make(f"race-{i}", type="NodePort", clusterIP="10.100.100.100",
                 ports=[{"port": 80, "nodePort": 31111}]) for i in range(40)]
    with ThreadPoolExecutor(40) as pool:
        results = list(pool.map(lambda o: post(apiserver, o), objs))
    codes = sorted(c for c, _ in results)
    assert codes == [201] + [422] * 39
    losers = {body["message"].split(": ", 1)[1] for c, body in results if c == 422}
    assert losers <= {'spec.clusterIPs: Invalid value: []string{"10.100.100.100"}: failed to allocate IP '
                      "10.100.100.100: provided IP is already allocated",
                      "spec.ports[0].nodePort: Invalid value: 31111: provided port is already allocated"}
    # parallel random allocations never collide
    objs = [make(f"rand-{i}", type="NodePort", ports=[{"port": 80}]) for i in range(40)]
    with ThreadPoolExecutor(40) as pool:
        results = list(pool.map(lambda o: post(apiserver, o), objs))
    assert all(c == 201 for c, _ in results)
    ips = [b["spec"]["clusterIP"] for _, b in results]
    ports = [b["spec"]["ports"][0]["nodePort"] for _, b in results]
    assert len(set(ips)) == 40 and len(set(ports)) == 40


def test_parallel_kubectl_creates(apiserver):
    def run(i: int):
        return apiserver.kubectl("create", "service", "nodeport", f"kc-{i}", "--tcp=80:80", "--node-port=31222",
                                 check=False)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, range(8)))
    assert sum(p.returncode == 0 for p in results) == 1
    for p in results:
        if p.returncode:
            assert p.stderr.strip().endswith("spec.ports[0].nodePort: Invalid value: 31222: provided port is "
                                             "already allocated")


# -- restart repair ---------------------------------------------------------------------------------

def test_restart_keeps_allocations(tmp_path):
    api = APIServer(tmp_path / "api").start()
    try:
        taken = {}
        for i in range(20):
            code, body = post(api, make(f"keep-{i}", type="NodePort", ports=[{"port": 80}]))
            assert code == 201
            taken[body["spec"]["clusterIP"]] = body["spec"]["ports"][0]["nodePort"]
        post(api, make("fixed", clusterIP="10.97.97.97", ports=[{"port": 80}]))
        api.restart()
        code, body = post(api, make("again", clusterIP="10.97.97.97", ports=[{"port": 80}]))
        assert code == 422 and "provided IP is already allocated" in body["message"]
        ip, port = next(iter(taken.items()))
        code, body = post(api, make("again2", type="NodePort", ports=[{"port": 80, "nodePort": port}]))
        assert code == 422 and "provided port is already allocated" in body["message"]
        for i in range(40):
            code, body = post(api, make(f"new-{i}", type="NodePort", ports=[{"port": 80}]))
            assert code == 201
            assert body["spec"]["clusterIP"] not in taken
            assert body["spec"]["ports"][0]["nodePort"] not in taken.values()
            taken[body["spec"]["clusterIP"]] = body["spec"]["ports"][0]["nodePort"]
        # the built-ins were not created twice, and still hold their addresses
        assert get_svc(api, "kube-dns", "kube-system")["spec"]["clusterIP"] == "10.96.0.10"
        assert get_svc(api, "kubernetes")["spec"]["clusterIP"] == "10.96.0.1"
    finally:
        api.stop()


def test_restart_with_a_smaller_range_reports_what_is_outside(tmp_path):
    api = APIServer(tmp_path / "api").start()
    try:
        assert post(api, make("np", type="NodePort", ports=[{"port": 80, "nodePort": 30080}]))[0] == 201
        api.stop()
        api.extra_args = ("--service-node-port-range", "31000-31999")
        api.start()
        log = (tmp_path / "api" / "apiserver.log").read_text()
        assert ("service allocation repair: service default/np: Port 30080 is not within the port range "
                "31000-31999; please recreate service") in log
        # the service is still there, and new node ports come from the new range
        code, body = post(api, make("np2", type="NodePort", ports=[{"port": 80}]))
        assert code == 201 and 31000 <= body["spec"]["ports"][0]["nodePort"] <= 31999
    finally:
        api.stop()
