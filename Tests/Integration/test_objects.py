"""Objects spread over real `stacks` processes: six nodes (4+2), every object written through one
node is read back byte-exact through every other, and stays so with any two nodes killed -9;
listings, overwrites and deletes agree everywhere at once; racing writers leave one whole object.
`stacks status` shows capacity and data health; a seventh node gets its share of the data and
the old copies go; a node removed for good has its shards rebuilt on the others."""
import hashlib
import json
import os
import random
import re
import subprocess
import threading

import pytest
from boto3.s3.transfer import TransferConfig

from stacks_node import stacks_binary
from test_layout import layout, same_layout_everywhere
from test_raft import healthy_with, leader_of, status, wait_for

SIZES = [0, 1, 4096, 65_537, (1 << 20) + 3, 3 * (1 << 20) + 11, 9 * (1 << 20)]
# Long enough that the kills of the first test never remove a node; the last test waits it out.
REMOVE_AFTER_S = 60
SETTINGS = {"raft": {"dead_voter_after": 2}, "data": {"remove_after": REMOVE_AFTER_S, "repair_interval": 2, "marker_grace": 2}}
# What the first test stored in bucket "spread", for the tests after it.
STORED: dict = {}


def start_six(factory, prefix: str, settings: dict) -> list:
    """Six nodes over three zones, five of them voters, all on one 4+2 layout."""
    first = factory(f"{prefix}1", tags={"zone": "a"}, **settings)
    rest = [factory(f"{prefix}{i}", start=False, seeds=[first.gossip_address], tags={"zone": "abc"[i % 3]}, **settings)
            for i in range(2, 7)]
    for n in rest:
        n.start()
    nodes = [first] + rest
    wait_for("5 voters", healthy_with(nodes, 5), 90)
    wait_for("six nodes in the layout at 4+2",
             same_layout_everywhere(nodes, lambda v: len(v["members"]) == 6 and v["scheme"] == "4+2"), 60)
    return nodes


@pytest.fixture(scope="module")
def six(module_node_factory):
    return start_six(module_node_factory, "o", SETTINGS)


def shard_files(node, bucket: str, key: str) -> list:
    """The stripe files a node holds of a key (every version)."""
    h = hashlib.sha256(bucket.encode() + b"\0" + key.encode()).digest()[:16].hex()
    d = node.data_dir / "cluster" / "shards" / h[:2] / h
    return sorted(p for p in d.iterdir() if p.name != "name") if d.exists() else []


def shard_of(path) -> int:
    """The shard number in a stripe file's name, `<time>-<writer>.<shard>.<k>.<m>[d]`."""
    return int(path.name.split(".")[1])


