"""Run the `console` blocks of a Markdown page and compare what they print with what the page shows.

A page's ```console blocks are a transcript: `$ command` lines (a heredoc's body
belongs to its command) followed by the output the reader should see. Every
command of a page runs in order in ONE bash session (variables carry over, as in
a reader's terminal); each must exit 0, and every output line the page shows
must appear in what the command printed, once both are normalised for what
legitimately differs between runs: ages, pod-name suffixes, pod IPs, the node's
name and address, dig's query ids and timings.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^```console\n(.*?)^```", re.M | re.S)
HEREDOC = re.compile(r"<<-?\s*'?(\w+)'?\s*$")


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)
    page: str = ""
    line: int = 0


def steps(path: Path) -> list[Step]:
    text = path.read_text()
    out: list[Step] = []
    for m in FENCE.finditer(text):
        first_line = text[: m.start()].count("\n") + 2
        lines = m.group(1).splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("$ "):
                cmd = [line[2:]]
                start = i
                h = HEREDOC.search(line)
                if h:
                    while i + 1 < len(lines):
                        i += 1
                        cmd.append(lines[i])
                        if lines[i] == h.group(1):
                            break
                out.append(Step("\n".join(cmd), page=path.name, line=first_line + start))
            elif out:
                out[-1].expected.append(line)
            i += 1
    return out


# Lines of dig's output that differ on every run or between dig versions: not compared.
UNCOMPARED = re.compile(r"^(; <<>> DiG|;; (global options|Got answer|Query time|SERVER|WHEN|MSG SIZE)|"
                        r";; WARNING: \.local|;; You are currently testing)")


def normalise(line: str, node_name: str = "", node_ip: str = "") -> str:
    if node_name:
        line = re.sub(rf"\b{re.escape(node_name)}\b", "NODE", line)
    if node_ip:
        line = re.sub(rf"\b{re.escape(node_ip)}\b", "NODE_IP", line)
    line = re.sub(r"\bnode01\b", "NODE", line)
    line = re.sub(r"\b192\.168\.1\.10\b", "NODE_IP", line)
    line = re.sub(r"-[a-z0-9]{8,10}-[a-z0-9]{5}\b", "-POD", line)
    line = re.sub(r"\b10\.244\.\d+\.\d+\b", "POD_IP", line)
    line = re.sub(r"id: \d+", "id: N", line)
    line = re.sub(r"(?<=\s)(\d+[smhd])+(?=\s|$)", "AGE", line)
    return " ".join(line.split())


def script(all_steps: list[Step], prelude: str, substitutions: dict[str, str]) -> str:
    """One bash script running every step, each followed by a marker carrying its exit status."""
    parts = [prelude]
    for n, st in enumerate(all_steps):
        cmd = st.command
        for old, new in substitutions.items():
            cmd = cmd.replace(old, new)
        parts.append(f"echo '@@STEP {n} BEGIN@@'\n{cmd}\necho \"@@STEP {n} END $?@@\"")
    return "\n".join(parts) + "\n"


def run(all_steps: list[Step], argv_prefix: list[str], cwd: Path, env: dict, prelude: str,
        substitutions: dict[str, str], timeout: float = 300) -> list[tuple[int, str]]:
    """(exit status, output) per step."""
    p = subprocess.run([*argv_prefix, "bash"], input=script(all_steps, prelude, substitutions), cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=timeout)
    out = p.stdout + p.stderr
    results = []
    for n in range(len(all_steps)):
        m = re.search(rf"@@STEP {n} BEGIN@@\n(.*?)@@STEP {n} END (\d+)@@", out, re.S)
        results.append((int(m.group(2)), m.group(1)) if m else (-1, out[-2000:]))
    return results


def mismatches(st: Step, output: str, node_name: str, node_ip: str) -> list[str]:
    got = {normalise(l, node_name, node_ip) for l in output.splitlines()}
    missing = []
    for line in st.expected:
        if not line.strip() or UNCOMPARED.match(line):
            continue
        if normalise(line, node_name, node_ip) not in got:
            missing.append(line)
    return missing
