"""Joining with tokens between real `stacks` processes: the founding node makes the cluster's keys,
`stacks token create` prints a token, new nodes enrol with `stacks join` or `stacks agent --join
--token` (the `join.seed`/`join.token` config keys) and the cluster works through every node.
Every refusal (expired, used up, revoked, forged, another cluster's token, a seed that is not a
member) exits non-zero with its reason, is counted, and changes no cluster state; secrets never
show in logs or listings."""
import errno
import json
import os
import stat
import subprocess
import threading
import time
import uuid

import botocore.exceptions

from stacks_node import StacksNode, free_port, free_udp_port, parse_metrics, remember_secret, stacks_binary
from test_raft import healthy_with, status, wait_for


def stacks(*args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([str(stacks_binary()), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def make_token(node, *args) -> str:
    out = stacks("token", "create", "--data-dir", node.data_dir, *args)
    assert out.returncode == 0, out.stderr
    return remember_secret(out.stdout.strip().splitlines()[-1])


def tokens(node) -> list[dict]:
    out = stacks("token", "list", "--data-dir", node.data_dir, "--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def joins(node) -> list[dict]:
    out = stacks("token", "list", "--joins", "--data-dir", node.data_dir, "--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def founder(root, name="n1") -> StacksNode:
    n = StacksNode(root, name, gossip_key="")
    n.start()
    return n


def join_cli(seed: str, token: str, data_dir, name: str) -> subprocess.CompletedProcess:
    """`stacks join` on fresh ports; leaves DATA_DIR/node.toml for `stacks agent --data-dir`."""
    ports = [free_port() for _ in range(5)]
    return stacks("join", seed, "--token", token, "--data-dir", data_dir, "--name", name,
                  "--s3-listen", f"127.0.0.1:{ports[0]}", "--gossip-listen", f"127.0.0.1:{free_udp_port()}",
                  "--admin-listen", f"127.0.0.1:{ports[1]}", "--raft-listen", f"127.0.0.1:{ports[2]}",
                  "--metrics-listen", f"127.0.0.1:{ports[3]}", "--data-listen", f"127.0.0.1:{ports[4]}")


def test_nodes_join_with_tokens_and_the_cluster_works_through_every_node(tmp_path):
    n1 = founder(tmp_path)
    nodes = [n1]
    try:
        ident = n1.data_dir / "identity"
        for f in ("cluster.key", "cluster.pub", "node.key", "node.cred"):
            assert stat.S_IMODE(os.stat(ident / f).st_mode) == 0o600, f
        assert stat.S_IMODE(os.stat(ident).st_mode) == 0o700
        # The seed is the founder's `address` in status.
        _, st = status(n1)
        seed = next(x["address"] for x in st["nodes"] if x["name"] == "n1")
        assert seed == n1.data_address
        token = make_token(n1, "--uses", "3", "--ttl", "10m")
        # Three through `join.seed`/`join.token` in their config (`stacks agent --join --token`)...
        for i in range(2, 5):
            n = StacksNode(tmp_path, f"n{i}", gossip_key="", join=(seed, token))
            nodes.append(n)
            n.start()
        # ...and one with a token of its own through `stacks join`, then `stacks agent --data-dir`.
        token5 = make_token(n1, "--role", "storage")
        d5 = tmp_path / "n5"
        out = join_cli(nodes[2].data_address, token5, d5, "n5")
        assert out.returncode == 0, out.stderr
        assert "joined cluster" in out.stdout and (d5 / "node.toml").exists()
        log5 = open(tmp_path / "n5.log", "wb")
        p5 = subprocess.Popen([str(stacks_binary()), "agent", "--data-dir", str(d5)], stdout=log5, stderr=subprocess.STDOUT)
        try:
            wait_for("n5 serving", lambda: ((d5 / "env").exists(), "no env file"), 60)

            def five_healthy():
                rc, s = status(n1)
                alive = [x["name"] for x in s["nodes"] if x["status"] == "alive"]
                return rc == 0 and len(alive) == 5 and (s.get("layout") or {}).get("members") == 5, (rc, alive, s.get("problems"))
            wait_for("five nodes healthy in status", five_healthy, 90)
            for n in nodes:
                rc, s = status(n)
                assert rc == 0, s["problems"]
            # The token was used three times, exactly; the audit names every joiner.
            t = next(x for x in tokens(n1) if token.split("-")[2] == x["id"])
            assert t["uses_left"] == 0
            assert sorted(j["node"] for j in joins(n1)) == ["n2", "n3", "n4", "n5"]
            assert next(j for j in joins(n1) if j["node"] == "n5")["role"] == "storage"
            # S3 through every node, read back through another.
            c = n1.client()
            bucket = f"join-{uuid.uuid4().hex[:8]}"
            c.create_bucket(Bucket=bucket)
            env5 = dict(line.split("=", 1) for line in (d5 / "env").read_text().split() if "=" in line)
            # A joined node's env names its endpoint, but keeps no S3 secret (the founder's does).
            assert "AWS_SECRET_ACCESS_KEY" not in env5 and "AWS_SECRET_ACCESS_KEY" in n1.env
            for n in nodes[1:]:
                assert "AWS_SECRET_ACCESS_KEY" not in (n.data_dir / "env").read_text(), n.name
            endpoints = [n.endpoint for n in nodes] + [env5["STACKS_S3_ENDPOINT"]]
            import boto3
            from stacks_node import s3_config
            clients = [boto3.client("s3", endpoint_url=e, aws_access_key_id=n1.access_key, aws_secret_access_key=n1.secret_key,
                                    region_name="us-east-1", config=s3_config()) for e in endpoints]
            for i, cl in enumerate(clients):
                cl.put_object(Bucket=bucket, Key=f"k{i}", Body=f"through {i}".encode() * 100)
            for i in range(len(clients)):
                got = clients[(i + 1) % len(clients)].get_object(Bucket=bucket, Key=f"k{i}")["Body"].read()
                assert got == f"through {i}".encode() * 100
            # A node that joined restarts on its credential, with no token needed again.
            nodes[1].restart()
            assert stacks("status", "--data-dir", nodes[1].data_dir).returncode in (0, 1)
        finally:
            p5.kill()
            p5.wait()
    finally:
        for n in nodes:
            n.kill()


def test_every_bad_join_is_refused_with_its_reason_and_changes_nothing(tmp_path):
    n1 = founder(tmp_path / "a")
    other = founder(tmp_path / "b", "o1")
    secrets = []
    try:
        def refused(seed, token, name, want):
            if token.startswith("STKS1-"):
                secrets.append(token.split("-")[-1])
            out = join_cli(seed, token, tmp_path / "try" / name, name)
            assert out.returncode != 0, out.stdout
            assert want in out.stderr, out.stderr
            assert not (tmp_path / "try" / name / "identity" / "node.cred").exists()

        expired = make_token(n1, "--ttl", "1s")
        revoked = make_token(n1)
        assert stacks("token", "revoke", "--data-dir", n1.data_dir, revoked.split("-")[2]).returncode == 0
        good = make_token(n1, "--uses", "1")
        parts = good.split("-")
        forged = "-".join(parts[:3] + [("0" if parts[3][0] != "0" else "1") + parts[3][1:]])
        unknown = "-".join(parts[:2] + ["00" * 8, parts[3]])
        foreign = make_token(other)
        before = tokens(n1)

        refused(n1.data_address, revoked, "r1", "revoked")
        refused(n1.data_address, forged, "r2", "secret is wrong")
        refused(n1.data_address, unknown, "r3", "no such token")
        refused(n1.data_address, foreign, "r4", "does not hold the cluster key")
        # A seed that is a member of another cluster never sees this cluster's secret.
        refused(other.data_address, good, "r5", "does not hold the cluster key")
        refused(n1.data_address, "not-a-token", "r6", "not a join token")
        wait_for("the 1 s token to expire", lambda: (time.time() * 1000 > next(t for t in tokens(n1) if t["id"] == expired.split("-")[2])["expires_ms"], ""), 10)
        refused(n1.data_address, expired, "r7", "expired")
        assert tokens(n1) == before, "refusals changed no token"
        assert joins(n1) == []

        # Two nodes racing with one single-use token: exactly one gets in.
        results = {}

        def race(name):
            results[name] = join_cli(n1.data_address, good, tmp_path / "race" / name, name)
        threads = [threading.Thread(target=race, args=(f"x{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.returncode for r in results.values())
        assert codes[0] == 0 and codes[1] != 0, {k: (v.returncode, v.stderr) for k, v in results.items()}
        loser = next(r for r in results.values() if r.returncode != 0)
        assert "no uses left" in loser.stderr, loser.stderr
        assert [j["node"] for j in joins(n1)] == [next(k for k, v in results.items() if v.returncode == 0)]

        m = parse_metrics(n1.metrics_text())
        for reason, count in [("revoked", 1), ("wrong_secret", 1), ("unknown_token", 1), ("expired", 1), ("used_up", 1), ("other_cluster", 1)]:
            assert m.get(f'stacks_join_refused_total{{reason="{reason}"}}') == count, (reason, {k: v for k, v in m.items() if "join" in k})
        assert m.get("stacks_joins_total") == 1
        # A seed of another cluster counts the joiner that would not give it this cluster's secret.
        assert other.metrics().get('stacks_join_refused_total{reason="other_cluster"}') == 1

        # No secret in any log or listing.
        listing = stacks("token", "list", "--data-dir", n1.data_dir).stdout + json.dumps(tokens(n1)) + json.dumps(status(n1)[1])
        logs = (n1.log_path.read_text(errors="replace") + other.log_path.read_text(errors="replace")
                + "".join(r.stdout + r.stderr for r in results.values()))
        for s in secrets + [good.split("-")[-1]]:
            assert s not in listing and s not in logs, s
    finally:
        n1.kill()
        other.kill()


def test_a_token_need_not_appear_on_a_command_line(tmp_path):
    """`stacks join` reads the token from --token-file or STACKS_TOKEN; `stacks agent --join SEED
    --token-file FILE` enrols and runs in one step (k3s takes --token-file and K3S_TOKEN alike)."""
    n1 = founder(tmp_path)
    procs = []
    try:
        token = make_token(n1, "--uses", "3")
        secret_file = tmp_path / "token"
        secret_file.write_text(token + "\n")
        ports = [free_port() for _ in range(5)]
        listen = ["--s3-listen", f"127.0.0.1:{ports[0]}", "--gossip-listen", f"127.0.0.1:{free_udp_port()}",
                  "--admin-listen", f"127.0.0.1:{ports[1]}", "--raft-listen", f"127.0.0.1:{ports[2]}",
                  "--metrics-listen", f"127.0.0.1:{ports[3]}", "--data-listen", f"127.0.0.1:{ports[4]}"]
        out = stacks("join", n1.data_address, "--token-file", secret_file, "--data-dir", tmp_path / "f2", "--name", "f2", *listen)
        assert out.returncode == 0, out.stderr
        env = dict(os.environ, STACKS_TOKEN=token)
        out = subprocess.run([str(stacks_binary()), "join", n1.data_address, "--data-dir", str(tmp_path / "f3"), "--name", "f3", *listen],
                             capture_output=True, text=True, timeout=60, env=env)
        assert out.returncode == 0, out.stderr
        for d in ("f2", "f3"):
            assert (tmp_path / d / "identity" / "node.cred").exists()
        # The agent enrols and runs in one step, the token read from a file.
        ports = [free_port() for _ in range(5)]
        d4 = tmp_path / "f4"
        args = [str(stacks_binary()), "agent", "--dev", "--data-dir", str(d4), "--name", "f4", "--join", n1.data_address, "--token-file", str(secret_file),
                "--s3-listen", f"127.0.0.1:{ports[0]}", "--gossip-listen", f"127.0.0.1:{free_udp_port()}",
                "--admin-listen", f"127.0.0.1:{ports[1]}", "--raft-listen", f"127.0.0.1:{ports[2]}",
                "--metrics-listen", f"127.0.0.1:{ports[3]}", "--data-listen", f"127.0.0.1:{ports[4]}"]
        d4.mkdir()
        log = open(d4 / "agent.log", "wb")
        procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        wait_for("f4 admitted and in n1's view", lambda: (any(x["name"] == "f4" for x in status(n1)[1]["nodes"]), ""), 60)
        assert (d4 / "identity" / "node.cred").exists()
        assert token not in " ".join(args)
        assert [j["node"] for j in joins(n1)] == ["f2", "f3", "f4"]
    finally:
        for p in procs:
            p.kill()
            p.wait()
        n1.kill()


def test_made_up_tokens_never_reach_the_log_and_a_flood_is_rate_limited(tmp_path):
    """A join with a made-up token is refused on the member's replica before anything is
    proposed: 20 of them leave the commit index where it was. Past 30 attempts a minute from one
    address the member refuses without looking (`rate_limited`)."""
    n1 = founder(tmp_path)
    try:
        parts = make_token(n1).split("-")

        def commit():
            return status(n1)[1]["commit_index"]
        wait_for("the founder in the layout", lambda: ((status(n1)[1].get("layout") or {}).get("members") == 1, ""), 30)
        before = commit()
        for i in range(20):
            made_up = "-".join(parts[:2] + [uuid.uuid4().hex[:16], uuid.uuid4().hex])
            out = join_cli(n1.data_address, made_up, tmp_path / "try" / f"m{i}", f"m{i}")
            assert out.returncode != 0 and "no such token" in out.stderr, out.stderr
        assert commit() == before, "a made-up token reached the Raft log"
        outs = [join_cli(n1.data_address, "-".join(parts[:2] + [uuid.uuid4().hex[:16], parts[3]]), tmp_path / "flood" / f"f{i}", f"f{i}")
                for i in range(20)]
        assert all(o.returncode != 0 for o in outs)
        assert any("too many join attempts" in o.stderr for o in outs), [o.stderr for o in outs]
        m = n1.metrics()
        assert m.get('stacks_join_refused_total{reason="unknown_token"}') + m.get('stacks_join_refused_total{reason="rate_limited"}') == 40, m
        assert m.get('stacks_join_refused_total{reason="rate_limited"}') >= 5  # 30 at once, then one each 2 s
        assert commit() == before
    finally:
        n1.kill()


def test_a_process_without_a_credential_gets_no_share_and_its_connections_are_refused(tmp_path):
    import socket
    n1 = founder(tmp_path)
    n2 = StacksNode(tmp_path, "n2", gossip_key="", join=(n1.data_address, make_token(n1)))
    n2.start()
    # It holds the gossip key (stolen, or from before tokens) but no credential.
    stolen = (n1.data_dir / "keyring").read_text().split()[0]
    intruder = StacksNode(tmp_path, "intruder", gossip_key=stolen, seeds=[n1.gossip_address], wait_env=False)
    intruder.start()
    try:
        wait_for("n1 and n2 in the layout", lambda: ((status(n1)[1].get("layout") or {}).get("members") == 2, ""), 60)
        wait_for("the intruder alive in n1's gossip",
                 lambda: (any(x["name"] == "intruder" and x["status"] == "alive" for x in status(n1)[1]["nodes"]), ""), 30)
        # The leader manages voters and the layout every second: over three of its rounds the
        # intruder gets neither a Raft seat nor a share of the data.
        for _ in range(6):
            _, s = status(n1)
            role = next(x["raft_role"] for x in s["nodes"] if x["name"] == "intruder")
            assert role == "none" and s["layout"]["members"] == 2, (role, s.get("layout"))
            time.sleep(0.5)
        # Connections that do not open with a credential's handshake are refused and counted.
        def refused(port, payload):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                c.sendall(payload)
                c.settimeout(10)
                while c.recv(4096):
                    pass  # the node's challenge, then the close
        refused(n1.data_port, os.urandom(16) + (60).to_bytes(4, "little") + os.urandom(60))
        refused(n1.raft_port, (35).to_bytes(4, "little") + os.urandom(35))

        def counted():
            m = n1.metrics()
            return (m.get("stacks_data_handshakes_refused_total", 0) >= 1 and m.get("stacks_raft_handshakes_refused_total", 0) >= 1,
                    {k: v for k, v in m.items() if "handshakes" in k})
        wait_for("both refusals counted", counted, 30)
        # The members still work together.
        c = n2.client(access_key=n1.access_key, secret_key=n1.secret_key)
        c.create_bucket(Bucket="still-works")
        c.put_object(Bucket="still-works", Key="k", Body=b"x" * 5000)
        assert n1.client().get_object(Bucket="still-works", Key="k")["Body"].read() == b"x" * 5000
    finally:
        for n in (n1, n2, intruder):
            n.kill()


def test_a_removed_node_is_locked_out_and_the_gossip_key_rotates_without_it(tmp_path):
    n1 = founder(tmp_path)
    token = make_token(n1, "--uses", "2")
    others = [StacksNode(tmp_path, f"n{i}", gossip_key="", join=(n1.data_address, token)) for i in (2, 3)]
    for n in others:
        n.start()
    n2, n3 = others
    nodes = [n1, n2, n3]
    try:
        wait_for("three nodes in the layout", lambda: ((status(n1)[1].get("layout") or {}).get("members") == 3, ""), 60)
        c = n1.client()
        c.create_bucket(Bucket="keep")
        for i in range(5):
            c.put_object(Bucket="keep", Key=f"k{i}", Body=bytes([i]) * 20000)
        old_key = (n1.data_dir / "keyring").read_text().split()[0]
        refused_before = sum(n.metrics().get("stacks_raft_handshakes_refused_total", 0) + n.metrics().get("stacks_data_handshakes_refused_total", 0) for n in (n1, n2))

        assert stacks("node", "remove", "n1", "--data-dir", n1.data_dir).returncode != 0, "a node does not remove itself"
        out = stacks("node", "remove", "n3", "--data-dir", n1.data_dir)
        assert out.returncode == 0, out.stderr
        # Asked again (a lost answer, a crash between removal and rotation), it finishes the job.
        again = stacks("node", "remove", "n3", "--data-dir", n2.data_dir)
        assert again.returncode == 0 and "already removed" in again.stdout and "rotated again" in again.stdout, again

        # The members adopt a new gossip key; the removed node never learns it.
        def rotated():
            prim = [(n.data_dir / "keyring").read_text().split()[0] for n in (n1, n2)]
            return all(p != old_key for p in prim) and prim[0] == prim[1], prim
        wait_for("the new gossip key on n1 and n2", rotated, 30)
        new_key = (n1.data_dir / "keyring").read_text().split()[0]
        assert new_key not in (n3.data_dir / "keyring").read_text()
        # It loses its Raft seat and its share of the data; its connections are refused.
        def out_of_the_cluster():
            s = status(n1)[1]
            role = next((x["raft_role"] for x in s["nodes"] if x["name"] == "n3"), "none")
            return role == "none" and (s.get("layout") or {}).get("members") == 2, (role, s.get("layout"))
        wait_for("n3 out of the Raft group and the layout", out_of_the_cluster, 60)
        # Restarted, it still holds its credential; whatever it asks of the members is refused.
        n3.kill()
        n3.start()
        try:
            n3.client(access_key=n1.access_key, secret_key=n1.secret_key, read_timeout=30).put_object(Bucket="keep", Key="late", Body=b"z" * 5000)
            raise AssertionError("a write through the removed node was acknowledged")
        except botocore.exceptions.ClientError:
            pass  # it cannot reach a write quorum among members that refuse it

        def refused_now():
            total = sum(n.metrics().get("stacks_raft_handshakes_refused_total", 0) + n.metrics().get("stacks_data_handshakes_refused_total", 0)
                        for n in (n1, n2))
            return total > refused_before, total
        wait_for("the restarted removed node refused by the members", refused_now, 60)
        # Every object is still whole through the members.
        for n in (n1, n2):
            for i in range(5):
                assert n.client(access_key=n1.access_key, secret_key=n1.secret_key).get_object(Bucket="keep", Key=f"k{i}")["Body"].read() == bytes([i]) * 20000
        assert [j["node"] for j in joins(n1)] == ["n2", "n3"]
    finally:
        for n in nodes:
            n.kill()


def test_remove_with_rotate_keys_leaves_the_removed_node_no_working_s3_secret(tmp_path):
    """The removed node's disk opens every S3 secret it knew (`stacks debug unseal`, as an
    attacker holding its data directory would). `node remove --rotate-keys --grace 1h` gives
    every user a new secret, printed once: old and new both work meanwhile. Run again with
    `--grace 0s` (a retry finishes the removal) the secrets the removed node holds are refused
    at once through every member, only the newest work, and the founder's env follows."""
    import boto3
    from stacks_node import parse_env_file, s3_config
    n1 = founder(tmp_path)
    token = make_token(n1, "--uses", "2")
    n2, n3 = (StacksNode(tmp_path, f"n{i}", gossip_key="", join=(n1.data_address, token)) for i in (2, 3))
    nodes = [n1, n2, n3]
    for n in (n2, n3):
        n.start()
    try:
        wait_for("three nodes in the layout", lambda: ((status(n1)[1].get("layout") or {}).get("members") == 3, ""), 60)
        out = stacks("key", "create", "--name", "alice", "--data-dir", n1.data_dir)
        assert out.returncode == 0, out.stderr
        kv = dict(line.split("=", 1) for line in out.stdout.split())
        alice = kv["AWS_ACCESS_KEY_ID"]
        first = remember_secret(kv["AWS_SECRET_ACCESS_KEY"])

        def s3(node, secret):
            return boto3.client("s3", endpoint_url=node.endpoint, aws_access_key_id=alice, aws_secret_access_key=secret,
                                region_name="us-east-1", config=s3_config())

        def code(node, secret):
            try:
                return [o["Key"] for o in s3(node, secret).list_objects_v2(Bucket="alice-data").get("Contents", [])]
            except botocore.exceptions.ClientError as e:
                return e.response["Error"]["Code"]
        s3(n1, first).create_bucket(Bucket="alice-data")
        s3(n2, first).put_object(Bucket="alice-data", Key="doc", Body=b"alice's")

        def rotate(via, grace):
            out = stacks("node", "remove", "n3", "--rotate-keys", "--grace", grace, "--data-dir", via.data_dir)
            assert out.returncode == 0, out.stderr
            assert "the secrets key was rotated" in out.stdout, out.stdout
            table = out.stdout.split("SECRET\n", 1)[1]
            rows = {line.split()[0]: line.split()[2] for line in table.splitlines()}
            assert alice in rows and n1.access_key in rows, out.stdout
            return {k: remember_secret(v) for k, v in rows.items()}

        admin_before = parse_env_file(n1.env_path)["AWS_SECRET_ACCESS_KEY"]
        second = rotate(n1, "1h")
        n3.kill()
        unsealed = stacks("debug", "unseal", "--data-dir", n3.data_dir)
        assert unsealed.returncode == 0, unsealed.stderr
        kept = {tuple(line.split()) for line in unsealed.stdout.splitlines()}
        assert (alice, first) in kept and (n1.access_key, admin_before) in kept, "the removed node's disk opens what it knew"
        assert not any(s in unsealed.stdout for s in second.values()), "the new secrets never reached it"
        # Within the grace both work, through every member.
        for n in (n1, n2):
            assert code(n, first) == ["doc"] and code(n, second[alice]) == ["doc"]

        third = rotate(n2, "0s")

        def refused():
            return sum(v for n in (n1, n2) for k, v in n.metrics().items() if k.startswith("stacks_s3_requests_total") and 'status="403"' in k)
        refused_before = refused()
        for n in (n1, n2):
            for secret in (first, second[alice]):
                assert code(n, secret) == "SignatureDoesNotMatch", "a secret the removed node holds, or a replaced one, still works"
            assert code(n, third[alice]) == ["doc"]
        assert refused() >= refused_before + 4, "each refusal is counted"
        wait_for("the founder's env holds its key's new secret",
                 lambda: (parse_env_file(n1.env_path)["AWS_SECRET_ACCESS_KEY"] == third[n1.access_key], ""), 10)
        admin = boto3.client("s3", endpoint_url=n2.endpoint, aws_access_key_id=n1.access_key, aws_secret_access_key=admin_before,
                             region_name="us-east-1", config=s3_config())
        try:
            admin.list_buckets()
            raise AssertionError("the removed node's admin secret still works")
        except botocore.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] == "SignatureDoesNotMatch"
    finally:
        for n in nodes:
            n.kill()


def test_replayed_node_connections_are_refused_and_counted(tmp_path):
    """Raft and data connections recorded off the wire while a member restarts, sent again byte
    for byte: each is refused at the handshake (its proof was sealed under that connection's
    session key) and counted, and the cluster is unchanged."""
    import socket
    from wire import record_tcp_streams
    n1 = founder(tmp_path)
    token = make_token(n1, "--uses", "2")
    nodes = [n1] + [StacksNode(tmp_path, f"n{i}", gossip_key="", join=(n1.data_address, token)) for i in (2, 3)]
    for n in nodes[1:]:
        n.start()
    try:
        wait_for("three nodes in the layout", lambda: ((status(n1)[1].get("layout") or {}).get("members") == 3, ""), 60)
        ports = {p for n in nodes for p in (n.raft_port, n.data_port)}
        recorded: list = []
        listening = threading.Event()
        recorder = threading.Thread(target=lambda: recorded.extend(record_tcp_streams(ports, 8, listening)))
        recorder.start()
        assert listening.wait(10)
        nodes[2].restart()
        c = nodes[2].client(access_key=n1.access_key, secret_key=n1.secret_key)
        c.create_bucket(Bucket="recorded")
        c.put_object(Bucket="recorded", Key="k", Body=b"r" * 50_000)
        recorder.join()
        assert recorded, "no node-to-node connection recorded during the restart"
        assert {p for p, _ in recorded} & {n.raft_port for n in nodes} and {p for p, _ in recorded} & {n.data_port for n in nodes}, recorded

        def refusals():
            return sum(n.metrics().get(f"stacks_{k}_handshakes_refused_total", 0) for n in nodes for k in ("raft", "data"))
        wait_for("the restart settled", healthy_with(nodes, 3), 60)
        before, state = refusals(), status(n1)[1]
        for port, data in recorded:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                try:
                    conn.sendall(data)
                    conn.shutdown(socket.SHUT_WR)
                    while conn.recv(65536):
                        pass  # the node's half of the handshake, then its close
                except (ConnectionResetError, BrokenPipeError):
                    pass  # closed with our replay unread
                except OSError as e:
                    if e.errno != errno.ENOTCONN:
                        raise  # ENOTCONN: reset before our shutdown, the same refusal
        wait_for(f"{len(recorded)} replays refused", lambda: (refusals() - before >= len(recorded), refusals() - before), 30)
        assert refusals() - before == len(recorded)
        assert healthy_with(nodes, 3)()[0]
        after = status(n1)[1]
        assert after.get("layout") == state.get("layout")
        assert sorted((x["name"], x["raft_role"]) for x in after["nodes"]) == sorted((x["name"], x["raft_role"]) for x in state["nodes"])
        assert n1.client().get_object(Bucket="recorded", Key="k")["Body"].read() == b"r" * 50_000
    finally:
        for n in nodes:
            n.kill()


def test_two_s3_users_each_see_and_touch_only_what_they_may(tmp_path):
    import boto3
    from stacks_node import s3_config
    n1 = founder(tmp_path)
    n2 = StacksNode(tmp_path, "n2", gossip_key="", join=(n1.data_address, make_token(n1)))
    n2.start()
    try:
        wait_for("both nodes in the layout", lambda: ((status(n1)[1].get("layout") or {}).get("members") == 2, ""), 60)

        def key(*args):
            out = stacks("key", "create", "--data-dir", n1.data_dir, *args)
            assert out.returncode == 0, out.stderr
            kv = dict(line.split("=", 1) for line in out.stdout.split())
            return kv["AWS_ACCESS_KEY_ID"], remember_secret(kv["AWS_SECRET_ACCESS_KEY"])

        alice, bob = key("--name", "alice"), key("--name", "bob")
        carol = key("--name", "carol", "--bucket", "alice-data", "--allow", "read")

        def s3(node, k):
            return boto3.client("s3", endpoint_url=node.endpoint, aws_access_key_id=k[0], aws_secret_access_key=k[1],
                                region_name="us-east-1", config=s3_config())

        def code(call):
            try:
                call()
            except botocore.exceptions.ClientError as e:
                return e.response["Error"]["Code"]
            return "ok"
        a, b, c = s3(n1, alice), s3(n2, bob), s3(n2, carol)
        a.create_bucket(Bucket="alice-data")
        a.put_object(Bucket="alice-data", Key="doc", Body=b"alice's")
        b.create_bucket(Bucket="bob-data")
        # One namespace: bob cannot take alice's name; alice creating it again is fine (us-east-1).
        assert code(lambda: b.create_bucket(Bucket="alice-data")) == "BucketAlreadyExists"
        assert code(lambda: s3(n2, alice).create_bucket(Bucket="alice-data")) == "ok"
        assert [x["Name"] for x in b.list_buckets()["Buckets"]] == ["bob-data"]
        assert [x["Name"] for x in s3(n2, alice).list_buckets()["Buckets"]] == ["alice-data"]
        assert a.list_buckets()["Owner"]["DisplayName"] == "alice"
        # Every operation of bob's on alice's bucket is refused, a copy out of it included.
        for call in [lambda: b.get_object(Bucket="alice-data", Key="doc"), lambda: b.head_object(Bucket="alice-data", Key="doc"),
                     lambda: b.put_object(Bucket="alice-data", Key="x", Body=b"1"), lambda: b.delete_object(Bucket="alice-data", Key="doc"),
                     lambda: b.list_objects_v2(Bucket="alice-data"), lambda: b.delete_bucket(Bucket="alice-data"),
                     lambda: b.copy_object(Bucket="bob-data", Key="stolen", CopySource={"Bucket": "alice-data", "Key": "doc"}),
                     lambda: b.create_multipart_upload(Bucket="alice-data", Key="m")]:
            assert code(call) in ("AccessDenied", "403"), code(call)
        assert a.get_object(Bucket="alice-data", Key="doc")["Body"].read() == b"alice's"
        # carol reads alice-data and nothing more.
        assert c.get_object(Bucket="alice-data", Key="doc")["Body"].read() == b"alice's"
        assert [o["Key"] for o in c.list_objects_v2(Bucket="alice-data")["Contents"]] == ["doc"]
        assert code(lambda: c.put_object(Bucket="alice-data", Key="y", Body=b"2")) == "AccessDenied"
        assert code(lambda: c.create_bucket(Bucket="carols")) == "AccessDenied"
        assert code(lambda: c.get_object(Bucket="bob-data", Key="z")) == "AccessDenied"
        # Listings show the owner.
        assert a.list_objects(Bucket="alice-data")["Contents"][0]["Owner"]["DisplayName"] == "alice"
        assert a.list_objects_v2(Bucket="alice-data", FetchOwner=True)["Contents"][0]["Owner"]["DisplayName"] == "alice"
        # The founder's key is the admin's: it sees both.
        assert sorted(x["Name"] for x in n1.client().list_buckets()["Buckets"]) == ["alice-data", "bob-data"]
        # Keys are listed without secrets; a deleted key is refused everywhere.
        listing = stacks("key", "list", "--data-dir", n2.data_dir).stdout
        assert "alice" in listing and "carol" in listing
        assert stacks("key", "delete", "--data-dir", n1.data_dir, bob[0]).returncode == 0
        wait_for("bob's key refused on n2", lambda: (code(lambda: b.list_buckets()) == "InvalidAccessKeyId", code(lambda: b.list_buckets())), 10)
        logs = n1.log_path.read_text(errors="replace") + n2.log_path.read_text(errors="replace")
        everything = logs + listing + stacks("key", "list", "--data-dir", n1.data_dir, "--format", "json").stdout + json.dumps(status(n1)[1])
        for secret in (alice[1], bob[1], carol[1]):
            assert secret not in everything
    finally:
        n1.kill()
        n2.kill()
