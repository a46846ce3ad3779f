"""Crash consistency: kill -9 a Stacks node in the middle of concurrent PUTs.

Proves, over 3 kill/restart cycles on one data dir, that (1) every PUT that was
acknowledged with 200 survives the crash byte-exact (or is superseded only by a
later PUT of the same key), (2) no object is ever torn or partial: every key
that is listed or readable holds exactly the bytes of one PUT that was
attempted for it, with matching size and ETag, and (3) restarting keeps the
same credentials and the buckets. Without any crash, it also proves (4) that
readers racing concurrent overwriters of one key never see a torn object.

Each writer thread owns its keys and writes them sequentially, so for every key
the attempts are totally ordered and at most one is in flight at the crash.
The content of attempt (key, version) is derived from a seed, so only digests
are kept in memory.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from dataclasses import dataclass, field

import pytest
from botocore.exceptions import ClientError

from s3util import MiB, list_state

WRITERS = 3
KEYS_PER_WRITER = 60
CYCLES = 3
MAX_PUTS_PER_CYCLE = 2000
MAX_CYCLE_SECONDS = 20.0
MIN_ACKS_BEFORE_KILL = 30


def payload(key: str, version: int) -> bytes:
    """Deterministic content of attempt `version` of `key`: 1 KiB .. 2 MiB, mostly small."""
    rng = random.Random(f"{key}|{version}")
    r = rng.random()
    if r < 0.70:
        size = rng.randint(1024, 64 * 1024)
    elif r < 0.95:
        size = rng.randint(64 * 1024, 512 * 1024)
    else:
        size = rng.randint(512 * 1024, 2 * MiB)
    header = f"{key}|{version}|{size}|".encode()
    return (header + rng.randbytes(size))[:size]


@dataclass
class Attempt:
    version: int
    sha256: str
    md5: str
    size: int
    acked: bool = False


@dataclass
class KeyHistory:
    attempts: list[Attempt] = field(default_factory=list)  # in the order they were sent

    def last_acked_index(self) -> int:
        for i in range(len(self.attempts) - 1, -1, -1):
            if self.attempts[i].acked:
                return i
        return -1

    def allowed(self) -> list[Attempt]:
        """Attempts whose content may legally be visible now: the last acked one
        and anything sent after it (which may or may not have committed)."""
        return self.attempts[max(self.last_acked_index(), 0):]


class Workload:
    def __init__(self, node, bucket: str, seed: int):
        self.node, self.bucket = node, bucket
        self.history: dict[str, KeyHistory] = {}
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.next_version: dict[str, int] = {}

    def run_until_killed(self, cycle: int, victim=None) -> dict[str, int]:
        """Start writers, kill -9 the node (or `victim`, another node of the cluster) at a random
        moment, stop writers (a second later when the node written through lives on)."""
        victim = victim or self.node
        stop = threading.Event()
        stats = {"attempted": 0, "acked": 0, "failed": 0}
        budget = threading.Semaphore(MAX_PUTS_PER_CYCLE)
        deadline = time.monotonic() + MAX_CYCLE_SECONDS
        errors: list[BaseException] = []

        def writer(wid: int):
            client = self.node.client(connect_timeout=5, read_timeout=30)
            rng = random.Random(f"writer{wid}-cycle{cycle}")
            keys = [f"w{wid}/k{i:03d}" for i in range(KEYS_PER_WRITER)]
            try:
                while not stop.is_set() and time.monotonic() < deadline:
                    if not budget.acquire(blocking=False):
                        return
                    key = rng.choice(keys)
                    with self.lock:
                        version = self.next_version.get(key, 0)
                        self.next_version[key] = version + 1
                    data = payload(key, version)
                    attempt = Attempt(version, hashlib.sha256(data).hexdigest(),
                                      hashlib.md5(data).hexdigest(), len(data))
                    with self.lock:
                        self.history.setdefault(key, KeyHistory()).attempts.append(attempt)
                        stats["attempted"] += 1
                    try:
                        client.put_object(Bucket=self.bucket, Key=key, Body=data)
                    except Exception:
                        with self.lock:
                            stats["failed"] += 1
                        if stop.is_set() or not self.node.is_running():
                            return
                        continue
                    with self.lock:
                        attempt.acked = True
                        stats["acked"] += 1
            except BaseException as e:  # pragma: no cover - surfaced below
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(i,), daemon=True) for i in range(WRITERS)]
        for t in threads:
            t.start()
        try:
            # Bounded wait for some progress, then kill at a random moment.
            warmup_deadline = time.monotonic() + MAX_CYCLE_SECONDS / 2
            while time.monotonic() < warmup_deadline:
                with self.lock:
                    if stats["acked"] >= MIN_ACKS_BEFORE_KILL:
                        break
                if not any(t.is_alive() for t in threads):
                    break
                time.sleep(0.05)
            time.sleep(self.rng.uniform(0.0, 4.0))
            victim.kill()
            if victim is not self.node:
                time.sleep(1.0)  # PUTs go on through the cluster with one shard holder gone
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "writer threads did not stop"
        assert not errors, errors
        return stats


def verify(s3, workload: Workload) -> dict[str, int]:
    """Check the invariants described in the module docstring."""
    bucket = workload.bucket
    listed = {k: (etag, size) for k, etag, size in list_state(s3, bucket)}
    checked = 0

    unknown = set(listed) - set(workload.history)
    assert not unknown, f"keys listed that were never written: {sorted(unknown)[:10]}"

    for key, hist in sorted(workload.history.items()):
        allowed = hist.allowed()
        must_exist = hist.last_acked_index() >= 0
        try:
            resp = s3.get_object(Bucket=bucket, Key=key)
            data = resp["Body"].read()
        except ClientError as e:
            if e.response["ResponseMetadata"]["HTTPStatusCode"] != 404:
                raise
            assert not must_exist, f"acknowledged object {key} lost after crash"
            assert key not in listed, f"{key} is listed but GET says NoSuchKey"
            continue

        digest = hashlib.sha256(data).hexdigest()
        match = [a for a in allowed if a.sha256 == digest]
        if not match:
            older = [a.version for a in hist.attempts if a.sha256 == digest]
            if older:
                pytest.fail(f"{key}: reverted to version {older} older than the last acknowledged "
                            f"version {hist.attempts[hist.last_acked_index()].version}")
            pytest.fail(f"{key}: torn/unknown content ({len(data)} bytes, sha256 {digest}); "
                        f"allowed versions {[(a.version, a.size, a.acked) for a in allowed]}")
        a = match[0]
        assert resp["ContentLength"] == a.size == len(data), key
        assert resp["ETag"] == f'"{a.md5}"', key
        assert key in listed, f"{key} is readable but not listed"
        assert listed[key] == (f'"{a.md5}"', a.size), f"{key}: listing disagrees with content"
        checked += 1
    return {"verified_objects": checked, "listed": len(listed)}


@pytest.mark.slow
def test_kill9_during_concurrent_puts(node_factory):
    node = node_factory("crashnode")
    s3 = node.client()
    bucket = "crash-consistency"
    s3.create_bucket(Bucket=bucket)
    access_key = node.access_key

    workload = Workload(node, bucket, seed=int(time.time()))
    report = []
    for cycle in range(CYCLES):
        stats = workload.run_until_killed(cycle)
        assert stats["acked"] > 0, f"cycle {cycle}: no PUT was acknowledged ({stats})\n{node.log_tail()}"
        node.start()
        assert node.access_key == access_key, "restart changed the access key"
        s3 = node.client()
        assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        result = verify(s3, workload)
        report.append((cycle, stats, result))
    print("crash cycles:", report)


@pytest.mark.slow
def test_kill9_during_concurrent_puts_on_three_nodes(node_factory):
    """The same invariants on three nodes at 2+1, writes through node 1: kill -9 the node that
    receives the PUTs once, and a shard holder (another node) once; each comes back, and every
    key is checked through the node never killed."""
    from test_layout import same_layout_everywhere
    from test_raft import healthy_with, wait_for
    first = node_factory("crash3a")
    nodes = [first] + [node_factory(f"crash3{c}", seeds=[first.gossip_address]) for c in "bc"]
    wait_for("3 voters", healthy_with(nodes, 3), 90)
    wait_for("three nodes at 2+1", same_layout_everywhere(nodes, lambda v: len(v["members"]) == 3 and v["scheme"] == "2+1"), 60)
    bucket = "crash-three"
    first.client().create_bucket(Bucket=bucket)
    workload = Workload(first, bucket, seed=int(time.time()))
    report = []
    for cycle, victim in enumerate([first, nodes[2]]):
        stats = workload.run_until_killed(cycle, victim=victim)
        assert stats["acked"] > 0, f"cycle {cycle}: no PUT was acknowledged ({stats})\n{victim.log_tail()}"
        victim.start()
        wait_for("3 voters again", healthy_with(nodes, 3), 90)
        report.append((cycle, victim.name, stats, verify(nodes[1].client(), workload)))
    print("crash cycles on three nodes:", report)


def test_restart_keeps_credentials_and_data(node_factory):
    node = node_factory("restartnode")
    s3 = node.client()
    s3.create_bucket(Bucket="persist")
    s3.put_object(Bucket="persist", Key="a", Body=b"survives", Metadata={"m": "1"}, ContentType="text/x")
    before = (node.access_key, node.secret_key, node.endpoint)

    node.restart()
    assert (node.access_key, node.secret_key, node.endpoint) == before
    s3 = node.client()
    got = s3.get_object(Bucket="persist", Key="a")
    assert got["Body"].read() == b"survives"
    assert got["Metadata"] == {"m": "1"}
    assert got["ContentType"] == "text/x"


def test_concurrent_overwrites_are_atomic_for_readers(s3, bucket):
    key = "hot-key"
    writers, puts_per_writer = 2, 12
    versions = {}
    for w in range(writers):
        for i in range(puts_per_writer):
            data = payload(f"hot-{w}", i)
            versions[hashlib.sha256(data).hexdigest()] = (hashlib.md5(data).hexdigest(), len(data))
    s3.put_object(Bucket=bucket, Key=key, Body=payload("hot-0", 0))

    done = threading.Event()
    deadline = time.monotonic() + 60
    problems: list[str] = []
    reads = [0]

    def writer(w: int):
        for i in range(puts_per_writer):
            if time.monotonic() > deadline:
                return
            try:
                s3.put_object(Bucket=bucket, Key=key, Body=payload(f"hot-{w}", i))
            except Exception as e:
                problems.append(f"PUT failed: {e!r}")

    def reader():
        while not done.is_set() and time.monotonic() < deadline and reads[0] < 500:
            try:
                resp = s3.get_object(Bucket=bucket, Key=key)
                data = resp["Body"].read()
            except Exception as e:
                problems.append(f"GET failed: {e!r}")
                continue
            reads[0] += 1
            digest = hashlib.sha256(data).hexdigest()
            if digest not in versions:
                problems.append(f"torn read: {len(data)} bytes, sha256 {digest}")
            elif resp["ETag"] != f'"{versions[digest][0]}"' or resp["ContentLength"] != len(data):
                problems.append(f"headers of one version with the body of another ({resp['ETag']})")

    wthreads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(writers)]
    rthreads = [threading.Thread(target=reader, daemon=True) for _ in range(2)]
    for t in wthreads + rthreads:
        t.start()
    for t in wthreads:
        t.join(timeout=90)
    done.set()
    for t in rthreads:
        t.join(timeout=90)
    assert not any(t.is_alive() for t in wthreads + rthreads), "threads did not finish"
    assert not problems, problems[:5]
    assert reads[0] > 0
    final = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(final).hexdigest() in versions
