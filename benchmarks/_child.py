"""What the benchmarks share: one measured case run in a fresh Python process.

Each benchmark script runs itself with ``--child ...`` for one case; the child prints
its result as the last line of standard output, in JSON. A child that fails, is killed
(out of memory) or prints no result becomes ``{"error": "..."}``, a row of the table.
"""

from __future__ import annotations

import json
import subprocess


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
