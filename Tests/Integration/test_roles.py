"""Members are who they say and do only what their role allows: a node joined with a `compute`
token cannot make tokens, S3 keys or remove nodes, through the CLI or by forwarding the change to
the leader itself; no member's frame is taken in another member's name. The misbehaving member is
`stacks debug raft-frame`, which opens a Raft connection with a node's real credential."""
from __future__ import annotations

from stacks_node import StacksNode
from test_join import founder, make_token, stacks, tokens
from test_raft import healthy_with, status, wait_for


def debug_frame(sender: StacksNode, target: StacksNode, frame: str, as_name: str | None = None):
    args = ["debug", "raft-frame", "--data-dir", sender.data_dir, "--to", f"127.0.0.1:{target.raft_port}", "--to-name", target.name,
            "--frame", frame]
    out = stacks(*args, *(["--from", as_name] if as_name else []))
    assert out.returncode == 0, out.stderr
    return out


def dropped(node: StacksNode, reason: str) -> float:
    return node.metrics().get(f'stacks_raft_frames_dropped_total{{reason="{reason}"}}', 0)


def test_a_compute_node_may_not_administer_and_no_member_speaks_for_another(tmp_path):
    n1 = founder(tmp_path)
    nodes = [n1]
    try:
        n2 = StacksNode(tmp_path, "n2", gossip_key="", join=(n1.data_address, make_token(n1)))
        c = StacksNode(tmp_path, "c", gossip_key="", join=(n1.data_address, make_token(n1, "--role", "compute")))
        nodes += [n2, c]
        for n in nodes[1:]:
            n.start()
        wait_for("3 voters", healthy_with(nodes, 3), 90)

        # The CLI on the compute node is refused with the reason, and nothing changes.
        before = tokens(n1)
        for args in (["token", "create"], ["key", "create", "--name", "eve"], ["node", "remove", "n2"], ["token", "revoke", before[0]["id"]]):
            out = stacks(*args, "--data-dir", c.data_dir)
            assert out.returncode != 0 and "role (compute) may not" in out.stderr, (args, out.stdout, out.stderr)
        assert tokens(n1) == before
        assert "eve" not in stacks("key", "list", "--data-dir", n1.data_dir).stdout
        assert all(x["name"] in ("n1", "n2", "c") for x in status(n1)[1]["nodes"])
        # S3 is served on every node, the compute node included.
        s3 = c.client(access_key=n1.access_key, secret_key=n1.secret_key)
        s3.create_bucket(Bucket="through-compute")
        s3.put_object(Bucket="through-compute", Key="k", Body=b"v")
        assert n1.client().get_object(Bucket="through-compute", Key="k")["Body"].read() == b"v"

        leader_name = next(x["name"] for x in status(n1)[1]["nodes"] if x["raft_role"] == "leader")
        leader = next(n for n in nodes if n.name == leader_name)
        other_all = next(n for n in (n1, n2) if n is not leader)
        follower = next(n for n in nodes if n is not leader and n is not c)

        # The compute node forwards a token of its own making to the leader: refused, counted.
        r0 = dropped(leader, "role")
        debug_frame(c, leader, "token")
        wait_for("the leader counts the refusal", lambda: (dropped(leader, "role") == r0 + 1, dropped(leader, "role")), 10)
        # ...and in the name of a node of role all: refused as an impersonation.
        i0 = dropped(leader, "impersonation")
        debug_frame(c, leader, "token", as_name=other_all.name)
        wait_for("the leader counts the impersonation", lambda: (dropped(leader, "impersonation") == i0 + 1, dropped(leader, "impersonation")), 10)
        # A member of role all votes at a huge term in the compute node's name at a follower: refused.
        f0 = dropped(follower, "impersonation")
        sender = other_all if other_all is not follower else leader
        debug_frame(sender, follower, "vote", as_name="c")
        wait_for("the follower counts the impersonation", lambda: (dropped(follower, "impersonation") == f0 + 1, dropped(follower, "impersonation")), 10)
        assert tokens(n1) == before
        for n in nodes:
            assert n.metrics().get("stacks_raft_term", 0) < 1_000_000, n.name
        assert healthy_with(nodes, 3)()[0]

        # The same harness with a node of role all, in its own name, is obeyed: the refusals above
        # are the roles' and the names', not the harness's.
        debug_frame(other_all, leader, "token")
        wait_for("a token forwarded by a node of role all", lambda: (len(tokens(n1)) == len(before) + 1, tokens(n1)), 10)
        # And its vote, in its own name, reaches the follower's Raft core (which takes the term).
        debug_frame(sender, follower, "vote")
        wait_for("the follower at the vote's term", lambda: (follower.metrics().get("stacks_raft_term", 0) >= 1_000_000, ""), 10)
    finally:
        for n in nodes:
            n.kill()


