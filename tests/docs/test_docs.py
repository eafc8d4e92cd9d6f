"""The docs' commands, run as a reader would, so the docs cannot rot.

README's tour (and the console blocks of docs/quickstart.md and docs/explain.md)
run against a real `kubesvc up` in a namespace playing the node, as root, with
`sudo` a no-op and /var/lib/kubesvc standing for the test's data dir. The flags
docs/configuration.md lists must be the commands' real flags.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs import docrun
from tests.e2e.up.harness import UpNode

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "docs" / "quickstart.md", ROOT / "docs" / "explain.md"]


@pytest.mark.root
def test_console_blocks_run_and_print_what_the_docs_show(tmp_path):
    node = UpNode(tmp_path)
    try:
        node.start()
        work = tmp_path / "work"
        work.mkdir()
        all_steps = [st for page in PAGES for st in docrun.steps(page)]
        assert len(all_steps) > 20
        env = {**os.environ, "KUBESVC_DATA_DIR": str(node.data_dir),
               "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
        env.pop("KUBECONFIG", None)
        prelude = "exec 2>&1\nsudo() { \"$@\"; }\n"
        results = docrun.run(all_steps, ["ip", "netns", "exec", node.node_ns], work, env, prelude,
                             {"/var/lib/kubesvc": str(node.data_dir)})
        problems = []
        for st, (code, out) in zip(all_steps, results):
            if code != 0:
                problems.append(f"{st.page}:{st.line}: `{st.command.splitlines()[0]}` exited {code}:\n{out}")
                continue
            missing = docrun.mismatches(st, out, node.node_name, node.node_ip)
            if missing:
                problems.append(f"{st.page}:{st.line}: `{st.command.splitlines()[0]}` did not print:\n  "
                                + "\n  ".join(missing) + "\nit printed:\n" + out)
        assert not problems, "\n\n".join(problems)
    except BaseException:
        print(node.output(), node.logs())
        raise
    finally:
        node.close()


def documented_flags(page: Path) -> dict[str, set[str]]:
    """{command: flags} from configuration.md: `## kubesvc CMD` headings, then | `--flag` | rows."""
    out: dict[str, set[str]] = {}
    current = None
    for line in page.read_text().splitlines():
        m = re.match(r"^## `kubesvc (\w+)`", line)
        if m:
            current = m.group(1)
            out[current] = set()
        elif current and line.startswith("| `-"):
            out[current].update(re.findall(r"`(--[a-z0-9-]+)", line.split("|")[1]))
    return out


def real_flags(cmd: str) -> set[str]:
    help_text = subprocess.run([sys.executable, "-m", "kubesvc.cli", cmd, "--help"], capture_output=True,
                               text=True, check=True).stdout
    return set(re.findall(r"^\s+(?:-\w, )?(--[a-z0-9-]+)", help_text, re.M)) - {"--help"}


def test_configuration_lists_real_flags():
    doc = documented_flags(ROOT / "docs" / "configuration.md")
    assert {"up", "status", "explain", "apiserver", "controllers", "agent", "proxy", "dns"} <= set(doc)
    for cmd, flags in doc.items():
        real = real_flags(cmd)
        assert flags <= real, f"docs/configuration.md lists flags `kubesvc {cmd}` does not have: {flags - real}"
        if cmd in ("up", "status", "explain"):  # this page is where these commands' flags are documented
            assert real <= flags, f"`kubesvc {cmd}` flags missing from docs/configuration.md: {real - flags}"
