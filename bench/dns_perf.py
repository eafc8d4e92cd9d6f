#!/usr/bin/env python3
"""Cluster DNS throughput, latency and memory: `kubesvc dns` against Knot DNS in the same run.

Method (printed again at the end):
- A real `kubesvc apiserver` on loopback is filled through its HTTP API (concurrent
  POSTs) with N selector-less ClusterIP services `svc-<i>.default` (one named port
  `http/TCP 80`) and one EndpointSlice each with E ready endpoints (10.244.x.y).
- `kubesvc dns` is started pinned to CPU 0 (taskset), fed by that API server.
  Knot DNS (knotd, one UDP worker) is pinned to the same CPU 0 and serves a zone
  file with the same names: an A record per service, an SRV record at
  `_http._tcp.svc-<i>...` with the glue A, and nothing else (so `nx-<i>` names are
  NXDOMAIN for both).
- dnsperf runs pinned to CPU 1 with a query file of 80% A hits (`svc-<r>`), 10% SRV
  (`_http._tcp.svc-<r>`) and 10% NXDOMAIN (`nx-<r>`), r uniformly random below N.
  Each server gets a warm-up pass over the whole file, then REPEATS alternating
  runs of SECONDS each. Reported: QPS, mean latency, and queries per server
  CPU-second (queries completed / (utime+stime) of the server process during the
  run), the fair measure because dnsperf on one core tops out near 100k QPS.
- Memory: VmRSS of `kubesvc dns` with 10,000 services and 50,000 endpoints
  ("pods") loaded, against CoreDNS's published formula MB = (pods+services)/1000 + 54.
- Change latency: a service POSTed to the API server, then the name polled over UDP
  every ~1 ms until it answers; p50/p99 of write-acknowledged -> answered.

Usage: python3 bench/dns_perf.py [--sizes 1000,10000] [--seconds 8] [--repeats 3] [--endpoints 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import dns.message
import dns.rcode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.lib.cluster import free_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- processes
def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


def udp_query(port: int, name: str, rdtype: str = "A", timeout: float = 1.0) -> dns.message.Message | None:
    q = dns.message.make_query(name, rdtype)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q.to_wire(), ("127.0.0.1", port))
        try:
            return dns.message.from_wire(s.recv(65535))
        except (socket.timeout, Exception):
            return None


# ---------------------------------------------------------------------------- filling the API
def endpoint_ip(k: int) -> str:
    return f"10.244.{k // 250}.{k % 250 + 1}"


async def populate(url: str, start: int, stop: int, endpoints: int, concurrency: int = 48) -> float:
    """POST services start..stop-1 and their slices; returns seconds taken."""
    sem = asyncio.Semaphore(concurrency)
    t0 = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        async def post(path: str, body: dict) -> None:
            async with sem:
                for attempt in range(5):
                    async with http.post(url + path, json=body) as r:
                        if r.status in (200, 201, 409):
                            return
                        text = await r.text()
                    await asyncio.sleep(0.2 * (attempt + 1))
                raise RuntimeError(f"POST {path}: {r.status} {text[:300]}")

        async def one(i: int) -> None:
            await post("/api/v1/namespaces/default/services", {
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": f"svc-{i}", "namespace": "default"},
                "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
            await post("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"svc-{i}-abcde", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": f"svc-{i}"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                "endpoints": [{"addresses": [endpoint_ip(i * endpoints + j)], "conditions": {"ready": True}}
                              for j in range(endpoints)]})

        await asyncio.gather(*(one(i) for i in range(start, stop)))
    return time.monotonic() - t0


async def cluster_ips(url: str) -> dict[str, str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/api/v1/namespaces/default/services") as r:
            data = await r.json()
    return {s["metadata"]["name"]: s["spec"]["clusterIP"] for s in data["items"]}


# ---------------------------------------------------------------------------- query mix and knot zone
def query_file(path: Path, n: int, count: int = 200_000, seed: int = 1) -> None:
    rnd = random.Random(seed)
    lines = []
    for _ in range(count):
        x = rnd.random()
        r = rnd.randrange(n)
        if x < 0.8:
            lines.append(f"svc-{r}.default.svc.cluster.local A")
        elif x < 0.9:
            lines.append(f"_http._tcp.svc-{r}.default.svc.cluster.local SRV")
        else:
            lines.append(f"nx-{r}.default.svc.cluster.local A")
    path.write_text("\n".join(lines) + "\n")


def knot_zone(path: Path, ips: dict[str, str], n: int, ttl: int = 30) -> None:
    out = [f"$ORIGIN cluster.local.", f"$TTL {ttl}",
           f"@ SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 {ttl}",
           "@ NS ns.dns", "ns.dns A 10.96.0.10"]
    for i in range(n):
        name = f"svc-{i}.default.svc"
        out.append(f"{name} A {ips[f'svc-{i}']}")
        out.append(f"_http._tcp.{name} SRV 0 100 80 {name}.cluster.local.")
    path.write_text("\n".join(out) + "\n")


def start_knot(workdir: Path, port: int) -> subprocess.Popen:
    conf = workdir / "knot.conf"
    conf.write_text(f"""server:
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
    rundir: {workdir}