def handshakes_refused(node: StacksNode) -> float:
    return node.metrics().get("stacks_raft_handshakes_refused_total", 0)


def test_a_credential_minted_for_a_name_never_admitted_opens_nothing(tmp_path):
    """A removed founder keeps the cluster's signing key and signs a credential for a fresh name:
    every member refuses it at the handshake (the name is in no node record), and counts it."""
    n1 = founder(tmp_path)
    token = make_token(n1, "--uses", "2")
    nodes = [n1] + [StacksNode(tmp_path, f"n{i}", gossip_key="", join=(n1.data_address, token)) for i in (2, 3)]
    try:
        for n in nodes[1:]:
            n.start()
        wait_for("3 voters", healthy_with(nodes, 3), 90)
        out = stacks("node", "remove", "n1", "--data-dir", nodes[1].data_dir)
        assert out.returncode == 0, out.stderr
        n2, n3 = nodes[1:]
        wait_for("n1 out of the Raft group", lambda: (next((x["raft_role"] for x in status(n2)[1]["nodes"] if x["name"] == "n1"), "none") == "none", ""), 60)
        n1.kill()  # what is left of it is its data dir, signing key included; nothing else knocks
        for target in (n2, n3):
            before = handshakes_refused(target)
            args = ["debug", "raft-frame", "--data-dir", n1.data_dir, "--to", f"127.0.0.1:{target.raft_port}", "--to-name", target.name,
                    "--frame", "vote", "--mint", "ghost"]
            stacks(*args)  # the acceptor refuses after the proof, so the sender may not notice
            wait_for(f"{target.name} counts the refusal", lambda: (handshakes_refused(target) > before, handshakes_refused(target)), 10)
            assert target.metrics().get("stacks_raft_term", 0) < 1_000_000
        assert all(x["name"] != "ghost" for x in status(n2)[1]["nodes"])
    finally:
        for n in nodes:
            n.kill()


def test_a_member_of_role_all_admits_joiners_while_the_founder_is_down(tmp_path):
    """Every node of role all holds the signing key: with the founder killed, a new node joins
    through another member; the founder comes back and is still a member."""
    n1 = founder(tmp_path)
    token = make_token(n1, "--uses", "3")
    nodes = [n1] + [StacksNode(tmp_path, f"n{i}", gossip_key="", join=(n1.data_address, token)) for i in (2, 3, 4)]
    try:
        for n in nodes[1:]:
            n.start()
        wait_for("3 voters", healthy_with(nodes, 3), 90)
        late = make_token(n1)
        n1.kill()
        n2 = nodes[1]
        wait_for("a leader without n1", lambda: (any(x["raft_role"] == "leader" and x["name"] != "n1" for x in status(n2)[1]["nodes"]), ""), 60)
        n5 = StacksNode(tmp_path, "n5", gossip_key="", join=(n2.data_address, late))
        nodes.append(n5)
        n5.start()
        assert n5.has_credential
        wait_for("n5 in n2's view", lambda: (any(x["name"] == "n5" for x in status(n2)[1]["nodes"]), ""), 30)
        n1.start()
        wait_for("all five healthy, the founder among them", healthy_with(nodes, 5), 90)
        names = {x["name"] for x in status(n1)[1]["nodes"]}
        assert {"n1", "n5"} <= names, names
        s3 = n5.client(access_key=n2.access_key, secret_key=n2.secret_key)
        s3.create_bucket(Bucket="after-the-founder")
        s3.put_object(Bucket="after-the-founder", Key="k", Body=b"v" * 1000)
        assert n1.client().get_object(Bucket="after-the-founder", Key="k")["Body"].read() == b"v" * 1000
    finally:
        for n in nodes:
            n.kill()
