"""provenance.json: the command, commit, versions, machine, seeds and stage times of a run."""

import subprocess
from pathlib import Path

from analysis import provenance


def test_command_line_as_typed():
    assert provenance.command_line(["/x/gradstats/__main__.py", "demo", "--quick"]) == \
        "python -m gradstats demo --quick"
    assert provenance.command_line(["/usr/bin/gradstats", "report", "r"]) == "gradstats report r"


def test_collect_write_read_roundtrip(tmp_path):
    p = provenance.collect(command="gradstats demo", seeds={"compare": [0, 1, 2]},
                           seconds={"fit": 1.234, "report": 2.0}, config={"workers": 4})
    assert p["command"] == "gradstats demo" and p["seeds"] == {"compare": [0, 1, 2]}
    assert p["seconds"] == {"fit": 1.23, "report": 2.0} and p["wall_s"] == 3.23
    assert {"python", "numpy", "pandas", "torch"} <= set(p["versions"])
    assert p["machine"]["cpus"] >= 1 and p["config"] == {"workers": 4}
    provenance.write(tmp_path, p)
    assert provenance.read(tmp_path) == p
    assert provenance.read(tmp_path / "absent") is None


def test_git_commit_is_this_checkout():
    root = Path(provenance.__file__).resolve().parents[1]
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    got = provenance.git_commit()
    if head.returncode == 0:
        assert got["commit"] == head.stdout.strip() and isinstance(got["dirty"], bool)
    assert provenance.git_commit(Path("/proc")) == {}  # not a checkout: nothing claimed
