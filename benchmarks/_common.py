"""Shared benchmark plumbing: a sandbox in its own process, and measurements in child processes."""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from queue import Empty
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def sandbox_process(contacts: int, *extra: str):
    """Start ``sync-platform sandbox`` in a subprocess (its own GIL) and yield (details, startup seconds)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sync_platform.cli",
            "sandbox",
            "--port",
            "0",
            "--json",
            "--contacts",
            str(contacts),
            *extra,
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("}"):
            break
    details = json.loads("".join(lines))
    import httpx

    httpx.get(f"{details['base_url']}/__sandbox/clock", timeout=60).raise_for_status()
    startup = time.perf_counter() - started
    try:
        yield details, startup
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class ChildFailed(RuntimeError):
    """A benchmark's child process raised or died: the benchmark fails at once, it never hangs."""


def _child(fn: Callable[..., dict], args: tuple, queue: mp.Queue) -> None:
    try:
        result = fn(*args)
    except BaseException:
        queue.put(("error", traceback.format_exc()))
        raise SystemExit(1) from None
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(("ok", result))


def in_child(fn: Callable[..., dict], *args: Any) -> dict:
    """Run ``fn(*args)`` in a fresh process, so its peak RSS is its own; its failure is ours."""
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(fn, args, queue))
    proc.start()
    while True:
        try:
            status, payload = queue.get(timeout=1.0)
            break
        except Empty:
            if not proc.is_alive():  # killed (OOM, signal) before it could say anything
                raise ChildFailed(f"{fn.__name__} died in its process (exit code {proc.exitcode})") from None
    proc.join()
    if status == "error":
        raise ChildFailed(f"{fn.__name__} failed in its process:\n{payload}")
    return payload


def timed(run: Callable[[], Any], repeat: int = 5) -> tuple[dict, Any]:
    """Wall times of ``repeat`` runs (the first, cold, included): median and best, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        result = None  # the previous run's output must not inflate this run's peak RSS
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return {"seconds": statistics.median(times), "best": min(times)}, result