def body(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def keys_of(client, bucket: str, **kw) -> list[str]:
    keys, token = [], None
    while True:
        args = dict(Bucket=bucket, MaxKeys=7, **kw)
        if token:
            args["ContinuationToken"] = token
        page = client.list_objects_v2(**args)
        keys += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            return keys
        token = page["NextContinuationToken"]


def test_objects_written_anywhere_read_everywhere_and_survive_two_kills(six):
    bucket = "spread"
    six[0].client().create_bucket(Bucket=bucket)
    objects = {}
    for i, size in enumerate(SIZES * 2):
        key = f"obj/{i:02d}-{size}"
        objects[key] = body(size, i)
        six[i % 6].client().put_object(Bucket=bucket, Key=key, Body=objects[key], Metadata={"n": str(i)})
    # One multipart object through the boto3 transfer manager (5 MiB parts).
    big = body(12 * (1 << 20) + 5, 99)
    cfg = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
    path = six[0].data_dir.parent / "big.bin"
    path.write_bytes(big)
    six[2].client().upload_file(str(path), bucket, "multi/big", Config=cfg)
    objects["multi/big"] = big

    def all_exact(nodes):
        for n in nodes:
            c = n.client()
            assert sorted(keys_of(c, bucket)) == sorted(objects), f"listing through {n.name}"
            for key, data in objects.items():
                got = c.get_object(Bucket=bucket, Key=key)
                assert got["Body"].read() == data, f"{key} through {n.name}"
                assert got["ContentLength"] == len(data)
            head = c.head_object(Bucket=bucket, Key="obj/03-65537")
            assert head["Metadata"] == {"n": "3"} and head["ETag"] == f'"{hashlib.md5(objects["obj/03-65537"]).hexdigest()}"'
            ranged = c.get_object(Bucket=bucket, Key="obj/05-3145739", Range="bytes=1048570-2097160")["Body"].read()
            assert ranged == objects["obj/05-3145739"][1048570:2097161]

    all_exact(six)
    victims = random.Random(os.getpid()).sample(range(6), 2)
    # One node down: writes go on (write quorum 5 of 6).
    six[victims[0]].kill()
    up = [n for i, n in enumerate(six) if i != victims[0]]
    objects["degraded/one-down"] = body(2 * (1 << 20) + 1, 7)
    up[0].client().put_object(Bucket=bucket, Key="degraded/one-down", Body=objects["degraded/one-down"])
    # Two down: every object still reads exact through every survivor, listings complete, but a
    # write cannot reach its quorum: 503, and nothing of it shows once the nodes are back.
    six[victims[1]].kill()
    survivors = [n for i, n in enumerate(six) if i not in victims]
    all_exact(survivors)
    with pytest.raises(Exception, match="ServiceUnavailable|503"):
        survivors[0].client().put_object(Bucket=bucket, Key="degraded/two-down", Body=b"y" * 5000)
    for v in victims:
        six[v].restart()
    all_exact(six)
    for n in six:
        assert list((n.data_dir / "cluster" / "tmp").iterdir()) == [], f"temporary shards left on {n.name}"
    # Repair brings every object back to a shard on every node (the restarted ones missed the
    # object written while they were down).
    def redundant():
        for key in objects:
            lacking = [n.name for n in six if not shard_files(n, bucket, key)]
            if lacking:
                return False, f"{key} lacks shards on {lacking}"
        return True, ""
    wait_for("every object on all six nodes", redundant, 60)
    STORED.update(objects)


def test_flipped_bytes_are_served_around_and_rewritten(six):
    bucket = "bitrot"
    six[0].client().create_bucket(Bucket=bucket)
    data = body(3 * (1 << 20), 42)
    six[1].client().put_object(Bucket=bucket, Key="k", Body=data)
    # The node holding data shard 0 (read first by every GET) gets bytes flipped in a record.
    holder = next(n for n in six if any(shard_of(p) == 0 for p in shard_files(n, bucket, "k")))
    path = next(p for p in shard_files(holder, bucket, "k") if shard_of(p) == 0)
    good = path.read_bytes()
    bad = bytearray(good)
    for i in range(1000, 1100):
        bad[i] ^= 0xFF
    path.write_bytes(bytes(bad))
    for n in six:
        assert n.client().get_object(Bucket=bucket, Key="k")["Body"].read() == data, f"through {n.name}"

    def rewritten():
        files = shard_files(holder, bucket, "k")
        return (len(files) == 1 and files[0].read_bytes() == good), f"{holder.name} holds {files}"
    wait_for("the flipped shard rewritten as it was", rewritten, 30)


def test_overwrite_and_delete_resolve_everywhere_at_once(six):
    bucket = "resolve"
    six[1].client().create_bucket(Bucket=bucket)
    for round_ in range(5):
        data = body(1000 + round_, round_)
        six[round_ % 6].client().put_object(Bucket=bucket, Key="k", Body=data)
        for n in six:
            assert n.client().get_object(Bucket=bucket, Key="k")["Body"].read() == data, f"round {round_} via {n.name}"
    six[3].client().delete_object(Bucket=bucket, Key="k")
    for n in six:
        with pytest.raises(n.client().exceptions.NoSuchKey):
            n.client().get_object(Bucket=bucket, Key="k")
        assert keys_of(n.client(), bucket) == []
    # A bucket with objects anywhere is not empty.
    six[0].client().put_object(Bucket=bucket, Key="left", Body=b"x")
    with pytest.raises(Exception, match="BucketNotEmpty"):
        six[5].client().delete_bucket(Bucket=bucket)
    six[4].client().delete_object(Bucket=bucket, Key="left")
    six[5].client().delete_bucket(Bucket=bucket)


def test_deleted_objects_and_finished_uploads_leave_nothing_on_disk(six):
    """Once the marker grace has passed, a deleted object's shards and delete markers go from
    every node, and so do the parts and the record of a completed multipart upload."""
    bucket = "purge"
    c = six[0].client()
    c.create_bucket(Bucket=bucket)
    c.put_object(Bucket=bucket, Key="gone/big", Body=body(1 << 20, 1))
    c.put_object(Bucket=bucket, Key="gone/small", Body=b"s" * 100)
    c.put_object(Bucket=bucket, Key="gone/small", Body=b"t" * 200)
    up = six[1].client().create_multipart_upload(Bucket=bucket, Key="gone/mp")["UploadId"]
    parts = [six[i].client().upload_part(Bucket=bucket, Key="gone/mp", UploadId=up, PartNumber=i, Body=body(5 << 20, i))["ETag"] for i in (1, 2)]
    assert all(shard_files(n, ".parts." + bucket, f"{up}/00001") for n in six), "the parts are on every node"
    six[2].client().complete_multipart_upload(
        Bucket=bucket, Key="gone/mp", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(parts)]})
    c.put_object(Bucket=bucket, Key="kept", Body=b"k")
    keys = [(bucket, "gone/big"), (bucket, "gone/small"), (bucket, "gone/mp"),
            (".parts." + bucket, f"{up}/00001"), (".parts." + bucket, f"{up}/00002"), (".uploads." + bucket, f"gone/mp\0{up}")]
    for key in ("gone/big", "gone/small", "gone/mp"):
        six[3].client().delete_object(Bucket=bucket, Key=key)

    def purged():
        left = {f"{b}/{k}": [n.name for n in six if shard_files(n, b, k)] for b, k in keys}
        return not any(left.values()), f"files left: {left}"
    wait_for("deleted keys gone from every node", purged, 60)
    for n in six:
        assert keys_of(n.client(), bucket) == ["kept"], n.name
        assert n.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == [], n.name
        with pytest.raises(n.client().exceptions.NoSuchKey):
            n.client().get_object(Bucket=bucket, Key="gone/small")
    assert all(shard_files(n, bucket, "kept") for n in six), "what was not deleted stays"
    six[4].client().put_object(Bucket=bucket, Key="gone/small", Body=b"again")
    assert six[5].client().get_object(Bucket=bucket, Key="gone/small")["Body"].read() == b"again"