database:
    storage: {workdir}
template:
  - id: default
    storage: {workdir}
    semantic-checks: off
zone:
  - domain: cluster.local
    file: {workdir}/cluster.local.zone
""")
    p = subprocess.Popen(["taskset", "-c", "0", "knotd", "-c", str(conf)], stdout=subprocess.DEVNULL,
                         stderr=open(workdir / "knot.log", "w"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = udp_query(port, "svc-0.default.svc.cluster.local.", timeout=0.3)
        if r is not None and r.answer:
            return p
        time.sleep(0.1)
    raise RuntimeError("knotd did not answer: " + (workdir / "knot.log").read_text()[-2000:])


# ---------------------------------------------------------------------------- dnsperf
def dnsperf(port: int, qfile: Path, seconds: float, pid: int) -> dict:
    c0 = cpu_seconds(pid)
    p = subprocess.run(["taskset", "-c", "1", "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(qfile),
                        "-l", str(seconds), "-c", "1", "-q", "200", "-t", "2"],
                       capture_output=True, text=True)
    cpu = cpu_seconds(pid) - c0
    out = p.stdout
    completed = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))
    lost = int(re.search(r"Queries lost:\s+(\d+)", out).group(1))
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))
    lat = float(re.search(r"Average Latency \(s\):\s+([\d.]+)", out).group(1))
    rc = dict(re.findall(r"(NOERROR|NXDOMAIN|SERVFAIL|FORMERR|REFUSED) (\d+)", out))
    return {"completed": completed, "lost": lost, "qps": qps, "latency_ms": lat * 1000, "cpu": cpu,
            "per_cpu_s": completed / cpu if cpu > 0 else float("nan"), "rcodes": rc}


def warm(port: int, qfile: Path) -> None:
    subprocess.run(["taskset", "-c", "1", "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(qfile),
                    "-n", "1", "-c", "1", "-q", "50", "-t", "2"], capture_output=True, text=True)


# ---------------------------------------------------------------------------- change latency
async def change_latency(url: str, dns_port: int, count: int = 100) -> list[float]:
    out = []
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.05)
    async with aiohttp.ClientSession() as http:
        for k in range(count):
            name = f"lat-{k}-{random.randrange(1 << 30)}"
            qname = f"{name}.default.svc.cluster.local."
            wire = dns.message.make_query(qname, "A").to_wire()
            sock.sendto(wire, ("127.0.0.1", dns_port))  # cache the NXDOMAIN first
            try:
                sock.recv(4096)
            except socket.timeout:
                pass
            async with http.post(url + "/api/v1/namespaces/default/services", json={
                    "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                    "spec": {"ports": [{"port": 80}]}}) as r:
                assert r.status == 201, await r.text()
            t_ack = time.monotonic()
            while True:
                sock.sendto(wire, ("127.0.0.1", dns_port))
                try:
                    data = sock.recv(4096)
                except socket.timeout:
                    continue
                if data[3] & 0x0F == dns.rcode.NOERROR and data[7] > 0:
                    break
                await asyncio.sleep(0.0005)
                if time.monotonic() - t_ack > 5:
                    raise RuntimeError("change not answered within 5 s")
            out.append(time.monotonic() - t_ack)
            async with http.delete(url + f"/api/v1/namespaces/default/services/{name}") as r:
                pass
    sock.close()
    return out


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


# ---------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--endpoints", type=int, default=5, help="ready endpoints per service")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    for tool in ("dnsperf", "knotd", "taskset"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed")

    work = Path(tempfile.mkdtemp(prefix="dns-bench-"))
    api_port, dns_port = free_port(), free_port()
    url = f"http://127.0.0.1:{api_port}"
    procs: list[subprocess.Popen] = []
    results = {}
    try:
        api = subprocess.Popen([sys.executable, "-m", "kubesvc.cli", "apiserver", "--data-dir", str(work / "api"),
                                "--listen", f"127.0.0.1:{api_port}"], stdout=open(work / "api.log", "w"),
                               stderr=subprocess.STDOUT)
        procs.append(api)
        wait_http(url + "/readyz")
        have = 0
        kdns = None
        for n in sizes:
            took = asyncio.run(populate(url, have, n, args.endpoints))
            print(f"API: created services {have}..{n - 1} (+{args.endpoints} endpoints each) in {took:.1f} s "
                  f"({(n - have) * 2 / took:.0f} objects/s)", flush=True)
            have = n
            if kdns is None:
                hp, rp, mp = free_port(), free_port(), free_port()
                kdns = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "kubesvc.cli", "dns",
                                         "--server", url, "--listen", f"127.0.0.1:{dns_port}",
                                         "--upstream", "127.0.0.1:9", "--health-listen", f"127.0.0.1:{hp}",
                                         "--ready-listen", f"127.0.0.1:{rp}", "--metrics-listen", f"127.0.0.1:{mp}"],
                                        stdout=open(work / "dns.log", "w"), stderr=subprocess.STDOUT)
                procs.append(kdns)
                wait_http(f"http://127.0.0.1:{rp}/ready")
            # wait until the last service and its endpoints are served
            deadline = time.monotonic() + 120
            while True:
                r = udp_query(dns_port, f"_http._tcp.svc-{n - 1}.default.svc.cluster.local.", "SRV")
                if r is not None and r.answer:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("kubesvc dns never served the last service")
                time.sleep(0.2)
            mem = rss_mb(kdns.pid)
            ips = asyncio.run(cluster_ips(url))
            kdir = work / f"knot-{n}"
            kdir.mkdir()
            knot_zone(kdir / "cluster.local.zone", ips, n)
            knot_port = free_port()
            knot = start_knot(kdir, knot_port)
            procs.append(knot)
            qfile = work / f"queries-{n}.txt"
            query_file(qfile, n)
            warm(dns_port, qfile)
            warm(knot_port, qfile)
            runs = {"kubesvc": [], "knot": []}
            for rep in range(args.repeats):
                for name, port, pid in (("kubesvc", dns_port, kdns.pid), ("knot", knot_port, knot.pid)):
                    r = dnsperf(port, qfile, args.seconds, pid)
                    runs[name].append(r)
                    print(f"  n={n} run {rep + 1} {name:8s} qps={r['qps']:9.0f} lat={r['latency_ms']:.3f} ms "
                          f"cpu={r['cpu']:.2f} s  q/cpu-s={r['per_cpu_s']:9.0f} lost={r['lost']} {r['rcodes']}",
                          flush=True)
            knot.terminate()
            knot.wait(10)
            procs.remove(knot)
            results[n] = {k: {m: statistics.median(x[m] for x in v) for m in ("qps", "latency_ms", "per_cpu_s")}
                          for k, v in runs.items()}
            results[n]["rss_mb"] = mem
            results[n]["rss_after_mb"] = rss_mb(kdns.pid)
        lat = asyncio.run(change_latency(url, dns_port))
        services, pods = have, have * args.endpoints
        formula = (pods + services) / 1000 + 54
        print()
        print("== results (medians) ==")
        print(f"{'services':>9} {'server':8} {'QPS':>9} {'lat ms':>7} {'q/CPU-s':>9} {'ratio vs knot':>13}")
        for n, r in results.items():
            for name in ("kubesvc", "knot"):
                ratio = r[name]["per_cpu_s"] / r["knot"]["per_cpu_s"]
                print(f"{n:>9} {name:8} {r[name]['qps']:9.0f} {r[name]['latency_ms']:7.3f} "
                      f"{r[name]['per_cpu_s']:9.0f} {ratio:13.2f}")
        last = results[sizes[-1]]
        print(f"memory: kubesvc dns RSS {last['rss_mb']:.0f} MB with {services} services + {pods} endpoints "
              f"({last['rss_after_mb']:.0f} MB after the runs, answer cache full); "
              f"CoreDNS formula (pods+services)/1000+54 = {formula:.0f} MB; ratio {last['rss_after_mb'] / formula:.2f}")
        print(f"change latency (API write acknowledged -> answered), {len(lat)} creates at {services} services: "
              f"p50 {pct(lat, 50) * 1000:.1f} ms, p99 {pct(lat, 99) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
