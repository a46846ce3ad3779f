"""Rebalancing under load, on real processes: six nodes at 4+2 hold enough data that moving it
takes well over 10 s (the scrub rate, which paces the moves, is set low); a seventh node joins while
writers, each on keys of its own, PUT, overwrite and DELETE through several nodes. `stacks status
--format json`, sampled throughout, shows the move's progress (bytes left falling, a rate, an
estimate of the time left); afterwards every acknowledged write reads back exact through every node
and every acknowledged delete stays deleted (an unacknowledged operation may or may not have
landed, but nothing older than the last acknowledged one shows)."""
import hashlib
import random
import threading
import time

from botocore.exceptions import ClientError

from test_layout import same_layout_everywhere
from test_objects import body, start_six
from test_raft import status, wait_for

SETTINGS = {"raft": {"dead_voter_after": 2}, "data": {"remove_after": 600, "repair_interval": 1, "scrub_rate": 1, "marker_grace": 2}}
WRITERS, KEYS_PER_WRITER, MAX_OPS = 3, 8, 3000


def test_a_seventh_node_joins_under_load_and_every_acknowledged_write_holds(node_factory):
    six = start_six(node_factory, "r", SETTINGS)
    c = six[0].client()
    c.create_bucket(Bucket="moving")
    # About 15 MiB of shards per node: each node's pass (which moves what it must) takes ~15 s at 1 MiB/s.
    for i in range(60):
        six[i % 6].client().put_object(Bucket="moving", Key=f"bulk/{i:02}", Body=body(1 << 20, i))

    # Per key, every operation in the order sent: (sha256 of the body, or None for a delete, acknowledged).
    history: dict[str, list] = {}
    lock, stop = threading.Lock(), threading.Event()
    counts = {"ops": 0, "acked": 0, "failed": 0}
    errors: list = []

    def writer(w: int, nodes: list):
        rng = random.Random(w)
        clients = [n.client(read_timeout=30) for n in nodes]
        keys = [f"live/w{w}/k{j}" for j in range(KEYS_PER_WRITER)]
        try:
            while not stop.is_set():
                with lock:
                    if counts["ops"] >= MAX_OPS:
                        return
                    counts["ops"] += 1
                key, client = rng.choice(keys), rng.choice(clients)
                delete = rng.random() < 0.25
                data = None if delete else rng.randbytes(rng.choice([100, 5000, 70_000, 300_000]))
                op = [hashlib.sha256(data).hexdigest() if data is not None else None, False]
                with lock:
                    history.setdefault(key, []).append(op)
                try:
                    if delete:
                        client.delete_object(Bucket="moving", Key=key)
                    else:
                        client.put_object(Bucket="moving", Key=key, Body=data)
                except ClientError:
                    with lock:
                        counts["failed"] += 1
                    continue
                with lock:
                    op[1] = True
                    counts["acked"] += 1
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w, six[w::3] + six[:1]), daemon=True) for w in range(WRITERS)]
    for t in threads:
        t.start()
    seventh = node_factory("r7", seeds=[six[0].gossip_address], tags={"zone": "b"}, **SETTINGS)
    nodes = six + [seventh]
    samples: list = []
    try:
        wait_for("seven nodes in the layout", same_layout_everywhere(nodes, lambda v: len(v["members"]) == 7), 60)

        def moved():
            _, s = status(six[1])
            r = (s.get("data") or {}).get("rebalance")
            if r:
                samples.append((time.monotonic(), r))
            return s["layout"]["migrating"] == 0 and not r, s.get("data")
        wait_for("the data moved to the seventh node", moved, 240)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors
    assert counts["acked"] > 100, counts

    with_bytes = [(t, r) for t, r in samples if r["bytes_left"] > 0]
    assert len(with_bytes) >= 3, f"rebalance progress seen only {len(samples)} times: {samples}"
    assert with_bytes[-1][0] - with_bytes[0][0] >= 5, "the move was over too fast to watch"
    assert with_bytes[-1][1]["bytes_left"] < with_bytes[0][1]["bytes_left"], [r["bytes_left"] for _, r in with_bytes]
    assert any(r["bytes_per_second"] > 0 and r.get("eta_seconds") is not None for _, r in samples), samples

    for n in nodes:
        cl = n.client()
        for key, ops in sorted(history.items()):
            last = max((i for i, (_, acked) in enumerate(ops) if acked), default=-1)
            allowed = {sha for sha, _ in ops[max(last, 0):]}
            try:
                got = hashlib.sha256(cl.get_object(Bucket="moving", Key=key)["Body"].read()).hexdigest()
            except ClientError as e:
                assert e.response["Error"]["Code"] == "NoSuchKey", e
                got = None
            assert got in allowed or (last < 0 and got is None), (
                f"{key} through {n.name}: {'deleted' if got is None else got[:12]}, allowed {[(s and s[:12], a) for s, a in ops[max(last, 0):]]}")
        for i in range(60):
            assert cl.get_object(Bucket="moving", Key=f"bulk/{i:02}")["Body"].read() == body(1 << 20, i)
    print(f"rebalance under load: {counts}, progress sampled {len(samples)} times, first {samples[0][1]}, last {samples[-1][1]}")