def test_racing_writers_leave_one_whole_object(six):
    bucket = "race"
    six[0].client().create_bucket(Bucket=bucket)
    for round_ in range(6):
        bodies = [body(300_000 + w, 1000 * round_ + w) for w in range(2)]
        errors = []

        def write(w):
            try:
                six[(round_ + w * 3) % 6].client().put_object(Bucket=bucket, Key="hot", Body=bodies[w])
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=write, args=(w,)) for w in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        seen = {n.client().get_object(Bucket=bucket, Key="hot")["Body"].read() for n in six}
        assert len(seen) == 1 and seen.pop() in bodies, f"round {round_}: not one whole object everywhere"


@pytest.mark.parametrize("mib", [1, 4, 8])
def test_the_write_that_completes_last_wins(six, mib):
    """S3's "last writer wins" (a stock suite's test_atomic_dual_write_{1,4,8}mb): a PUT that
    starts first and completes last beats a PUT that ran inside it, through another node; the
    version is fixed when a write commits, not when it starts. Read through every node."""
    import http.client
    from urllib.parse import urlsplit

    from s3util import sign
    bucket, key = "dual", f"dual-{mib}"
    if bucket not in [b["Name"] for b in six[0].client().list_buckets()["Buckets"]]:
        six[0].client().create_bucket(Bucket=bucket)
    first, inside = b"A" * (mib << 20), b"B" * (mib << 20)
    path = f"/{bucket}/{key}"
    headers = sign(six[0], "PUT", path, headers={"Content-Length": str(len(first))}, payload_hash="UNSIGNED-PAYLOAD")
    split = urlsplit(six[0].endpoint)
    conn = http.client.HTTPConnection(split.hostname, split.port, timeout=120)
    try:
        conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        conn.send(first[: len(first) // 2])
        six[3].client().put_object(Bucket=bucket, Key=key, Body=inside)  # starts and completes inside the first
        conn.send(first[len(first) // 2:])
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        resp.read()
    finally:
        conn.close()
    for n in six:
        got = n.client().get_object(Bucket=bucket, Key=key)["Body"].read()
        assert got == first, f"through {n.name}: the write that completed first won ({got[:1]!r})"


def create_with_scheme(node, bucket: str, scheme: str):
    """CreateBucket with Stacks' `x-stacks-scheme` header (signed, as boto3 signs every header it sends)."""
    c = node.client()
    c.meta.events.register("before-sign.s3.CreateBucket", lambda request, **_: request.headers.__setitem__("x-stacks-scheme", scheme))
    return c.create_bucket(Bucket=bucket)


def test_a_bucket_keeps_its_own_scheme(six):
    """A bucket created with x-stacks-scheme 3+3 survives three nodes down; one at 2+1 takes three
    nodes; a scheme wider than the layout or malformed is refused and creates nothing."""
    for scheme, why in [("4+3", "needs 7 storage nodes"), ("4+x", "must be auto or K+M"), ("2+5", "must be auto or K+M")]:
        with pytest.raises(Exception, match=f"InvalidArgument.*{re.escape(why)}") as e:
            create_with_scheme(six[0], "refused", scheme)
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "refused" not in [b["Name"] for b in six[1].client().list_buckets()["Buckets"]]
    create_with_scheme(six[0], "wide", "3+3")
    create_with_scheme(six[1], "narrow", "2+1")
    create_with_scheme(six[2], "plain", "auto")
    want = {"wide": "3+3", "narrow": "2+1"}
    wait_for("the buckets' schemes in every node's layout", lambda: (all(layout(n).get("buckets") == want for n in six), want), 30)
    table = subprocess.run([str(stacks_binary()), "layout", "--data-dir", str(six[4].data_dir)], capture_output=True, text=True, timeout=20)
    assert "buckets with their own scheme: narrow 2+1, wide 3+3\n" in table.stdout, table.stdout
    data = {b: body(3 * (1 << 20) + 7, n) for n, b in enumerate(["wide", "narrow", "plain"])}
    for n, (b, d) in enumerate(data.items()):
        six[n + 3].client().put_object(Bucket=b, Key="k", Body=d)
    for b, width, suffix in [("wide", 6, ".3.3"), ("narrow", 3, ".2.1"), ("plain", 6, ".4.2")]:
        files = [f for n in six for f in shard_files(n, b, "k")]
        assert len(placed_on(six, b, "k")) == width and all(f.name.endswith(suffix) for f in files), f"{b}: {files}"
    # Three down (the learner and two voters that do not lead, so Raft keeps its majority).
    roles = {x["name"]: x["raft_role"] for x in status(six[0])[1]["nodes"]}
    learner = [n for n in six if roles[n.name] == "learner"]
    voters = [n for n in six if roles[n.name] == "voter"]
    victims = learner + voters[:3 - len(learner)]
    assert len(victims) == 3, roles
    for v in victims:
        v.kill()
    for n in six:
        if n not in victims:
            assert n.client().get_object(Bucket="wide", Key="k")["Body"].read() == data["wide"], f"3+3 through {n.name}"
    for v in victims:
        v.restart()
    wait_for("5 voters again", healthy_with(six, 5), 90)
    for n in six:
        for b, d in data.items():
            assert n.client().get_object(Bucket=b, Key="k")["Body"].read() == d, f"{b} through {n.name}"


def data_status(node) -> tuple[int, dict]:
    rc, s = status(node)
    return rc, s.get("data") or {}


def test_status_shows_capacity_and_data_health(six):
    """Each node's used and free bytes; objects degraded while a node is down, and none once
    it is back and repaired, in JSON and in the table."""
    assert STORED, "runs after the first test"

    def whole(want_rc):
        def check():
            rc, s = status(six[0])
            d = s.get("data") or {}
            used = {n["name"]: n.get("used_bytes") for n in s["nodes"] if n["status"] == "alive"}
            ok = rc == want_rc and d.get("objects", 0) >= len(STORED) and d.get("degraded") == 0 and d.get("at_risk") == 0 \
                and len(used) == 6 and all(u and u > 0 for u in used.values()) and d.get("free_bytes", 0) > 0
            return ok, f"rc={rc} data={d} used={used} problems={s['problems']}"
        return check
    wait_for("every object fully redundant", whole(0), 60)
    victim = next(n for n in six if n is not leader_of(six))
    victim.kill()
    up = [n for n in six if n is not victim]

    def degraded():
        rc, d = data_status(up[0])
        return rc == 1 and d.get("degraded", 0) >= len(STORED), f"rc={rc} {d}"
    wait_for("objects degraded with a node down", degraded, 60)
    victim.restart()
    wait_for("every object fully redundant again", whole(0), 90)

    # Reports travel by gossip, so another node may hear the last passes a little later.
    def table_whole():
        t = subprocess.run([str(stacks_binary()), "status", "--data-dir", str(six[1].data_dir)], capture_output=True, text=True, timeout=20)
        ok = t.returncode == 0 and "USED" in t.stdout and "FREE" in t.stdout and " 0 degraded, 0 at risk" in t.stdout
        return ok, t.stdout + t.stderr
    wait_for("the table through another node shows every object fully redundant", table_whole, 60)


def placed_on(nodes, bucket, key) -> list[str]:
    return [n.name for n in nodes if shard_files(n, bucket, key)]


def all_exact_through(nodes):
    for n in nodes:
        c = n.client()
        assert sorted(keys_of(c, "spread")) == sorted(STORED), f"listing through {n.name}"
        for key, data in STORED.items():
            assert c.get_object(Bucket="spread", Key=key)["Body"].read() == data, f"{key} through {n.name}"


def wait_moved(nodes, what):
    """Until the layout consults no earlier version; the rebalance progress status showed meanwhile."""
    seen = []

    def done():
        _, s = status(nodes[0])
        r = (s.get("data") or {}).get("rebalance")
        if r:
            seen.append(r)
        return s["layout"]["migrating"] == 0 and not r, json.dumps(s.get("layout")) + json.dumps(s.get("data"))
    wait_for(what, done, 180)
    print(f"{what}: rebalance progress seen {len(seen)} times, last {seen[-1] if seen else None}")


def test_a_seventh_node_gets_its_share_and_old_copies_go(six, module_node_factory):
    assert STORED, "runs after the first test"
    seventh = module_node_factory("o7", seeds=[six[0].gossip_address], tags={"zone": "b"}, **SETTINGS)
    nodes = six + [seventh]
    wait_for("seven nodes in the layout", same_layout_everywhere(nodes, lambda v: len(v["members"]) == 7), 60)
    # Reads keep working while data moves.
    some = sorted(STORED)[:3]
    for key in some:
        assert seventh.client().get_object(Bucket="spread", Key=key)["Body"].read() == STORED[key]
    wait_moved(nodes, "data moved to the seventh node")
    spread = {key: placed_on(nodes, "spread", key) for key in STORED}
    assert all(len(on) == 6 for on in spread.values()), f"each key on k+m nodes, old copies gone: {spread}"
    assert any("o7" in on for on in spread.values()), "the seventh node holds its share"
    all_exact_through(nodes)
    six.append(seventh)  # the module's cluster has seven nodes from here on


def test_a_node_removed_for_good_is_rebuilt_on_the_others(six):
    assert len(six) == 7 and STORED, "runs after the seventh node joined"
    victim = next(n for n in six if n is not leader_of(six) and n.name != "o7")
    victim.kill()
    rest = [n for n in six if n is not victim]
    wait_for("the dead node out of the layout",
             same_layout_everywhere(rest, lambda v: victim.name not in [m["name"] for m in v["members"]]), REMOVE_AFTER_S + 60)
    wait_moved(rest, "data moved to the layout without the dead node")

    def rebuilt():
        spread = {key: placed_on(rest, "spread", key) for key in STORED}
        _, d = data_status(rest[0])
        return all(len(on) == 6 for on in spread.values()) and d.get("degraded") == 0 and d.get("at_risk") == 0, f"{d} {spread}"
    wait_for("each key back on k+m live nodes, none degraded", rebuilt, 120)
    all_exact_through(rest)
