"""CrashLoopBackOff timing as kubelet's: at once, then 10s doubling to 5 minutes, reset
after a long run."""

from __future__ import annotations

from kubesvc.agent.worker import restart_backoff


def delays(runs: list[float], base: float = 10.0) -> list[float]:
    out, nxt = [], 0.0
    for ran in runs:
        delay, nxt = restart_backoff(nxt, ran, base)
        out.append(delay)
    return out


def test_first_restart_at_once_then_doubling_up_to_five_minutes():
    assert delays([1.0] * 9) == [0, 10, 20, 40, 80, 160, 300, 300, 300]


def test_a_run_of_ten_minutes_starts_the_sequence_again():
    assert delays([1, 1, 1, 600, 1, 1]) == [0, 10, 20, 0, 10, 20]
    assert delays([1, 1, 1, 599, 1]) == [0, 10, 20, 40, 80]


def test_base_follows_the_flag():
    assert delays([1, 1, 1], base=0.5) == [0, 0.5, 1.0]
