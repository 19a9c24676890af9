"""How a run was obtained: command, commit, package versions, seeds, machine, wall time per stage.

`collect(...)` returns a plain dict, `write(run_dir, prov)` stores it as `provenance.json` next to
the run's tables, `read(run_dir)` loads it (None when the run did not record one). The report
prints it under the headline so a figure can be traced to the code and machine that made it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path

FILE = "provenance.json"
PACKAGES = ("gradstats", "torch", "numpy", "scipy", "pandas", "matplotlib", "seaborn", "constriction",
            "safetensors")


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that started this process, as a user would type it (`python -m gradstats ...`)."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return ""
    head = Path(argv[0])
    if head.name == "__main__.py":
        first = f"python -m {head.parent.name}"
    elif head.name in ("-c", ""):
        first = "python -c ..."
    else:
        first = head.name
    return " ".join([first, *argv[1:]])


def git_commit(path: str | Path | None = None) -> dict:
    """{"commit": sha, "dirty": bool} of the checkout holding `path` (this package by default); {} if none."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": sha, "dirty": bool(status.strip())}


def versions(packages: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Python and the installed version of each package present."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """OS, CPU model and count, memory, torch's thread count and the CUDA device when present."""
    out = {"os": platform.platform(), "cpu": _cpu_model(), "cpus": os.cpu_count()}
    try:
        out["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import torch

        out["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            out["cuda"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return out


def collect(command: str | None = None, seeds: Sequence[int] | Mapping | None = None,
            seconds: Mapping[str, float] | None = None, config: Mapping | None = None,
            started: dt.datetime | None = None) -> dict:
    """Everything `provenance.json` holds, as a plain dict."""
    now = dt.datetime.now(dt.timezone.utc)
    out = {"command": command if command is not None else command_line(),
           "started_utc": (started or now).isoformat(timespec="seconds"),
           "finished_utc": now.isoformat(timespec="seconds"),
           **git_commit(), "versions": versions(), "machine": machine()}
    if seeds is not None:
        out["seeds"] = dict(seeds) if isinstance(seeds, Mapping) else list(seeds)
    if seconds is not None:
        out["seconds"] = {k: round(float(v), 2) for k, v in seconds.items()}
        out["wall_s"] = round(float(sum(seconds.values())), 2)
    if config is not None:
        out["config"] = dict(config)
    return out


def write(run_dir: str | Path, prov: Mapping) -> Path:
    """Store `prov` as `run_dir/provenance.json`."""
    path = Path(run_dir) / FILE
    path.write_text(json.dumps(prov, indent=1, default=str), encoding="utf-8")
    return path


def read(run_dir: str | Path) -> dict | None:
    """The run's recorded provenance, None when it has none."""
    path = Path(run_dir) / FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
