"""The scrubber on its own, on three real nodes at 2+1: nothing GETs the object, yet bytes flipped in
a shard file are found by the scheduled scrub and the shard is rewritten; the scrub reads at the
rate `data.scrub_rate` sets (the lowest, 1 MiB/s, within 20 % over 10 s); its bytes and the damage
it finds and repairs are counted, and `stacks status` shows each node's progress and last full pass."""
import json
import subprocess
import time

from stacks_node import stacks_binary
from test_layout import same_layout_everywhere
from test_objects import body, shard_files, shard_of
from test_raft import healthy_with, wait_for

SCRUBBED = "stacks_scrub_bytes_total"
FOUND, REPAIRED = ('stacks_scrub_damaged_shards_total{result="found"}', 'stacks_scrub_damaged_shards_total{result="repaired"}')


def test_the_scrubber_finds_and_repairs_damage_at_its_rate(node_factory):
    settings = {"data": {"repair_interval": 1, "scrub_rate": 1}}
    first = node_factory("sc1", **settings)
    nodes = [first] + [node_factory(f"sc{i}", seeds=[first.gossip_address], **settings) for i in (2, 3)]
    wait_for("3 voters", healthy_with(nodes, 3), 90)
    wait_for("three nodes at 2+1", same_layout_everywhere(nodes, lambda v: len(v["members"]) == 3 and v["scheme"] == "2+1"), 60)
    c = first.client()
    c.create_bucket(Bucket="scrub")
    # About 15 MiB of shards per node: a pass takes ~15 s at 1 MiB/s.
    for i in range(30):
        c.put_object(Bucket="scrub", Key=f"k{i:02}", Body=body(1 << 20, i))
    holder = next(n for n in nodes if any(shard_of(p) == 0 for p in shard_files(n, "scrub", "k07")))
    path = next(p for p in shard_files(holder, "scrub", "k07") if shard_of(p) == 0)
    good = path.read_bytes()
    bad = bytearray(good)
    for i in range(2000, 2100):
        bad[i] ^= 0xFF
    path.write_bytes(bytes(bad))

    # The rate, from the node's own counter, sampled over 10 s of a pass.
    node = nodes[0]
    t0, b0 = time.monotonic(), node.metrics().get(SCRUBBED, 0)
    time.sleep(10)  # the measurement window itself, not a synchronization
    t1, b1 = time.monotonic(), node.metrics().get(SCRUBBED, 0)
    rate = (b1 - b0) / (t1 - t0) / (1 << 20)
    assert 0.8 <= rate <= 1.2, f"scrubbed {rate:.2f} MiB/s at scrub_rate 1"

    def rewritten():
        files = shard_files(holder, "scrub", "k07")
        m = holder.metrics()
        return (len(files) == 1 and files[0].read_bytes() == good and m.get(FOUND, 0) >= 1 and m.get(REPAIRED, 0) >= 1,
                f"{holder.name}: {files}, {m.get(FOUND)} found, {m.get(REPAIRED)} repaired")
    wait_for("the flipped shard found by the scrub and rewritten", rewritten, 60)

    def shown():
        out = subprocess.run([str(stacks_binary()), "status", "--data-dir", str(node.data_dir), "--format", "json"],
                             capture_output=True, text=True, timeout=20)
        s = json.loads(out.stdout)
        rows = {n["name"]: n for n in s["nodes"]}
        ok = all((rows[n.name].get("scrub_total_bytes") or 0) > 10 << 20 and rows[n.name].get("last_full_scrub_s") for n in nodes)
        return ok, {k: (v.get("scrubbed_bytes"), v.get("scrub_total_bytes"), v.get("last_full_scrub_s")) for k, v in rows.items()}
    wait_for("every node's scrub progress and last full pass in stacks status", shown, 60)
    text = subprocess.run([str(stacks_binary()), "status", "--data-dir", str(node.data_dir)], capture_output=True, text=True, timeout=20).stdout
    assert "SCRUB" in text and "last full" in text, text
