"""What the benchmarks share: one measured case run in a fresh Python process.

Each benchmark script runs itself with ``--child ...`` for one case; the child prints
its result as the last line of standard output, in JSON. A child that fails, is killed
(out of memory) or prints no result becomes ``{"error": "..."}``, a row of the table.
The children read their memory with :func:`status_kb` and :func:`maxrss_bytes`.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
from collections.abc import Callable
from typing import Any


def run_child(command: list[str]) -> dict:
    """The JSON result of ``command``'s last line of output, or ``{"error": why}``."""
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        if out.returncode < 0:
            why = f"killed by signal {-out.returncode}"
            return {"error": why + (" (out of memory?)" if out.returncode == -9 else "")}
        lines = out.stderr.strip().splitlines() or [f"exit status {out.returncode}"]
        return {"error": lines[-1][:200]}
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"no result from the child process: {out.stdout[-200:]!r}"}


def status_kb(field: str) -> int | None:
    """A field of ``/proc/self/status`` in KiB (``"VmHWM"``, ``"VmRSS"``); None off Linux."""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def maxrss_bytes() -> int:
    """The process's peak resident memory in bytes, from ``getrusage``."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def machine(device: str | None = None) -> dict:
    """The machine a benchmark ran on: CPU, cores, memory, torch, and the GPU on CUDA."""
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if device is not None:
        info["device"] = device
    pages = os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    if pages:
        info["memory_gib"] = round(pages * os.sysconf("SC_PAGE_SIZE") / 2**30, 1)
    if device is not None and device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["gpus"] = torch.cuda.device_count()
    return info


def peak_rss_bytes(fn: Callable[[], Any]) -> tuple[int, Any]:
    """How far resident memory rises above its current level while ``fn`` runs.

    On Linux the high-water mark is reset to the current resident memory first
    (``/proc/self/clear_refs``); elsewhere the peak so far stands in for the current
    level. The kernel's counters are approximate, to a few pages per thread. Returns
    the rise in bytes and ``fn()``.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = status_kb("VmHWM")
    except OSError:
        before = None
    if before is None:
        before_bytes = maxrss_bytes()
        out = fn()
        return max(maxrss_bytes() - before_bytes, 0), out
    out = fn()
    after = status_kb("VmHWM") or before
    return max(after - before, 0) * 1024, out
