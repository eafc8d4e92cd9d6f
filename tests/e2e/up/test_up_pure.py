"""The decisions and parsers behind `up` and `explain`, on fixed inputs (no root, no processes).

The rule texts are what kubesvc's iptables and nftables data planes printed on a
node running the seed (iptables-save, nft list table), and ipvsadm's and ss's
formats; the e2e tests cover the same against live kernels.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kubesvc.up import modes
from kubesvc.up import rules as R
from kubesvc.up.explain import EndpointInfo, Hop, PortPath, iptables_hops, ipvs_hops, nft_hops, userspace_hops
from tests.docs import docrun

IPTABLES_SAVE = """\
*filter
:KUBE-SERVICES - [0:0]
-A KUBE-SERVICES -d 10.97.97.97/32 -p tcp -m comment --comment "default/redis has no endpoints" -m tcp --dport 6379 -j REJECT --reject-with icmp-port-unreachable
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-EXT-XJWXQFJLXSXKRMSG -m comment --comment "masquerade traffic for default/myapp external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-XJWXQFJLXSXKRMSG -j KUBE-SVC-XJWXQFJLXSXKRMSG
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/myapp" -m tcp --dport 30080 -j KUBE-EXT-XJWXQFJLXSXKRMSG
-A KUBE-SEP-ADORYXOIBTVDKDBG -s 10.244.0.3/32 -m comment --comment "default/myapp" -j KUBE-MARK-MASQ
-A KUBE-SEP-ADORYXOIBTVDKDBG -p tcp -m comment --comment "default/myapp" -m tcp -j DNAT --to-destination 10.244.0.3:80
-A KUBE-SEP-OA2V4NBCEHEF5XKO -s 10.244.0.4/32 -m comment --comment "default/myapp" -j KUBE-MARK-MASQ
-A KUBE-SEP-OA2V4NBCEHEF5XKO -p tcp -m comment --comment "default/myapp" -m tcp -j DNAT --to-destination 10.244.0.4:80
-A KUBE-SEP-ZZZZZZZZZZZZZZZZ -p tcp -m comment --comment "default/myapp-svc-other" -m tcp -j DNAT --to-destination 10.244.0.3:80
-A KUBE-SERVICES -d 10.99.99.99/32 -p tcp -m comment --comment "default/myapp cluster IP" -m tcp --dport 80 -j KUBE-SVC-XJWXQFJLXSXKRMSG
-A KUBE-SERVICES -d 192.168.1.100/32 -p tcp -m comment --comment "default/myapp loadbalancer IP" -m tcp --dport 80 -j KUBE-EXT-XJWXQFJLXSXKRMSG
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-XJWXQFJLXSXKRMSG ! -s 10.244.0.0/16 -d 10.99.99.99/32 -p tcp -m comment --comment "default/myapp cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-XJWXQFJLXSXKRMSG -m comment --comment "default/myapp -> 10.244.0.3:80" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-ADORYXOIBTVDKDBG
-A KUBE-SVC-XJWXQFJLXSXKRMSG -m comment --comment "default/myapp -> 10.244.0.4:80" -j KUBE-SEP-OA2V4NBCEHEF5XKO
COMMIT
"""

NFT_TABLE = """\
table ip kube-proxy {
\tmap service-ips {
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t\telements = { 10.96.0.10 . udp . 53 : goto service-FY5PMXPG-kube-system/kube-dns/udp/dns,
\t\t\t     10.99.99.99 . tcp . 80 : goto service-6QYGQ5L4-default/myapp/tcp/ }
\t}

\tmap service-nodeports {
\t\ttype inet_proto . inet_service : verdict
\t\telements = { tcp . 30080 : goto external-6QYGQ5L4-default/myapp/tcp/ }
\t}

\tchain nat-prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tjump services
\t}

\tchain services {
\t\tip daddr . meta l4proto . th dport vmap @service-ips
\t\tfib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports
\t}

\tchain external-6QYGQ5L4-default/myapp/tcp/ {
\t\tjump mark-for-masquerade
\t\tgoto service-6QYGQ5L4-default/myapp/tcp/
\t}

\tchain service-6QYGQ5L4-default/myapp/tcp/ {
\t\tip daddr 10.99.99.99 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
\t\tmeta l4proto tcp numgen random mod 2 0 dnat to 10.244.0.3:80
\t\tmeta l4proto tcp dnat to 10.244.0.4:80
\t}
}
"""

IPVSADM = """\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.99.99.99:80 rr
  -> 10.244.0.3:80                Masq    1      0          0
  -> 10.244.0.4:80                Masq    1      0          0
TCP  192.168.1.10:30080 rr
  -> 10.244.0.3:80                Masq    1      0          0
  -> 10.244.0.4:80                Masq    1      0          0
