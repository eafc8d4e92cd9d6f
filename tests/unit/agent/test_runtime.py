"""The container shim without namespaces (the non-root mode): exit codes, signals, logs."""

from __future__ import annotations

import asyncio
import os

from kubesvc.agent.runtime import LaunchSpec, Runtime

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin"}


def spec(tmp_path, argv, **kw) -> LaunchSpec:
    return LaunchSpec(argv=argv, env=dict(ENV, **kw.pop("env", {})), log_path=tmp_path / "0.log",
                      exit_path=tmp_path / "0.exit", **kw)


async def run_to_end(rt: Runtime, h) -> tuple[int, bool]:
    done: asyncio.Future = asyncio.get_running_loop().create_future()
    rt.watch(h, lambda code, known: done.set_result((code, known)))
    return await asyncio.wait_for(done, 10)


async def test_exit_code_logs_env_and_workdir(tmp_path):
    rt = Runtime(False, tmp_path / "shim.sh")
    h = rt.start(spec(tmp_path, ["sh", "-c", 'echo "$GREETING from $(pwd)"; echo err >&2; exit 7'],
                      env={"GREETING": "hello"}, working_dir="/tmp"))
    assert await run_to_end(rt, h) == (7, True)
    assert (tmp_path / "0.log").read_text() == "hello from /tmp\nerr\n"
    assert (tmp_path / "0.exit").read_text().strip() == "7"
    assert not any(k.startswith("KUBESVC_SHIM") for k in os.environ)


async def test_sigterm_reaches_a_command_and_exit_is_143(tmp_path):
    rt = Runtime(False, tmp_path / "shim.sh")
    h = rt.start(spec(tmp_path, ["sleep", "30"]))
    await asyncio.sleep(0.2)
    rt.terminate(h)
    assert await run_to_end(rt, h) == (143, True)


async def test_kill_takes_the_whole_process_group(tmp_path):
    rt = Runtime(False, tmp_path / "shim.sh")
    h = rt.start(spec(tmp_path, ["sh", "-c", "trap '' TERM; sleep 30 & echo $! > child; wait"],
                      working_dir=str(tmp_path)))
    for _ in range(100):
        if (tmp_path / "child").exists() and (tmp_path / "child").read_text().strip():
            break
        await asyncio.sleep(0.02)
    child = int((tmp_path / "child").read_text())
    rt.kill(h)
    code, _ = await run_to_end(rt, h)
    assert code == 137
    for _ in range(50):
        if not os.path.exists(f"/proc/{child}") or open(f"/proc/{child}/stat").read().split()[2] == "Z":
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the container's child survived")


async def test_missing_workdir_fails_with_a_message(tmp_path):
    rt = Runtime(False, tmp_path / "shim.sh")
    h = rt.start(spec(tmp_path, ["true"], working_dir="/nonexistent-kubesvc"))
    assert await run_to_end(rt, h) == (128, True)
    assert "workingDir /nonexistent-kubesvc: no such directory" in (tmp_path / "0.log").read_text()
