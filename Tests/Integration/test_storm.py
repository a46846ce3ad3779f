"""kill -9 storms under S3 load: six real nodes at 4+2; writers PUT and overwrite through several
nodes while random nodes (never more than m = 2 at once) are killed -9 and restarted. No
acknowledged object is lost or changed, and no read ever shows a half-written object or one older
than the last acknowledged write. Bounded: at most ROUNDS kill rounds, WRITES puts per writer."""
from __future__ import annotations

import hashlib
import os
import random
import threading
import time

from test_objects import start_six
from test_raft import wait_for

SETTINGS = {"raft": {"dead_voter_after": 2}, "data": {"remove_after": 600, "repair_interval": 2}}
WRITERS, KEYS_PER_WRITER, WRITES, ROUNDS, STORM_S = 3, 8, 1500, 15, 45


def quick(node, cache: dict):
    """A client of `node` for one thread (kept across the node's restarts: same port), fast to give up."""
    if node.name not in cache:
        cache[node.name] = node.client(connect_timeout=2, read_timeout=20)
    return cache[node.name]


def payload(key: str, seq: int) -> bytes:
    """The seq-th value of a key: its name and number, then bytes only they determine."""
    rng = random.Random(f"{key}/{seq}")
    size = rng.choice([0, 1, 3000, 70_000, 600_000, (1 << 20) + 17])
    head = f"{key}|{seq}|".encode()
    return (head + rng.randbytes(size))[:max(size, len(head))]


def which(key: str, data: bytes) -> int:
    """The seq whose whole value `data` is, or fail: a mix of two writes is never whole."""
    seq = int(data.split(b"|", 2)[1])
    assert data == payload(key, seq), f"{key}: {len(data)} bytes that are no whole write (claims seq {seq})"
    return seq


def test_no_acknowledged_write_is_lost_under_kill9_storms(module_node_factory):
    nodes = start_six(module_node_factory, "s", SETTINGS)
    first = nodes[0]
    first.client().create_bucket(Bucket="storm")
    seed = int(os.environ.get("STORM_SEED", os.getpid()))
    print(f"storm seed {seed} (STORM_SEED={seed} repeats the kills)")
    rng = random.Random(seed)
    down: set[int] = set()
    lock = threading.Lock()
    # key -> highest seq acknowledged, and the instant (monotonic) of each ack.
    acked: dict[str, int] = {}
    ack_times: dict[str, list[tuple[float, int]]] = {}
    stop = threading.Event()
    problems: list[str] = []
    counts = {"acked": 0, "failed": 0, "reads": 0, "read_errors": 0}
    errors: dict[str, int] = {}  # read errors by S3 code or exception type

    def alive_clients():
        with lock:
            return [(i, n) for i, n in enumerate(nodes) if i not in down]

    def writer(w: int):
        keys = [f"w{w}/k{j}" for j in range(KEYS_PER_WRITER)]
        seqs = {k: 0 for k in keys}
        clients: dict = {}
        for n_write in range(WRITES):
            if stop.is_set():
                return
            key = keys[n_write % len(keys)]
            seqs[key] += 1
            live = alive_clients()
            i, node = live[(w + n_write) % len(live)]
            try:
                quick(node, clients).put_object(Bucket="storm", Key=key, Body=payload(key, seqs[key]))
            except Exception:
                counts["failed"] += 1
                time.sleep(0.05)
                continue
            with lock:
                acked[key] = seqs[key]
                ack_times.setdefault(key, []).append((time.monotonic(), seqs[key]))
                counts["acked"] += 1

    def reader():
        r = random.Random(seed + 1)
        clients: dict = {}
        while not stop.is_set():
            key = f"w{r.randrange(WRITERS)}/k{r.randrange(KEYS_PER_WRITER)}"
            live = alive_clients()
            _, node = r.choice(live)
            with lock:
                floor = acked.get(key, 0)
            try:
                data = quick(node, clients).get_object(Bucket="storm", Key=key)["Body"].read()
            except Exception as e:
                code = (getattr(e, "response", None) or {}).get("Error", {}).get("Code") or type(e).__name__
                counts["read_errors"] += 1
                errors[code] = errors.get(code, 0) + 1
                if floor and "NoSuchKey" in str(e):
                    problems.append(f"{key} missing through {node.name} after seq {floor} was acknowledged")
                time.sleep(0.05)
                continue
            counts["reads"] += 1
            try:
                seq = which(key, data)
            except AssertionError as e:
                problems.append(str(e))
                continue
            if seq < floor:
                problems.append(f"{key} read seq {seq} through {node.name} after seq {floor} was acknowledged")

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)] + [threading.Thread(target=reader)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + STORM_S
    kills = 0
    try:
        for _ in range(ROUNDS):
            if time.monotonic() > deadline or not any(t.is_alive() for t in threads[:WRITERS]):
                break
            victims = rng.sample(range(6), rng.choice([1, 1, 2]))
            with lock:
                down.update(victims)
            for v in victims:
                nodes[v].kill()
                kills += 1
            time.sleep(rng.uniform(0.5, 2.5))
            for v in victims:
                nodes[v].start()
                with lock:
                    down.discard(v)
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    print(f"storm: {kills} kills, {counts}, read errors {errors}")
    assert not problems, problems[:10]
    assert counts["acked"] > 50 and counts["reads"] > 50, f"the load made progress through the storm: {counts}"
    # Every acknowledged write, at its newest, through every node; nothing older, nothing mixed.
    for n in nodes:
        n.wait_ready()

    clients: dict = {}

    def settled():
        for n in nodes:
            c = quick(n, clients)
            for key, seq in acked.items():
                try:
                    got = which(key, c.get_object(Bucket="storm", Key=key)["Body"].read())
                except Exception as e:
                    return False, f"{key} through {n.name}: {e}"
                if got < seq:
                    return False, f"{key} through {n.name}: seq {got}, acknowledged {seq}"
            listed = {o["Key"] for o in c.list_objects_v2(Bucket="storm").get("Contents", [])}
            if not set(acked) <= listed:
                return False, f"listing through {n.name} lacks {sorted(set(acked) - listed)}"
        return True, ""
    wait_for("every acknowledged write readable at its newest through every node", settled, 120)
    # The last word is stable: once settled, every node agrees on one value per key.
    for key in acked:
        digests = {hashlib.md5(n.client().get_object(Bucket="storm", Key=key)["Body"].read()).hexdigest() for n in nodes}
        assert len(digests) == 1, f"{key}: nodes disagree {digests}"
