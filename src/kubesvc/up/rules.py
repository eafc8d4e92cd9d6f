"""Reading back what a data plane put in the kernel, for `kubesvc explain`.

Each reader takes the real text a user would read (`iptables-save`, `nft list
table`, `ipvsadm -Ln`, `ss -ltnu`) and picks the lines that carry one service
port's traffic for one hop. The parsing is pure (text in, lines out) so it is
tested on captured output; `capture_*` runs the tools.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field


def run(argv: list[str]) -> str:
    """A tool's stdout, or '' when it is missing or fails (no privileges, no such table)."""
    if shutil.which(argv[0]) is None:
        return ""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return p.stdout if p.returncode == 0 else ""


# -- iptables (the iptables data plane and userspace's portal rules) -------------------------

@dataclass
class Rule:
    table: str
    chain: str
    text: str  # as iptables-save prints it: -A CHAIN ...

    @property
    def target(self) -> str | None:
        m = re.search(r" -j (\S+)", self.text)
        return m.group(1) if m else None


@dataclass
class IptablesRules:
    """iptables-save output, indexed by (table, chain)."""

    rules: list[Rule] = field(default_factory=list)
    source: str = "iptables-save"

    @classmethod
    def parse(cls, text: str, source: str = "iptables-save") -> "IptablesRules":
        out, table = cls(source=source), ""
        for line in text.splitlines():
            if line.startswith("*"):
                table = line[1:].strip()
            elif line.startswith("-A "):
                out.rules.append(Rule(table, line.split()[1], line))
        return out

    @classmethod
    def capture(cls) -> "IptablesRules":
        """The backend holding kube chains (legacy or nft), as the proxy picked it."""
        fallback = None
        for tool in ("iptables-save", "iptables-nft-save", "iptables-legacy-save"):
            text = run([tool])
            parsed = cls.parse(text, tool)
            if any(r.chain.startswith("KUBE-") for r in parsed.rules):
                return parsed
            fallback = fallback or parsed
        return fallback or cls()

    def chain(self, name: str, table: str = "nat") -> list[Rule]:
        return [r for r in self.rules if r.chain == name and r.table == table]

    def matching(self, table: str, chain: str, *needles: str) -> list[Rule]:
        return [r for r in self.chain(chain, table) if all(n in r.text for n in needles)]


def comment_matches(text: str, ns: str, name: str) -> bool:
    """A kube-proxy comment naming this service (ns/name or ns/name:port), not a longer name."""
    return re.search(rf'--comment "?{re.escape(ns)}/{re.escape(name)}([: "]|$)', text) is not None


def follow(rules: IptablesRules, start: list[Rule], stop_prefixes: tuple[str, ...] = ()) -> list[Rule]:
    """start, then the rules of every KUBE-* chain they jump to (not into stop_prefixes)."""
    out, seen = list(start), set()
    queue = [r.target for r in start]
    while queue:
        target = queue.pop(0)
        if not target or not target.startswith("KUBE-") or target in seen or target.startswith(stop_prefixes):
            continue
        if target in ("KUBE-MARK-MASQ", "KUBE-SERVICES", "KUBE-NODEPORTS"):
            continue
        seen.add(target)
        chain = rules.chain(target)
        out.extend(chain)
        queue.extend(r.target for r in chain)
    return out


# -- nftables ------------------------------------------------------------------------------

def nft_chains(text: str) -> dict[str, list[str]]:
    """`nft list table` output as {chain or map/set name: its body lines}."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        s = line.strip()
        m = re.match(r'(chain|map|set) (\S+) \{$', s)
        if m:
            current = m.group(2).strip('"')
            out[current] = []
        elif s == "}" and line.startswith("\t}") and not line.startswith("\t\t"):
            current = None
        elif current is not None and s:
            out[current].append(s)
    return out


# -- ipvs ----------------------------------------------------------------------------------

def ipvs_services(text: str) -> dict[str, list[str]]:
    """`ipvsadm -Ln` as {"TCP 10.99.99.99:80": [service line, "-> real server" lines...]}."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"^(TCP|UDP|SCTP)\s+(\S+)", line)
        if m:
            current = f"{m.group(1)} {m.group(2)}"
            out[current] = [line.rstrip()]
        elif current and line.strip().startswith("->"):
            out[current].append(line.rstrip())
    return out


# -- listeners (userspace) -----------------------------------------------------------------

def listeners(text: str, port: int) -> list[str]:
    """`ss -Hltunp` lines listening on port."""
    return [" ".join(line.split()) for line in text.splitlines()
            if re.search(rf"[:\]]{port}\s", line + " ") and line.split()]
