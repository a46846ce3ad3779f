"""Every benchmark and acceptance tool runs as documented: each is run here for a few seconds on
its smallest setting against the binary under test (STACKS_BIN), so a tool cannot rot unnoticed.
The figures they print are not checked (speed goals live in the tools' own runs, recorded in
docs/BENCHMARKS.md); that they form their clusters and finish is."""
import os
import subprocess
from pathlib import Path

import pytest

from stacks_node import stacks_binary

ROOT = Path(__file__).resolve().parents[2]


def run(*args, timeout=240) -> str:
    out = subprocess.run([str(ROOT / args[0]), *map(str, args[1:])], capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "STACKS_BIN": str(stacks_binary())})
    assert out.returncode == 0, f"{args[0]} exited {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def test_raft_bench_forms_its_cluster_and_measures():
    out = run("tools/bench/raft", "--only", "stacks", "--reps", "1", "--seq", "10", "--conc", "2", "--duration", "1")
    assert "| stacks |" in out and "RESULTS" in out, out


def test_gossip_bench_converges_and_measures():
    out = run("tools/bench/gossip", "3", "--only", "stacks", "--runs", "1", "--burst-runs", "0", "--window", "1")
    assert "| 3 | stacks |" in out, out


@pytest.mark.parametrize("tool,args,expect", [
    ("tools/bench/codec", ["2+1", "4096"], "MD5"),
    ("tools/bench/index", ["500"], "listing"),
])
def test_local_benches_run(tool, args, expect):
    assert expect in run(tool, *args)


def test_objects_acceptance_quick_steps_pass():
    out = run("tools/accept/objects", "quick", "6", "1")
    assert "quick steps passed" in out, out
