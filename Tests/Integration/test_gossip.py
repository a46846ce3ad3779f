"""Gossip membership between real `stacks` processes on loopback, observed with `stacks members`:
16 nodes converge; kill -9 is seen as dead and a graceful leave as left by everyone; a node with
the wrong key is never admitted and harms no one; keys rotate with no node ever suspected."""
import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from stacks_node import stacks_binary
from wire import record_datagrams

N = 16
# Bounds from the protocol parameters (probe interval 1 s, suspicion 4·log10(16) ≈ 4.8 s, at most
# 6× that without confirmations, one probe round of 16): generous for a loaded 2-core machine.
CONVERGE_S = 30
DETECT_S = 16 + 6 * 4.8 + 10
LEAVE_S = 10


def fingerprint(key_b64: str) -> str:
    """A gossip key's fingerprint as the keyring tag shows it: its SHA-256's first 6 bytes, hex."""
    return hashlib.sha256(base64.b64decode(key_b64)).hexdigest()[:12]


def members(node) -> list[dict]:
    out = subprocess.run([str(stacks_binary()), "members", "--data-dir", str(node.data_dir), "--format", "json"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def view(node) -> dict[str, str]:
    return {m["name"]: m["status"] for m in members(node)}


def wait_for(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while True:
        ok, detail = predicate()
        if ok:
            return time.monotonic()
        assert time.monotonic() < deadline, f"{what} not reached within {timeout:.0f} s: {detail}"
        time.sleep(0.2)


def everyone_sees(nodes, expected: dict[str, str]):
    def check():
        for n in nodes:
            v = view(n)
            wrong = {k: v.get(k) for k, s in expected.items() if v.get(k) != s}
            if wrong:
                return False, f"{n.name} sees {wrong}"
        return True, ""
    return check


def keyring_cli(node, *args, ok=True, stdin=None):
    out = subprocess.run([str(stacks_binary()), "keyring", *args, "--data-dir", str(node.data_dir)],
                         capture_output=True, text=True, timeout=20, input=stdin)
    if ok:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def counts_reach(node, expected: dict, timeout: float = 10):
    """`key_counts(node)` becomes `expected`: on a cluster whose keyring travels in the log, each
    node reads the members' keyring tags as its gossip last heard them (about a second behind)."""
    wait_for(f"{node.name}'s keyring listing", lambda: (key_counts(node, ok=False) == expected, key_counts(node, ok=False)), timeout)


def key_counts(node, ok=True) -> dict[str, tuple[str, str]]:
    """`stacks keyring list` as {key: (members holding it "k/n", members sealing with it)}."""
    rows = keyring_cli(node, "list", ok=ok).stdout.splitlines()
    assert rows[0].split() == ["KEY", "MEMBERS", "PRIMARY", "ON"], rows
    return {c[0]: (c[1], c[2]) for c in map(str.split, rows[1:]) if len(c) == 3 and "/" in c[1]}


@pytest.fixture(scope="module")
def cluster(module_node_factory):
    first = module_node_factory("g1", tags={"zone": "a"})
    nodes = [first]
    # Start the rest without waiting on each other: a burst join.
    rest = [module_node_factory(f"g{i}", start=False, seeds=[first.gossip_address], tags={"zone": "ab"[i % 2]})
            for i in range(2, N + 1)]
    for n in rest:
        n.start()
    nodes += rest
    took = wait_for("16 nodes converged", everyone_sees(nodes, {n.name: "alive" for n in nodes}), CONVERGE_S)
    return nodes


def test_sixteen_nodes_converge_and_filter(cluster):
    v = members(cluster[5])
    assert sorted(m["name"] for m in v) == sorted(n.name for n in cluster)
    for m in v:
        assert set(m) >= {"name", "address", "status", "incarnation", "tags"}
    zone_a = subprocess.run([str(stacks_binary()), "members", "--data-dir", str(cluster[0].data_dir), "--tag", "zone=a",
                             "--status", "alive"], capture_output=True, text=True, timeout=20)
    assert zone_a.returncode == 0
    expected = sorted(n.name for n in cluster if n.tags.get("zone") == "a")  # before the tags test changes g3
    listed = sorted(line.split()[0] for line in zone_a.stdout.splitlines()[1:])
    assert listed == expected


def test_tag_update_reaches_everyone(cluster):
    subject = cluster[2]
    out = subprocess.run([str(stacks_binary()), "tags", "--data-dir", str(subject.data_dir), "zone=c", "hypervisor=kvm"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr

    def check():
        for n in cluster:
            tags = next(m["tags"] for m in members(n) if m["name"] == subject.name)
            # The node keeps its own reserved tags (Raft and data addresses, cluster id, data
            # report, signer on a node that signs credentials, keyring fingerprints) through `stacks tags`.
            own = {k: tags.get(k) for k in ("raft", "data", "cluster", "dstat", "signer", "keyring")}
            if {k: v for k, v in tags.items() if k not in own} != {"zone": "c", "hypervisor": "kvm"} \
                    or own["raft"] != f"127.0.0.1:{subject.raft_port}" or own["data"] != f"127.0.0.1:{subject.data_port}" \
                    or not own["cluster"] or own["keyring"].split(",")[0] != fingerprint(subject.primary_gossip_key()):
                return False, f"{n.name} sees {tags}"
        return True, ""
    wait_for("tag update seen by all", check, 10)


def test_wrong_key_is_never_admitted(cluster, node_factory):
    before = view(cluster[0])
    stranger = node_factory("stranger", seeds=[cluster[0].gossip_address],
                            gossip_key=base64.b64encode(os.urandom(32)).decode(), wait_env=False)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for n in cluster[:4]:
            assert "stranger" not in view(n)
        time.sleep(0.5)
    assert list(view(stranger)) == ["stranger"]
    assert all(n.is_running() for n in cluster) and stranger.is_running()
    assert view(cluster[0]) == before
    stranger.stop()


def test_key_rotation_without_suspicion(cluster):
    """One command on one node rotates the key on all 16; steps that would cut a member off are refused."""
    new = subprocess.run([str(stacks_binary()), "keygen"], capture_output=True, text=True, check=True).stdout.strip()
    old = cluster[0].primary_gossip_key()
    suspicious: list[str] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            for n in cluster[:4]:
                bad = {k: s for k, s in view(n).items() if s != "alive"}
                if bad:
                    suspicious.append(f"{n.name} saw {bad}")
            time.sleep(0.2)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        unknown = keyring_cli(cluster[1], "use", new, ok=False)
        assert unknown.returncode != 0 and f"only 0 of {N} members hold that key" in unknown.stderr, unknown.stderr
        assert key_counts(cluster[5]) == {old: (f"{N}/{N}", str(N))}

        # The key from a file and from stdin, as an operator keeps it out of `ps` and shell history.
        key_file = cluster[0].data_dir / "new.key"
        key_file.write_text(new + "\n")
        both = keyring_cli(cluster[0], "install", new, "--key-file", str(key_file), ok=False)
        assert both.returncode != 0 and "not both or neither" in both.stderr, both.stderr
        assert f"install: {N} of {N} members answered ok" in keyring_cli(cluster[0], "install", "--key-file", str(key_file)).stdout
        counts_reach(cluster[5], {old: (f"{N}/{N}", str(N)), new: (f"{N}/{N}", "0")})

        early = keyring_cli(cluster[0], "remove", old, ok=False)
        assert early.returncode != 0 and f"{N} of {N} members still seal with that key" in early.stderr, early.stderr
        counts_reach(cluster[7], {old: (f"{N}/{N}", str(N)), new: (f"{N}/{N}", "0")})

        assert f"use: {N} of {N} members answered ok" in keyring_cli(cluster[2], "use", "--key-file", "-", stdin=new + "\n").stdout
        assert f"remove: {N} of {N} members answered ok" in keyring_cli(cluster[3], "remove", old).stdout
        time.sleep(3)  # a few protocol periods on the new key alone, watched throughout
    finally:
        stop.set()
        t.join(timeout=30)
    assert not suspicious, suspicious[:5]
    counts_reach(cluster[9], {new: (f"{N}/{N}", str(N))})
    local = keyring_cli(cluster[4], "list", "--local").stdout
    assert f"primary: {new}" in local and old not in local
    for n in cluster:
        n.gossip_key = new


def keygen() -> str:
    return subprocess.run([str(stacks_binary()), "keygen"], capture_output=True, text=True, check=True).stdout.strip()


def test_silent_member_is_reported_and_use_is_refused(node_factory):
    """On a cluster that shares a configured gossip key (no join tokens, so keyring changes travel
    as gossip messages): a member that does not answer (stopped with SIGSTOP, each time for about
    one 2 s round, well inside the suspicion timeout) is named, and `use` changes nothing while it
    is silent or while some member lacks the key; `--local` acts on one node only."""
    shared = keygen()
    a = node_factory("ka", gossip_key=shared)
    b = node_factory("kb", seeds=[a.gossip_address], gossip_key=shared)
    c = node_factory("kc", seeds=[a.gossip_address], gossip_key=shared)
    wait_for("3 nodes converged", everyone_sees([a, b, c], {"ka": "alive", "kb": "alive", "kc": "alive"}), CONVERGE_S)
    old = a.primary_gossip_key()
    new = subprocess.run([str(stacks_binary()), "keygen"], capture_output=True, text=True, check=True).stdout.strip()

    def while_stopped(node, *args):
        node.proc.send_signal(signal.SIGSTOP)
        try:
            return keyring_cli(a, *args, ok=False)
        finally:
            node.proc.send_signal(signal.SIGCONT)

    partial = while_stopped(c, "install", new)
    assert partial.returncode == 1, partial.stdout + partial.stderr
    assert "install: 2 of 3 members answered ok" in partial.stdout and "no answer from kc" in partial.stdout, partial.stdout
    # kc then applies the request that waited in its socket (the CLI warns it may): all hold the key.
    wait_for("kc holds the key", lambda: (key_counts(a, ok=False).get(new) == ("3/3", "0"), "not all hold it"), CONVERGE_S)

    refused = while_stopped(c, "use", new)
    assert refused.returncode != 0 and "no answer from kc" in refused.stderr and "nothing changed" in refused.stderr, refused.stderr
    for n in (a, b, c):
        assert keyring_cli(n, "list", "--local").stdout.startswith(f"primary: {old}")

    only_here = subprocess.run([str(stacks_binary()), "keygen"], capture_output=True, text=True, check=True).stdout.strip()
    keyring_cli(b, "install", only_here, "--local")
    assert key_counts(a)[only_here] == ("1/3", "0")
    lacking = keyring_cli(a, "use", only_here, ok=False)
    assert lacking.returncode != 0 and "only 1 of 3 members hold that key" in lacking.stderr, lacking.stderr

    wait_for("kc answers again", lambda: ("list: 3 of 3 members" in keyring_cli(a, "list", ok=False).stdout, "kc silent"), CONVERGE_S)
    assert "use: 3 of 3 members answered ok" in keyring_cli(b, "use", new).stdout
    assert key_counts(c)[new] == ("3/3", "3")


def test_keyring_travels_in_the_log_and_keyring_messages_are_refused(node_factory):
    """On a cluster whose nodes joined with tokens, keyring changes go through the Raft log: a
    member silent during `use` (SIGSTOP) is named, and applies the change from the log once back.
    A stranger holding a ring key (as a removed node does during a rotation's grace) joins gossip
    with it, but its keyring messages, asking for the keys or changing them, are dropped and
    counted by every member, which reveal and change nothing."""
    a = node_factory("la")
    b = node_factory("lb", seeds=[a.gossip_address])
    c = node_factory("lc", seeds=[a.gossip_address])
    nodes = [a, b, c]
    wait_for("3 nodes converged", everyone_sees(nodes, {"la": "alive", "lb": "alive", "lc": "alive"}), CONVERGE_S)
    old, new = a.primary_gossip_key(), keygen()
    assert "install: 3 of 3 members answered ok" in keyring_cli(b, "install", new).stdout
    c.proc.send_signal(signal.SIGSTOP)
    try:
        silent = keyring_cli(a, "use", new, ok=False)
    finally:
        c.proc.send_signal(signal.SIGCONT)
    assert silent.returncode == 1 and "use: 2 of 3 members answered ok" in silent.stdout and "no answer from lc" in silent.stdout, silent
    wait_for("lc seals with the new key, from the log", lambda: (c.primary_gossip_key() == new, c.primary_gossip_key()), CONVERGE_S)
    assert "remove: 3 of 3 members answered ok" in keyring_cli(c, "remove", old).stdout
    counts_reach(a, {new: ("3/3", "3")})
    assert old not in (c.data_dir / "keyring").read_text()

    # A stranger with the ring key: a node on the shared-key path, which asks over gossip.
    eve = node_factory("eve", seeds=[a.gossip_address], gossip_key=new, wait_env=False)
    wait_for("eve sees the members", lambda: (all(view(eve).get(n.name) == "alive" for n in nodes), view(eve)), CONVERGE_S)
    dropped = 'stacks_gossip_dropped_total{reason="keyring_by_log"}'
    before = [n.metrics().get(dropped, 0) for n in nodes]
    asked = keyring_cli(eve, "list", ok=False)
    assert asked.returncode == 1 and "no answer from la, lb, lc" in asked.stdout, asked
    planted = keygen()
    keyring_cli(eve, "install", planted, ok=False)
    after = [n.metrics().get(dropped, 0) for n in nodes]
    assert all(x > y for x, y in zip(after, before)), (before, after)
    for n in nodes:
        ring = (n.data_dir / "keyring").read_text()
        assert planted not in ring and ring.split()[0] == new
    eve.kill()


def test_kill_is_seen_as_dead_and_leave_as_left(cluster):
    victim, leaver = cluster[-1], cluster[-2]
    victim.kill()
    survivors = [n for n in cluster if n not in (victim, leaver)]
    leaver.stop()  # SIGTERM: graceful leave
    wait_for("leave seen as left", everyone_sees(survivors, {leaver.name: "left"}), LEAVE_S)
    wait_for("kill -9 seen as dead", everyone_sees(survivors, {victim.name: "dead"}), DETECT_S)
    assert all(n.is_running() for n in survivors)


def test_restarted_founder_finds_the_cluster_again(node_factory):
    """A node started without seeds (the founder), down long enough to be declared dead, comes back
    through the members it remembers (DATA_DIR/gossip-peers) at once, instead of waiting until
    some member's periodic sync (every 30 s) happens to try the dead."""
    first = node_factory("f1")
    rest = [node_factory(f"f{i}", seeds=[first.gossip_address]) for i in (2, 3)]
    nodes = [first] + rest
    alive = {n.name: "alive" for n in nodes}
    wait_for("3 nodes converged", everyone_sees(nodes, alive), CONVERGE_S)
    peers = first.data_dir / "gossip-peers"
    wait_for("f1 remembers its peers", lambda: (peers.exists() and len(peers.read_text().split()) == 2, "no list"), 10)
    first.kill()
    wait_for("f1 seen as dead", everyone_sees(rest, {"f1": "dead"}), DETECT_S)
    first.start()
    t0 = time.monotonic()
    took = wait_for("f1 back in every view and every member in f1's", everyone_sees(nodes, alive), 8) - t0
    print(f"restarted founder back in every view after {took:.2f} s")


def test_replayed_gossip_datagrams_are_dropped_and_counted(node_factory):
    """Datagrams recorded off the wire and sent again change nothing: while the node remembers
    them each counts as `replayed`; after its restart (it remembers nothing) as `stale`."""
    nodes = [node_factory("r1")]
    nodes += [node_factory(f"r{i}", seeds=[nodes[0].gossip_address]) for i in (2, 3)]
    alive = {n.name: "alive" for n in nodes}
    wait_for("3 nodes converged", everyone_sees(nodes, alive), CONVERGE_S)
    target = nodes[0]
    recorded = record_datagrams({target.gossip_port}, 3)
    assert len(recorded) >= 3, f"only {len(recorded)} datagrams to r1 in 3 s"

    def dropped(reason):
        return target.metrics().get(f'stacks_gossip_dropped_total{{reason="{reason}"}}', 0)

    def replay_all():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for port, d in recorded:
                s.sendto(d, ("127.0.0.1", port))

    for reason, restart in (("replayed", False), ("stale", True)):
        if restart:
            target.restart()
            wait_for("r1 back", everyone_sees(nodes, alive), CONVERGE_S)
        before = {r: dropped(r) for r in ("replayed", "stale", "clock_skew", "malformed", "unauthenticated")}
        replay_all()
        wait_for(f"{len(recorded)} datagrams counted {reason}",
                 lambda: (dropped(reason) - before[reason] >= len(recorded), dropped(reason) - before[reason]), 10)
        after = {r: dropped(r) for r in before}
        assert after[reason] - before[reason] == len(recorded), (before, after)
        assert {r: v for r, v in after.items() if r != reason} == {r: v for r, v in before.items() if r != reason}
        assert all(n.is_running() for n in nodes)
        assert everyone_sees(nodes, alive)()[0]


def admin_get(node, path: str, timeout: float = 70):
    """GET on the node's admin API: (status, headers, parsed JSON body)."""
    import urllib.request
    conf = dict(line.split("=", 1) for line in (node.data_dir / "admin").read_text().split())
    req = urllib.request.Request(conf["url"] + path, headers={"Authorization": f"Bearer {conf['token']}"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.headers, json.loads(r.read())


def test_watch_waits_for_a_change_instead_of_polling(node_factory):
    """`--watch` long-polls: asked with the change version it last showed, the node holds the
    answer until membership moves (or the wait ends), then answers at once with the news."""
    a = node_factory("w1")
    b = node_factory("w2", seeds=[a.gossip_address])
    wait_for("both alive", everyone_sees([a, b], {"w1": "alive", "w2": "alive"}), CONVERGE_S)
    watcher = subprocess.Popen([str(stacks_binary()), "members", "--watch", "--format", "json", "--data-dir", str(a.data_dir)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    frames: list[str] = []
    def read():
        buf = ""
        for ch in iter(lambda: watcher.stdout.read(1), ""):
            buf += ch
            if buf.endswith("]\n"):
                frames.append(buf.replace("\x1b[H\x1b[2J", ""))
                buf = ""
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for("first frame", lambda: (len(frames) >= 1, frames), 20)
        # Once settled (the leader may still be taking w2 in as a learner, which is a change), a
        # poll with the current version waits out its 2 s and reports the same version.
        _, headers, _ = admin_get(a, "/v1/members")
        version = int(headers["X-Stacks-Change"])
        for _ in range(10):
            started = time.monotonic()
            _, later, _ = admin_get(a, f"/v1/members?since={version}&wait=2")
            if int(later["X-Stacks-Change"]) == version:
                break
            assert int(later["X-Stacks-Change"]) > version
            version = int(later["X-Stacks-Change"])
        assert time.monotonic() - started >= 1.9 and int(later["X-Stacks-Change"]) == version, "never settled"
        # A change answers a waiting poll at once, and the watcher redraws with it.
        result = {}
        def poll():
            t0 = time.monotonic()
            _, h, body = admin_get(a, f"/v1/members?since={version}&wait=60")
            result.update(took=time.monotonic() - t0, version=int(h["X-Stacks-Change"]),
                          status={m["name"]: m["status"] for m in body})
        poller = threading.Thread(target=poll)
        poller.start()
        b.stop()  # graceful leave
        poller.join(timeout=70)
        assert result["version"] > version and result["status"]["w2"] == "left", result
        assert result["took"] < 30, result  # answered by the event, not by the 60 s wait running out
        wait_for("watcher redrew with w2 left",
                 lambda: (any('"left"' in f for f in frames), frames[-1:]), 10)
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
