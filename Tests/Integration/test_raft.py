"""The Raft control plane between real `stacks` processes on loopback: one cluster state on every
node (a bucket made through one node exists on all), `stacks status`, the leader killed with
kill -9 ten times in a row under a write load without losing or doubling an acknowledged write,
and a 7-node cluster that heals its voter set to 5 after two voters die for good."""
import base64
import json
import os
import random
import shutil
import subprocess
import threading
import time
import uuid

import pytest
import requests

from stacks_node import free_port, parse_metrics, stacks_binary

# Election timeout: 20 ticks of 50 ms, drawn from [1, 2) s. A new leader needs at most one full
# timeout after the last heartbeat, plus one more if the first vote splits, plus scheduling slack
# on a loaded 2-core machine.
ELECTION_S = 1.0
FAILOVER_BOUND_S = 2 * ELECTION_S + 2 * ELECTION_S + 1.0


def status(node, check=False) -> tuple[int, dict]:
    out = subprocess.run([str(stacks_binary()), "status", "--data-dir", str(node.data_dir), "--format", "json"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


def wait_for(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    detail = ""
    while time.monotonic() < deadline:
        ok, detail = predicate()
        if ok:
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached within {timeout:.0f} s: {detail}")


def healthy_with(nodes, voters: int, without=()):
    """Every given node reports a healthy cluster with `voters` voters, none of them in `without`."""
    def check():
        for n in nodes:
            rc, s = status(n)
            roles = {x["name"]: x["raft_role"] for x in s["nodes"]}
            vs = [k for k, r in roles.items() if r in ("leader", "voter")]
            if rc != 0 or len(vs) != voters or s["leader"] is None or set(vs) & set(without):
                seen = {x["name"]: (x["status"], x.get("last_contact_ms")) for x in s["nodes"]}
                return False, f"{n.name}: rc={rc} leader={s['leader']} voters={vs} problems={s['problems']} gossip, last contact ms={seen}"
        return True, ""
    return check


class Admin:
    """The node's admin API (HTTP + bearer token from DATA_DIR/admin)."""

    def __init__(self, node):
        fields = dict(line.split("=", 1) for line in (node.data_dir / "admin").read_text().split())
        self.url = fields["url"]
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {fields['token']}"

    def put(self, key, value: bytes, request_id: str, timeout=5):
        return self.session.put(f"{self.url}/v1/kv/{key}", data=value, headers={"X-Request-Id": request_id}, timeout=timeout)

    def get(self, key, consistent=True):
        return self.session.get(f"{self.url}/v1/kv/{key}" + ("?consistent" if consistent else ""), timeout=15)

    def stats(self):
        return self.session.get(f"{self.url}/v1/kv-stats", timeout=10).json()


@pytest.fixture(scope="module")
def trio(module_node_factory):
    first = module_node_factory("r1")
    rest = [module_node_factory(f"r{i}", start=False, seeds=[first.gossip_address]) for i in (2, 3)]
    for n in rest:
        n.start()
    nodes = [first] + rest
    wait_for("3 voters", healthy_with(nodes, 3), 30)
    return nodes


def test_bucket_made_through_one_node_exists_on_all(trio):
    name = f"everywhere-{uuid.uuid4().hex[:8]}"
    trio[1].client().create_bucket(Bucket=name)
    # The node that took the request has applied it before answering.
    assert name in [b["Name"] for b in trio[1].client().list_buckets()["Buckets"]]

    def everywhere():
        for n in trio:
            if name not in [b["Name"] for b in n.client().list_buckets()["Buckets"]]:
                return False, f"{n.name} lacks {name}"
        return True, ""
    wait_for("bucket on every node", everywhere, 5)
    # Made once: the owner creating it again anywhere succeeds (as in AWS us-east-1) and it stays
    # one bucket; the same access key works on every node.
    trio[2].client().create_bucket(Bucket=name)
    assert [b["Name"] for b in trio[1].client().list_buckets()["Buckets"]].count(name) == 1
    trio[0].client().put_object(Bucket=name, Key="k", Body=b"v")
    trio[0].client().delete_object(Bucket=name, Key="k")
    trio[2].client().delete_bucket(Bucket=name)
    wait_for("bucket gone everywhere", lambda: (all(name not in [b["Name"] for b in n.client().list_buckets()["Buckets"]]
                                                    for n in trio), "still listed"), 5)


def test_metrics_scraped_from_every_node_move_with_the_cluster(trio):
    """`GET /metrics` (STACKS_METRICS_URL in DATA_DIR/env) on each of three nodes passes promtool's
    lint, carries the gossip, Raft, S3 and process series, and they move: a bucket made through a
    follower raises every node's commit index and that node's S3 request counter."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing (Debian package prometheus; tools/lib.sh installs it)"
    required = ["stacks_raft_term", "stacks_raft_commit_index", "stacks_raft_applied_index", 'stacks_raft_role{role="leader"}',
                "stacks_raft_proposals_total", "stacks_raft_leader_changes_total", "stacks_raft_wal_fsync_duration_seconds_count",
                "stacks_raft_snapshot_bytes_count", 'stacks_gossip_members{state="alive"}', "stacks_gossip_probes_total",
                "stacks_gossip_suspicions_total", "stacks_gossip_refutations_total",
                'stacks_gossip_packets_total{direction="sent",kind="ping"}', 'stacks_gossip_bytes_total{direction="received",kind="ack"}',
                'stacks_gossip_dropped_total{reason="unauthenticated"}', "stacks_process_resident_memory_bytes", "stacks_process_open_fds"]
    before = {}
    for n in trio:
        text = n.metrics_text()
        lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert lint.returncode == 0, f"{n.name}: promtool: {lint.stdout}{lint.stderr}"
        m = parse_metrics(text)
        missing = [x for x in required if x not in m]
        assert not missing, f"{n.name} lacks {missing}"
        assert m['stacks_gossip_members{state="alive"}'] == 3, m
        assert m["stacks_process_resident_memory_bytes"] > 1 << 20 and m["stacks_process_open_fds"] > 3
        before[n.name] = m
    assert sum(before[n.name]['stacks_raft_role{role="leader"}'] for n in trio) == 1
    follower = next(n for n in trio if before[n.name]['stacks_raft_role{role="leader"}'] == 0)
    name = f"metrics-{uuid.uuid4().hex[:8]}"
    follower.client().create_bucket(Bucket=name)
    ok = 'stacks_s3_requests_total{op="CreateBucket",status="200"}'

    def moved():
        for n in trio:
            m = n.metrics()
            if m["stacks_raft_commit_index"] <= before[n.name]["stacks_raft_commit_index"]:
                return False, f"{n.name}: commit index still {m['stacks_raft_commit_index']}"
            if m['stacks_gossip_packets_total{direction="sent",kind="ping"}'] <= before[n.name]['stacks_gossip_packets_total{direction="sent",kind="ping"}']:
                return False, f"{n.name}: no probe sent since"
        return True, ""
    wait_for("commit index and probes move on every node", moved, 10)
    after = follower.metrics()
    assert after[ok] == before[follower.name].get(ok, 0) + 1, after.get(ok)
    assert after["stacks_raft_proposals_total"] > before[follower.name]["stacks_raft_proposals_total"]
    assert after['stacks_s3_request_duration_seconds_count{op="CreateBucket"}'] >= 1
    follower.client().delete_bucket(Bucket=name)


def test_status_json_and_table(trio):
    rc, s = status(trio[2])
    assert rc == 0
    assert s["self"] == "r3" and s["cluster_id"] and s["term"] >= 1
    assert s["leader"] in {"r1", "r2", "r3"}
    assert sorted(n["name"] for n in s["nodes"]) == ["r1", "r2", "r3"]
    for n in s["nodes"]:
        assert n["raft_role"] in ("leader", "voter") and n["status"] == "alive"
    assert [n["name"] for n in s["nodes"] if n["raft_role"] == "leader"] == [s["leader"]]
    table = subprocess.run([str(stacks_binary()), "status", "--data-dir", str(trio[0].data_dir)],
                           capture_output=True, text=True, timeout=20)
    assert table.returncode == 0
    assert "legend:" in table.stdout and "health: ok" in table.stdout
    assert table.stdout.splitlines()[1].split()[:3] == ["NAME", "RAFT", "GOSSIP"]


def test_status_exits_nonzero_without_quorum(trio):
    # Runs last in this module: it takes two of the three voters away.
    trio[0].kill()
    trio[1].kill()

    def unhealthy():
        rc, s = status(trio[2])
        return rc == 1 and any("quorum" in p or "leader" in p for p in s["problems"]), f"rc={rc} {s['problems']}"
    wait_for("status reports the lost quorum", unhealthy, 15)
    # Writes are refused with a clear error rather than acknowledged without a quorum.
    with pytest.raises(Exception, match="ServiceUnavailable|503"):
        trio[2].client(retries={"max_attempts": 1}, read_timeout=30).create_bucket(Bucket="no-quorum-bucket")


def test_two_clusters_sharing_a_gossip_key_never_merge(node_factory):
    # Both found a cluster (no seeds) on one shared gossip key, as clusters did before join
    # tokens, then gossip is joined by hand: same key, different clusters.
    shared = base64.b64encode(os.urandom(32)).decode()
    a, b = node_factory("ca", gossip_key=shared), node_factory("cb", gossip_key=shared)
    out = subprocess.run([str(stacks_binary()), "join", "--data-dir", str(b.data_dir), a.gossip_address],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr

    def see_each_other():
        names = {m["name"] for m in json.loads(subprocess.run(
            [str(stacks_binary()), "members", "--data-dir", str(a.data_dir), "--format", "json"],
            capture_output=True, text=True, timeout=20).stdout)}
        return names == {"ca", "cb"}, f"{names}"
    wait_for("gossip joined", see_each_other, 15)
    time.sleep(3)  # several voter-management rounds on both leaders
    for n, other in ((a, b), (b, a)):
        rc, s = status(n)
        assert rc == 0 and s["leader"] == n.name, s
        roles = {x["name"]: x["raft_role"] for x in s["nodes"]}
        assert roles[other.name] == "none", roles  # seen in gossip, never taken into this Raft group
    assert status(a)[1]["cluster_id"] != status(b)[1]["cluster_id"]
    name = f"only-a-{uuid.uuid4().hex[:8]}"
    a.client().create_bucket(Bucket=name)
    assert name not in [x["Name"] for x in b.client().list_buckets()["Buckets"]]
    assert a.is_running() and b.is_running()


def leader_of(nodes):
    for n in nodes:
        if n.is_running():
            try:
                _, s = status(n)
            except (AssertionError, json.JSONDecodeError):
                continue
            if s["leader"]:
                return next((x for x in nodes if x.name == s["leader"]), None)
    return None


def test_leader_killed_ten_times_loses_no_acknowledged_write(node_factory):
    # Small snapshot interval: snapshots, log compaction, restarts from a snapshot and
    # InstallSnapshot to a restarted node all happen under the kills.
    raft = {"snapshot_every": 500}
    first = node_factory("k1", raft=raft)
    rest = [node_factory(f"k{i}", start=False, seeds=[first.gossip_address], raft=raft) for i in range(2, 6)]
    for n in rest:
        n.start()
    nodes = [first] + rest
    wait_for("5 voters", healthy_with(nodes, 5), 40)
    base = Admin(first).stats()

    acked: dict[str, bytes] = {}
    attempted: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []

    def writer(w: int):
        rnd = random.Random(w)
        admins: dict[str, Admin] = {}
        for i in range(5000):  # bounded in count, and by `stop`; paced to last through all rounds
            if stop.is_set():
                return
            time.sleep(0.02)
            key, value, rid = f"w{w}-{i}", f"{w}:{i}".encode(), uuid.uuid4().hex
            with lock:
                attempted.add(key)
            deadline = time.monotonic() + 30
            while not stop.is_set() and time.monotonic() < deadline:
                n = rnd.choice(nodes)
                if not n.is_running() or not (n.data_dir / "admin").exists():
                    time.sleep(0.05)
                    continue
                try:
                    a = admins.get(n.name) or admins.setdefault(n.name, Admin(n))
                    r = a.put(key, value, rid)  # the same request id on every retry
                except (requests.RequestException, OSError, ValueError):
                    admins.pop(n.name, None)
                    time.sleep(0.05)
                    continue
                if r.status_code == 200:
                    with lock:
                        acked[key] = value
                    break
                if r.status_code != 503:
                    errors.append(f"{n.name}: {r.status_code} {r.text}")
                    return
                time.sleep(0.05)

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(4)]
    for t in threads:
        t.start()
    failovers = []
    try:
        for round_ in range(10):
            time.sleep(0.5)  # let writes flow under this leader
            leader = leader_of(nodes)
            assert leader is not None, "no leader before kill"
            survivors = [n for n in nodes if n is not leader]
            with lock:
                before = len(acked)
            leader.kill()
            t0 = time.monotonic()
            # The first write acknowledged after the kill is committed by the new leader.
            probe = Admin(survivors[0])
            rid = uuid.uuid4().hex
            while True:
                try:
                    if probe.put(f"probe-{round_}", b"x", rid, timeout=10).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                assert time.monotonic() - t0 < FAILOVER_BOUND_S + 10, f"round {round_}: no commit after the kill"
            failovers.append(time.monotonic() - t0)
            leader.start()
            wait_for(f"round {round_}: 5 healthy voters again", healthy_with(survivors[:1], 5), 40)
            with lock:
                assert len(acked) > before or round_ == 0 or errors, "writers made no progress"
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors[:5]
    print(f"failover (kill -9 leader -> first committed write): {', '.join(f'{f:.2f}' for f in failovers)} s")
    assert max(failovers) < FAILOVER_BOUND_S, failovers
    assert len(acked) > 100, f"only {len(acked)} writes acknowledged"

    # No acknowledged write lost: each reads back, linearizably, from every node.
    for n in nodes:
        a = Admin(n)
        for key in random.Random(1).sample(sorted(acked), min(200, len(acked))):
            r = a.get(key)
            assert r.status_code == 200 and r.content == acked[key], f"{n.name} lost {key}: {r.status_code}"
    everything = Admin(nodes[0])
    for key, value in acked.items():
        r = everything.get(key, consistent=False)
        assert r.status_code == 200 and r.content == value, f"lost {key}"

    # No write applied twice: every applied command created exactly one new key (10 probes
    # included), so the counts match; and every node agrees once caught up.
    def agreed():
        stats = [Admin(n).stats() for n in nodes]
        return all(s == stats[0] for s in stats), f"{stats}"
    wait_for("all nodes applied the same commands", agreed, 20)
    s = Admin(nodes[0]).stats()
    new_keys = s["keys"] - base["keys"]
    assert s["applied_commands"] - base["applied_commands"] == new_keys, (s, base)
    assert len(acked) <= new_keys - 10 <= len(attempted)


def test_voters_heal_to_five_after_two_die(node_factory):
    settings = {"voters": 5, "dead_voter_after": 2}
    first = node_factory("h1", raft=settings)
    rest = [node_factory(f"h{i}", start=False, seeds=[first.gossip_address], raft=settings) for i in range(2, 8)]
    for n in rest:
        n.start()
    nodes = [first] + rest
    wait_for("5 voters of 7", healthy_with([first], 5), 60)
    _, s = status(first)
    voters = [x["name"] for x in s["nodes"] if x["raft_role"] in ("leader", "voter")]
    # The leader and one more voter die for good.
    doomed = [n for n in nodes if n.name == s["leader"]] + [n for n in nodes if n.name in voters and n.name != s["leader"]][:1]
    for n in doomed:
        n.kill()
    survivors = [n for n in nodes if n not in doomed]
    t0 = time.monotonic()
    # Every survivor, the new leader among them, must agree (a follower alone goes by gossip).
    wait_for("voter set healed to 5 without operator action", healthy_with(survivors, 5, without=[n.name for n in doomed]), 60)
    _, s = status(survivors[0])
    now_voters = {x["name"] for x in s["nodes"] if x["raft_role"] in ("leader", "voter")}
    assert not now_voters & {n.name for n in doomed}
    assert all(x["status"] == "alive" for x in s["nodes"] if x["name"] in now_voters)
    print(f"voter set healed in {time.monotonic() - t0:.1f} s")


def test_status_exits_2_when_no_node_answers(tmp_path):
    """`stacks status` tells "cannot ask" (2) from "unhealthy" (1): no admin file, or nobody listening."""
    out = subprocess.run([str(stacks_binary()), "status", "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=20)
    assert out.returncode == 2 and "no running node" in out.stderr, out
    (tmp_path / "admin").write_text(f"url=http://127.0.0.1:{free_port()}\ntoken=x\n")
    out = subprocess.run([str(stacks_binary()), "status", "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=20)
    assert out.returncode == 2 and "cannot reach the node's admin API" in out.stderr, out