"""


def myapp_port() -> PortPath:
    pp = PortPath("", "TCP", 80, "80", 30080)
    pp.hops = [Hop("NodePort", "192.168.1.10:30080"), Hop("ClusterIP", "10.99.99.99:80"),
               Hop("Endpoints", "PodIP:80")]
    pp.endpoints = [EndpointInfo("10.244.0.3", 80, True, True, False, "myapp-a", "node01"),
                    EndpointInfo("10.244.0.4", 80, True, True, False, "myapp-b", "node01")]
    return pp


# -- proxy mode -----------------------------------------------------------------------------

def test_auto_without_privilege_is_userspace_and_says_what_it_cannot_do():
    c = modes.choose("auto", False, (True, "the kernel has IPVS"), dns_port=1053)
    assert c.mode == "userspace" and "not root" in c.why
    assert any("no ClusterIPs" in l for l in c.limits) and any("port 1053" in l for l in c.limits)


def test_kernel_modes_without_privilege_are_refused():
    with pytest.raises(ValueError, match="needs root"):
        modes.choose("iptables", False, (False, ""))


def test_auto_as_root_follows_ipvs_presence():
    assert modes.choose("auto", True, (True, "the kernel has IPVS (x)")).mode == "ipvs"
    c = modes.choose("auto", True, (False, "the kernel has no IPVS (y)"))
    assert (c.mode, c.why, c.limits) == ("iptables", "auto: the kernel has no IPVS (y), so iptables", [])
    assert modes.choose("nftables", True, (True, "")).mode == "nftables"


def test_ipvs_detection(tmp_path: Path, monkeypatch):
    import platform
    monkeypatch.setattr(platform, "release", lambda: "6.1.0-test")
    proc, mods = tmp_path / "proc", tmp_path / "modules"
    (proc / "net").mkdir(parents=True)
    assert modes.kernel_has_ipvs(proc, mods) == (False, "the kernel has no IPVS (/proc/net/ip_vs missing, "
                                                        "no modules for kernel 6.1.0-test)")
    (mods / "6.1.0-test").mkdir(parents=True)
    (mods / "6.1.0-test" / "modules.dep").write_text("kernel/net/netfilter/ipvs/ip_vs.ko: kernel/lib/libcrc32c.ko\n")
    assert modes.kernel_has_ipvs(proc, mods)[0] is True
    (proc / "net" / "ip_vs").write_text("")
    assert "loaded" not in modes.kernel_has_ipvs(proc, mods)[1]
    assert modes.kernel_has_ipvs(proc, mods) == (True, "the kernel has IPVS (/proc/net/ip_vs exists)")


# -- rules ------------------------------------------------------------------------------------

def test_comment_names_one_service_not_a_longer_one():
    assert R.comment_matches('--comment "default/myapp cluster IP"', "default", "myapp")
    assert R.comment_matches('--comment "default/myapp:http cluster IP"', "default", "myapp")
    assert R.comment_matches('--comment "default/myapp" -m tcp', "default", "myapp")
    assert not R.comment_matches('--comment "default/myapp-svc-headless"', "default", "myapp")


def test_iptables_hops_from_a_client():
    pp = myapp_port()
    iptables_hops(pp, R.IptablesRules.parse(IPTABLES_SAVE), "default", "myapp", "10.99.99.99", "client",
                  portal=False)
    nodeport, cluster = pp.hops[0].rules, pp.hops[1].rules
    assert nodeport[0].startswith("-A PREROUTING") and "-j KUBE-NODEPORTS" in nodeport[1]
    assert any("--dport 30080 -j KUBE-EXT-" in r for r in nodeport)
    assert nodeport[-1] == "-A KUBE-EXT-XJWXQFJLXSXKRMSG -j KUBE-SVC-XJWXQFJLXSXKRMSG"
    assert cluster[0].startswith("-A KUBE-SERVICES -d 10.99.99.99/32")
    assert sum(r.startswith("-A KUBE-SVC-XJWXQFJLXSXKRMSG") for r in cluster) == 3
    assert not any("KUBE-SEP-" in r.split()[1] for r in cluster)
    assert pp.endpoints[0].rules[-1].endswith("-j DNAT --to-destination 10.244.0.3:80")
    assert all("myapp-svc-other" not in r for e in pp.endpoints for r in e.rules)


def test_iptables_loadbalancer_hop():
    pp = myapp_port()
    pp.hops.insert(0, Hop("LoadBalancer", "192.168.1.100:80"))
    iptables_hops(pp, R.IptablesRules.parse(IPTABLES_SAVE), "default", "myapp", "10.99.99.99", "client",
                  portal=False)
    lb = pp.hops[0].rules
    assert "-d 192.168.1.100/32" in lb[1] and "-j KUBE-EXT-XJWXQFJLXSXKRMSG" in lb[1]
    assert lb[-1] == "-A KUBE-EXT-XJWXQFJLXSXKRMSG -j KUBE-SVC-XJWXQFJLXSXKRMSG"


def test_iptables_entry_from_the_node_is_output():
    pp = PortPath("", "TCP", 6379, "6379", None)
    pp.hops = [Hop("entry", "node"), Hop("ClusterIP", "10.97.97.97:6379"), Hop("Endpoints", "PodIP:6379")]
    iptables_hops(pp, R.IptablesRules.parse(IPTABLES_SAVE), "default", "redis", "10.97.97.97", "node",
                  portal=False)
    assert pp.hops[0].rules == ['-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES']
    assert any("has no endpoints" in r and "REJECT" in r for r in pp.hops[1].rules)


def test_nft_hops():
    pp = myapp_port()
    nft_hops(pp, R.nft_chains(NFT_TABLE), "default", "myapp", "10.99.99.99", "client")
    assert "service-nodeports: tcp . 30080 : goto external-6QYGQ5L4-default/myapp/tcp/" in pp.hops[0].rules
    assert "service-ips: 10.99.99.99 . tcp . 80 : goto service-6QYGQ5L4-default/myapp/tcp/" in pp.hops[1].rules
    assert pp.endpoints[1].rules == ["service-6QYGQ5L4-default/myapp/tcp/: meta l4proto tcp dnat to 10.244.0.4:80"]


def test_ipvs_hops():
    pp = myapp_port()
    ipvs_hops(pp, R.ipvs_services(IPVSADM), "10.99.99.99", "192.168.1.10")
    assert pp.hops[1].rules[0] == "TCP  10.99.99.99:80 rr" and len(pp.hops[1].rules) == 3
    assert pp.hops[0].rules[0] == "TCP  192.168.1.10:30080 rr"
    assert "10.244.0.4:80" in pp.endpoints[1].rules[0]


def test_userspace_hops_as_root():
    save = ("*nat\n-A PREROUTING -m comment --comment \"handle ClusterIPs; NOTE: this must be before the NodePort "
            "rules\" -j KUBE-PORTALS-CONTAINER\n-A KUBE-PORTALS-CONTAINER -d 10.99.99.99/32 -p tcp -m comment "
            "--comment \"default/myapp\" -m tcp --dport 80 -j REDIRECT --to-ports 36327\nCOMMIT\n")
    ss = ("tcp LISTEN 0 4096 0.0.0.0:30080 0.0.0.0:* users:((\"python3\",pid=7,fd=25))\n"
          "tcp LISTEN 0 4096 0.0.0.0:36327 0.0.0.0:* users:((\"python3\",pid=7,fd=24))\n")
    pp = myapp_port()
    userspace_hops(pp, R.IptablesRules.parse(save), ss, "default", "myapp", "10.99.99.99", "client")
    assert pp.hops[0].rules == ['listener: tcp LISTEN 0 4096 0.0.0.0:30080 0.0.0.0:* users:(("python3",pid=7,fd=25))']
    assert "REDIRECT --to-ports 36327" in pp.hops[1].rules[0] and ":36327 " in pp.hops[1].rules[1]
    assert pp.endpoints[0].rules == ["the relay connects to 10.244.0.3:80 (round robin over ready endpoints)"]


def test_listeners():
    ss = ("tcp   LISTEN 0      4096         0.0.0.0:30080      0.0.0.0:*    users:((\"python3\",pid=7,fd=9))\n"
          "tcp   LISTEN 0      4096         0.0.0.0:300800     0.0.0.0:*\n")
    assert R.listeners(ss, 30080) == ['tcp LISTEN 0 4096 0.0.0.0:30080 0.0.0.0:* users:(("python3",pid=7,fd=9))']


# -- the docs runner ----------------------------------------------------------------------------

def test_docs_steps_keep_heredocs_with_their_command(tmp_path: Path):
    page = tmp_path / "p.md"
    page.write_text("text\n```console\n$ cat > a.yaml <<'EOF'\nx: 1\nEOF\n$ kubectl get svc\nNAME AGE\n```\n")
    steps = docrun.steps(page)
    assert [s.command for s in steps] == ["cat > a.yaml <<'EOF'\nx: 1\nEOF", "kubectl get svc"]
    assert steps[1].expected == ["NAME AGE"]


def test_docs_normalise_what_differs_between_runs():
    a = docrun.normalise("myapp-deployment-67f78c6cd9-d9gcm   1/1   Running   0   3m49s   10.244.0.2   node01")
    b = docrun.normalise("myapp-deployment-5d8f7c9b4f-x2x7q 1/1 Running 0 12s 10.244.0.7 node01-abc123",
                         "node01-abc123", "192.168.9.1")
    assert a == b == "myapp-deployment-POD 1/1 Running 0 AGE POD_IP NODE"
