"""The steps of tools/accept/objects against nodes configured in $DEV/nodeI.toml (see there).
Prints each step with what it measured; exits non-zero at the first failure.

  objects.py OBJECTS SEED        the acceptance steps
  objects.py big GIB SEED        one GIB GiB PUT through node1 and GET through node4, byte-exact,
                                 with every node's peak RSS (VmHWM) under 256 MiB
  objects.py quick OBJECTS SEED  OBJECTS objects of at most 64 KiB, two nodes killed and back

node1 founds the cluster; nodes 2-7 join with a token it makes (appended to their configs)."""
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import time

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

BIN, DEV, PORT = os.environ["STACKS_BIN"], os.environ["DEV"], int(os.environ["PORT"])
MODE = sys.argv[1] if sys.argv[1] in ("big", "quick") else ""
BIG, QUICK = MODE == "big", MODE == "quick"
N, SEED = (int(sys.argv[2]), int(sys.argv[3])) if MODE else (int(sys.argv[1]), int(sys.argv[2]))
BUCKET = "accept"
procs: dict[int, subprocess.Popen] = {}
killed: set[int] = set()


def say(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def start(i):
    log = open(f"{DEV}/node{i}/log", "ab")
    procs[i] = subprocess.Popen([BIN, "agent", "--config", f"{DEV}/node{i}.toml"], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    open(f"{DEV}/node{i}/pid.run", "w").write(str(procs[i].pid))
    killed.discard(i)


def kill(i):
    killed.add(i)
    procs[i].kill()
    procs[i].wait()


def wait(what, pred, timeout):
    deadline, detail = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        if exited := [i for i, p in procs.items() if i not in killed and p.poll() is not None]:
            sys.exit(f"FAILED: waiting for {what}, node{exited[0]} exited (see {DEV}/node{exited[0]}/log)")
        try:
            ok, detail = pred()
        except Exception as e:  # a node still starting
            ok, detail = False, repr(e)
        if ok:
            return
        time.sleep(0.5)
    sys.exit(f"FAILED: {what} not within {timeout} s: {detail}")


def cli(i, *args):
    out = subprocess.run([BIN, *args, "--data-dir", f"{DEV}/node{i}", "--format", "json"], capture_output=True, text=True, timeout=30)
    return out.returncode, json.loads(out.stdout) if out.stdout.strip() else {}


def client(i):
    env = dict(line.split("=", 1) for line in open(f"{DEV}/node1/env").read().split())
    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{PORT + i - 1}", aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}, read_timeout=300))


def body(key: str, size: int) -> bytes:
    return random.Random(f"{SEED}/{key}").randbytes(size)


def sizes(n):
    r = random.Random(SEED)
    if QUICK:
        return [0, 1] + [r.randrange(0, 64 << 10) for _ in range(max(0, n - 2))]
    out = [0, 1, 64 << 20]
    while len(out) < n:
        band = r.random()
        out.append(r.randrange(0, 64 << 10) if band < 0.6 else r.randrange(64 << 10, 4 << 20) if band < 0.92 else r.randrange(4 << 20, 64 << 20))
    return out[:n]


def layout(i):
    return cli(i, "layout")[1]


def data_status(i):
    rc, s = cli(i, "status")
    return rc, s.get("data") or {}, s


def all_exact(nodes, objects):
    t0, total = time.monotonic(), 0
    for i in nodes:
        c = client(i)
        listed, token = [], None
        while True:
            page = c.list_objects_v2(Bucket=BUCKET, MaxKeys=1000, **({"ContinuationToken": token} if token else {}))
            listed += [o["Key"] for o in page.get("Contents", [])]
            if not page["IsTruncated"]:
                break
            token = page["NextContinuationToken"]
        if sorted(listed) != sorted(objects):
            sys.exit(f"FAILED: listing through node{i}: {len(listed)} keys, missing {sorted(set(objects) - set(listed))[:5]}")
        for key, (size, digest) in objects.items():
            got = c.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            if len(got) != size or hashlib.sha256(got).hexdigest() != digest:
                sys.exit(f"FAILED: {key} through node{i}: {len(got)} bytes, wanted {size}")
            total += size
    say(f"  {len(objects)} objects exact and listed through nodes {nodes}: {total / 2**20:.0f} MiB read in {time.monotonic() - t0:.0f} s")


def shard_files(i, key):
    h = hashlib.sha256(BUCKET.encode() + b"\0" + key.encode()).digest()[:16].hex()
    d = f"{DEV}/node{i}/cluster/shards/{h[:2]}/{h}"
    return sorted(f"{d}/{f}" for f in os.listdir(d) if f != "name") if os.path.isdir(d) else []


def healthy(nodes, members):
    def check():
        v = [layout(i) for i in nodes]
        if len({x["version"] for x in v}) != 1 or len(v[0]["members"]) != members:
            return False, f"layouts {[(x['version'], len(x['members'])) for x in v]}"
        rc, d, s = data_status(nodes[0])
        moving = s["layout"]["migrating"] != 0 or d.get("rebalance")
        return rc == 0 and d.get("degraded") == 0 and d.get("at_risk") == 0 and not moving, f"rc={rc} data={d} problems={s.get('problems')}"
    return check


def enrol_the_rest():
    """Starts node1 (it founds the cluster), makes one token for nodes 2-7 and adds it to their configs."""
    start(1)
    token = []

    def made():
        out = subprocess.run([BIN, "token", "create", "--uses", "6", "--ttl", "1h", "--data-dir", f"{DEV}/node1"], capture_output=True, text=True)
        token[:] = out.stdout.strip().splitlines()[-1:] if out.returncode == 0 else []
        return bool(token), out.stderr.strip()
    wait("a join token from node1", made, 60)
    seed = open(f"{DEV}/node1.toml").read().split("[data]")[1].split('"')[1]
    for i in range(2, 8):
        with open(f"{DEV}/node{i}.toml", "a") as f:
            f.write(f'\n[join]\nseed = "{seed}"\ntoken = "{token[0]}"\n')


def start_six():
    six = list(range(1, 7))
    enrol_the_rest()
    for i in six[1:]:
        start(i)
    wait("six nodes at 4+2", lambda: (len(layout(1)["members"]) == 6 and layout(1)["scheme"] == "4+2", layout(1)), 120)
    client(1).create_bucket(Bucket=BUCKET)
    return six


class Generated(io.RawIOBase):
    """SIZE bytes that are random to any compressor (1 MiB blocks cut from a 64 MiB random pool at
    scattered offsets), seekable so boto3 can hash the body and send it again, never in memory."""
    POOL, BLOCK = 64 << 20, 1 << 20

    def __init__(self, size, seed):
        self.size, self.pos = size, 0
        self.pool = random.Random(seed).randbytes(self.POOL)

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        return self.pos

    def seek(self, offset, whence=io.SEEK_SET):
        self.pos = max(0, min(self.size, offset + (0, self.pos, self.size)[whence]))
        return self.pos

    def readinto(self, buf):
        n = min(len(buf), self.size - self.pos, self.BLOCK - self.pos % self.BLOCK)
        start = (self.pos // self.BLOCK * 7919 * 4096) % (self.POOL - self.BLOCK) + self.pos % self.BLOCK
        buf[:n] = self.pool[start:start + n]
        self.pos += n
        return n


def peak_rss_mib(i):
    status = open(f"/proc/{procs[i].pid}/status").read()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


def big(gib):
    six = start_six()
    size = gib << 30
    src = Generated(size, SEED)
    digest = hashlib.md5()
    while chunk := src.read(8 << 20):
        digest.update(chunk)
    src.seek(0)
    before = {i: peak_rss_mib(i) for i in six}
    t0 = time.monotonic()
    etag = client(1).put_object(Bucket=BUCKET, Key="big", Body=src, ContentLength=size)["ETag"].strip('"')
    say(f"PUT {gib} GiB through node1 in {time.monotonic() - t0:.0f} s, ETag {etag}")
    if etag != digest.hexdigest():
        sys.exit(f"FAILED: ETag {etag}, the body's MD5 is {digest.hexdigest()}")
    t0, got, n = time.monotonic(), hashlib.md5(), 0
    for chunk in client(4).get_object(Bucket=BUCKET, Key="big")["Body"].iter_chunks(8 << 20):
        got.update(chunk)
        n += len(chunk)
    say(f"GET through node4 in {time.monotonic() - t0:.0f} s: {n} bytes")
    if n != size or got.hexdigest() != digest.hexdigest():
        sys.exit(f"FAILED: GET gave {n} bytes with MD5 {got.hexdigest()}")
    after = {i: peak_rss_mib(i) for i in six}
    say("peak RSS (VmHWM) per node, MiB, before -> after: " + ", ".join(f"node{i} {before[i]:.0f} -> {after[i]:.0f}" for i in six))
    if (worst := max(after.values())) >= 256:
        sys.exit(f"FAILED: a node's RSS peaked at {worst:.0f} MiB")
    say("every node stayed under 256 MiB")


def main():
    six = start_six()
    objects, t0 = {}, time.monotonic()
    cfg = TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=8 << 20, max_concurrency=4)
    for n, size in enumerate(sizes(N)):
        key = f"obj/{n:04d}-{size}"
        data = body(key, size)
        c = client(six[n % 6])
        if size >= 16 << 20:
            c.upload_fileobj(io.BytesIO(data), BUCKET, key, Config=cfg)
        else:
            c.put_object(Bucket=BUCKET, Key=key, Body=data)
        objects[key] = (size, hashlib.sha256(data).hexdigest())
    total = sum(s for s, _ in objects.values())
    multipart = sum(1 for s, _ in objects.values() if s >= 16 << 20)
    say(f"wrote {len(objects)} objects ({multipart} multipart), {total / 2**20:.0f} MiB, in {time.monotonic() - t0:.0f} s")

    victims = random.Random(SEED).sample(six, 2)
    for v in victims:
        kill(v)
    say(f"killed -9 node{victims[0]} and node{victims[1]}")
    all_exact([i for i in six if i not in victims], objects)
    for v in victims:
        start(v)
    t0 = time.monotonic()
    wait("0 degraded after the restart", healthy(six, 6), 900)
    say(f"restarted them: 0 degraded, 0 at risk after {time.monotonic() - t0:.0f} s")
    all_exact(victims, objects)
    if QUICK:
        say("quick steps passed")
        return

    key = next(k for k, (s, _) in objects.items() if s > 1 << 20)
    # Data shard 0 is what every healthy GET reads first.
    holder = next(i for i in six if any(f.split("/")[-1].split(".")[1] == "0" for f in shard_files(i, key)))
    path = next(f for f in shard_files(holder, key) if f.split("/")[-1].split(".")[1] == "0")
    good = open(path, "rb").read()
    bad = bytearray(good)
    for j in range(1000, 1100):
        bad[j] ^= 0xFF
    open(path, "wb").write(bytes(bad))
    got = client(holder).get_object(Bucket=BUCKET, Key=key)["Body"].read()
    if hashlib.sha256(got).hexdigest() != objects[key][1]:
        sys.exit(f"FAILED: {key} not exact with a flipped shard on node{holder}")
    wait("the flipped shard rewritten", lambda: (os.path.exists(path) and open(path, "rb").read() == good, path), 120)
    say(f"flipped 100 bytes of {path.split('/')[-1]} on node{holder}: GET exact, shard rewritten")

    start(7)
    seven = six + [7]
    t0 = time.monotonic()
    wait("rebalanced onto seven nodes", healthy(seven, 7), 1200)
    on7 = sum(1 for k in objects if shard_files(7, k))
    say(f"node7 joined: rebalanced in {time.monotonic() - t0:.0f} s, node7 holds shards of {on7} objects")
    all_exact([7], objects)

    leader = cli(1, "status")[1]["leader"]
    gone = next(i for i in seven if f"node{i}" != leader and i != 7)
    kill(gone)
    rest = [i for i in seven if i != gone]
    t0 = time.monotonic()
    wait("rebuilt without the removed node", healthy(rest, 6), 1200)
    spread = [sum(1 for i in rest if shard_files(i, k)) for k in objects]
    say(f"node{gone} removed for good: rebuilt in {time.monotonic() - t0:.0f} s; shards of each object on {min(spread)}..{max(spread)} live nodes")
    all_exact([rest[0]], objects)
    say("all acceptance steps passed")


big(N) if BIG else main()
