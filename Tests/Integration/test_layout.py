"""The data layout between real `stacks` processes: the leader keeps it in step with membership
(nodes that join get a share, one dead past `data.remove_after` loses it), every node holds the
same version, and an operator's staged weights, drains and scheme go in together as one version
with `stacks layout apply`."""
import json
import subprocess
import time

from stacks_node import stacks_binary
from test_raft import healthy_with, status, wait_for

REMOVE_AFTER_S = 3


def layout(node, *args, check=True):
    out = subprocess.run([str(stacks_binary()), "layout", *args, "--data-dir", str(node.data_dir), "--format", "json"],
                         capture_output=True, text=True, timeout=30)
    if check:
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)
    return out


def same_layout_everywhere(nodes, predicate):
    def check():
        views = [layout(n) for n in nodes]
        if len({v["version"] for v in views}) != 1:
            return False, f"versions differ: {[v['version'] for v in views]}"
        return predicate(views[0]), json.dumps(views[0])[:400]
    return check


def test_layout_follows_membership_and_the_operator(node_factory):
    settings = {"raft": {"dead_voter_after": 2}, "data": {"remove_after": REMOVE_AFTER_S}}
    first = node_factory("l1", tags={"zone": "a"}, **settings)
    rest = [node_factory(f"l{i}", start=False, seeds=[first.gossip_address], tags={"zone": "ab"[i % 2]}, **settings)
            for i in (2, 3, 4)]
    for n in rest:
        n.start()
    nodes = [first] + rest
    wait_for("3 voters", healthy_with(nodes, 3), 60)

    def members(v):
        return {m["name"]: m for m in v["members"]}

    # Every node joined the layout with its zone; four nodes get 2+2.
    wait_for("4 nodes in the layout", same_layout_everywhere(nodes, lambda v: len(v["members"]) == 4 and v["scheme"] == "2+2"), 30)
    v = layout(first)
    assert {n: m["zone"] for n, m in members(v).items()} == {"l1": "a", "l2": "a", "l3": "b", "l4": "a"}
    assert sum(m["slots"] for m in v["members"]) == v["partitions"] * 4
    assert all(m["slots"] > 0 for m in v["members"])

    # Staged through one node, visible on another, committed as one version through a third.
    layout(rest[1], "set-weight", "l2", "300")
    staged = layout(rest[2], "drain", "l4")
    assert members(staged)["l2"]["staged_weight"] == 300 and members(staged)["l4"]["staged_weight"] == 0
    assert staged["version"] == v["version"]
    applied = layout(first, "apply")
    assert applied["version"] == v["version"] + 1
    m = members(applied)
    assert m["l2"]["weight"] == 300 and m["l4"]["weight"] == 0 and m["l4"]["slots"] == 0
    assert all("staged_weight" not in x for x in applied["members"])
    assert applied["scheme"] == "2+1", "three weighted nodes get 2+1"
    assert v["version"] in applied["migrating"], "the old version is consulted until data has moved"
    # The drained node stays in the layout: it is alive, only weightless.
    wait_for("the same version everywhere", same_layout_everywhere(nodes, lambda x: x["version"] == applied["version"]), 20)
    # `stacks status` sums it up, in JSON and in the table.
    _, st = status(rest[0])
    assert st["layout"] == {"version": applied["version"], "scheme": "2+1", "members": 4, "migrating": len(applied["migrating"])}
    table = subprocess.run([str(stacks_binary()), "status", "--data-dir", str(rest[0].data_dir)], capture_output=True, text=True, timeout=20)
    assert f"layout version {applied['version']}: scheme 2+1 over 4 nodes" in table.stdout, table.stdout

    # Refusals: a clear reason, non-zero exit, nothing changed.
    for args, reason in [(("drain", "nobody"), "not in the layout"), (("set-scheme", "2+5"), "scheme must be"),
                         (("apply",), "nothing is staged")]:
        out = layout(first, *args, check=False)
        assert out.returncode != 0 and reason in out.stderr, (args, out.stderr)
    assert layout(first)["version"] == applied["version"]
    layout(first, "set-scheme", "1+1")
    assert layout(first, "revert").get("staged_scheme") is None

    # A node killed for good leaves the layout after remove_after, by the leader's own doing.
    victim = rest[1]
    victim.kill()
    t0 = time.monotonic()
    survivors = [n for n in nodes if n is not victim]
    wait_for("the dead node removed from the layout",
             same_layout_everywhere(survivors, lambda x: "l3" not in members(x) and x["scheme"] == "1+1"), REMOVE_AFTER_S + 30)
    print(f"dead node left the layout {time.monotonic() - t0:.1f} s after kill -9 (remove_after {REMOVE_AFTER_S} s)")
    # It comes back: it joins again with its default weight.
    victim.start()
    wait_for("the returning node back in the layout", same_layout_everywhere(nodes, lambda x: members(x).get("l3", {}).get("weight") == 100), 60)
