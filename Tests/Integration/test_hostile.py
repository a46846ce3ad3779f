"""Hostile clients and peers against real nodes: one node, and a three-node cluster.

Each test sends something no correct client or peer sends (the three requests that used to kill
a node among them), then checks that every node is still running, still serves a correct signed
PUT and GET, and that every object acknowledged before reads back byte-exact.
"""

from __future__ import annotations

import os
import random
import resource
import selectors
import socket
import string
import threading
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from s3util import content_md5, err, raw_request, send_raw_bytes
from test_gossip import members, wait_for

S3_LIMITS = {"max_connections": 64, "idle_timeout": 3}
HOSTILE_HOST = "127.0.0.9"  # where the hostile connections come from (the cluster's own use 127.0.0.1)


@pytest.fixture(scope="module", params=["one node", "three nodes"])
def nodes(request, module_node_factory):
    first = module_node_factory("h1", s3=S3_LIMITS)
    made = [first]
    if request.param == "three nodes":
        made += [module_node_factory(f"h{i}", s3=S3_LIMITS, seeds=[first.gossip_address]) for i in (2, 3)]
        wait_for("three members alive", lambda: (sorted(m["name"] for m in members(first) if m["status"] == "alive") == ["h1", "h2", "h3"], members(first)), 60)
    return made


@pytest.fixture(scope="module")
def stored(nodes):
    """Objects acknowledged before any hostile input: (bucket, key) → bytes."""
    s3 = nodes[0].client()
    bucket = f"hostile-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    objects = {}
    for i in range(5):
        body = os.urandom(1000 * (i + 1))
        s3.put_object(Bucket=bucket, Key=f"before/{i}", Body=body)
        objects[(bucket, f"before/{i}")] = body
    return objects


def still_serving(nodes, stored):
    for n in nodes:
        assert n.is_running(), f"{n.name} died:\n{n.log_tail()}"
    s3 = nodes[0].client()
    for (bucket, key), body in stored.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body, key
    bucket = next(iter(stored))[0]
    fresh = os.urandom(4096)
    s3.put_object(Bucket=bucket, Key="after", Body=fresh)
    assert s3.get_object(Bucket=bucket, Key="after")["Body"].read() == fresh


def fake_auth():
    return {"Authorization": "AWS4-HMAC-SHA256 Credential=x,SignedHeaders=host,Signature=x"}


# ------------------------------------------------------------ the three cases of the issue
def test_absurd_date_header_is_refused(nodes, stored):
    for header in ("Date", "If-Modified-Since", "If-Unmodified-Since", "x-amz-copy-source-if-modified-since"):
        r = raw_request(nodes[0], "GET", f"/{next(iter(stored))[0]}/before/0", signed=False,
                        headers={**fake_auth(), header: "Wed, 21 Oct 2015 9999999999999999:00:00 GMT"})
        assert 400 <= r.status < 500, (header, r.status)
    still_serving(nodes, stored)


def test_deeply_nested_delete_objects_body_is_refused(nodes, stored):
    bucket = next(iter(stored))[0]
    depth = 200_000
    body = b"<Delete>" + b"<a>" * depth + b"</a>" * depth + b"</Delete>"
    assert len(body) < 4 << 20
    r = raw_request(nodes[0], "POST", f"/{bucket}", query="delete=", body=body,
                    headers={"Content-MD5": content_md5(body)})
    assert r.status == 400, r.status
    still_serving(nodes, stored)


# ------------------------------------------------------------ S3: numbers, framing, XML
ABSURD = "99999999999999999999999999"


@pytest.mark.parametrize("headers,query", [
    ({"Content-Length": ABSURD}, ""),
    ({"Range": f"bytes={ABSURD}-{ABSURD}1"}, ""),
    ({"Range": f"bytes=-{ABSURD}"}, ""),
    ({"x-amz-decoded-content-length": ABSURD, "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER"}, ""),
    ({}, f"max-keys={ABSURD}"),
    ({}, "max-keys=-5"),
    ({}, f"partNumber={ABSURD}"),
    ({}, f"uploadId=x&partNumber={ABSURD}"),
    ({}, f"X-Amz-Expires={ABSURD}&X-Amz-Date=20261202T000000Z&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=x/20261202/us-east-1/s3/aws4_request&X-Amz-SignedHeaders=host&X-Amz-Signature=00"),
    ({"x-amz-date": "99999999T999999Z"}, ""),
])
def test_absurd_numbers_are_refused(nodes, stored, headers, query):
    bucket, key = next(iter(stored))
    for method, target in (("GET", key), ("PUT", "absurd")):  # a PUT that is taken is a legitimate empty object
        try:
            r = raw_request(nodes[0], method, f"/{bucket}/{target}", query=query, headers=headers, timeout=10)
            assert r.status < 500 or r.status == 501, (method, headers, query, r.status)
        except (ConnectionError, OSError):
            pass  # hanging up on it is also fine; still_serving says whether the node lived
    still_serving(nodes, stored)


@pytest.mark.parametrize("raw", [
    b"PUT /b/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"PUT /b/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffffff\r\nabc\r\n",
    b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
    b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: " + b"a" * 200_000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(5000)) + b"\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) * 4,
])
def test_broken_http_framing(nodes, stored, raw):
    send_raw_bytes(nodes[0], raw, timeout=10)
    still_serving(nodes, stored)


@pytest.mark.parametrize("chunked", [
    b"zz;chunk-signature=00\r\nabc\r\n",
    b"ffffffffffffffffff\r\nabc\r\n",
    b"3\r\nabcdef\r\n0\r\n\r\n",
    b"3\r\nabc\r\n0\r\n" + b"".join(b"x-amz-meta-%d:v\r\n" % i for i in range(2000)) + b"\r\n",
])
def test_broken_aws_chunked_framing(nodes, stored, chunked):
    bucket = next(iter(stored))[0]
    r = raw_request(nodes[0], "PUT", f"/{bucket}/chunked", body=chunked, payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                    headers={"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "3"})
    assert 400 <= r.status < 500, r.status
    with pytest.raises(ClientError) as e:
        nodes[0].client().head_object(Bucket=bucket, Key="chunked")
    assert err(e.value)[0] == 404  # a refused upload leaves nothing
    still_serving(nodes, stored)


@pytest.mark.parametrize("xml", [
    b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><Delete><Object><Key>&b;</Key></Object></Delete>',
    b'<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><Delete><Object><Key>&x;</Key></Object></Delete>',
    b"<Delete>" + b"<Object><Key>k</Key></Object>" * 120_000 + b"</Delete>",
    b"<Com\xc4pleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>",  # found by tools/fuzz
    b"<?l?>?<?~>",  # found by tools/fuzz: a processing instruction without data
])
def test_hostile_xml_is_refused(nodes, stored, xml):
    bucket = next(iter(stored))[0]
    r = raw_request(nodes[0], "POST", f"/{bucket}", query="delete=", body=xml,
                    headers={"Content-MD5": content_md5(xml)})
    assert r.status == 400, r.status
    still_serving(nodes, stored)


# ------------------------------------------------------------ slow and idle connections
def idle_sockets(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.bind((HOSTILE_HOST, 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        socks.append(s)
    return socks


def wait_closed(socks: list[socket.socket], within: float) -> None:
    """Returns once the server closed every socket (it reads EOF or a reset)."""
    deadline = time.monotonic() + within
    for s in socks:
        s.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
        except socket.timeout:
            raise AssertionError("a connection the node should have closed is still open")
        finally:
            s.close()


def test_idle_s3_connections_are_capped_and_timed_out(nodes, stored):
    node = nodes[0]
    port = int(node.endpoint.rsplit(":", 1)[1])
    socks = idle_sockets(port, 300)
    # A slowloris request, one header byte now and then, holds nothing past the idle timeout either.
    slow = socks[0]
    slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    # Past the cap a real client is told to slow down, not left hanging.
    with pytest.raises(ClientError) as e:
        node.client().get_object(Bucket=next(iter(stored))[0], Key="before/0")
    assert err(e.value) == (503, "SlowDown")
    wait_closed(socks, S3_LIMITS["idle_timeout"] + 10)
    still_serving(nodes, stored)


def test_slowloris_header_trickle_is_closed(nodes, stored):
    """A header line a second: Hummingbird's idle timer restarts only with decoded HTTP parts, so
    a head that never completes is closed after the idle timeout however its bytes trickle."""
    port = int(nodes[0].endpoint.rsplit(":", 1)[1])
    (s,) = idle_sockets(port, 1)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    s.settimeout(1)
    started = time.monotonic()
    closed_after = None
    for i in range(4 * S3_LIMITS["idle_timeout"]):  # bounded: 12 lines, about 12 s
        try:
            if s.recv(4096) == b"":
                closed_after = time.monotonic() - started
                break
        except socket.timeout:
            pass
        except ConnectionResetError:
            closed_after = time.monotonic() - started
            break
        try:
            s.sendall(f"X-Trickle-{i}: a\r\n".encode())
        except (BrokenPipeError, ConnectionResetError):
            closed_after = time.monotonic() - started
            break
    s.close()
    assert closed_after is not None, "a connection trickling its request head stayed open"
    assert closed_after < S3_LIMITS["idle_timeout"] + 3, f"closed only after {closed_after:.1f} s"
    still_serving(nodes, stored)


def test_raft_port_refuses_strangers(nodes, stored):
    """Idle connections, a declared 16 MiB frame, garbage frames and a flood from one host."""
    for n in nodes:
        before = n.metrics()
        big = socket.create_connection(("127.0.0.1", n.raft_port), timeout=10)
        try:
            big.sendall((16 << 20).to_bytes(4, "little") + os.urandom(60_000))
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed already: what we want
        garbage = socket.create_connection(("127.0.0.1", n.raft_port), timeout=10)
        garbage.sendall((100).to_bytes(4, "little") + os.urandom(100))
        flood = idle_sockets(n.raft_port, 200)  # more than one host may hold
        wait_closed([big, garbage] + flood, 15)  # refused at once, or after the 2 s hello timeout
        after = n.metrics()
        dropped, refused = 'stacks_raft_frames_dropped_total{reason="undecodable"}', "stacks_raft_connections_refused_total"
        assert after[dropped] >= before[dropped] + 2, after[dropped]  # the oversized and the garbage frame
        assert after[refused] >= before[refused] + 200 - 64, after[refused]  # past the per-host cap
    still_serving(nodes, stored)


def test_garbage_datagrams_on_the_gossip_port(nodes, stored):
    rng = random.Random(5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOSTILE_HOST, 0))
        for n in nodes:
            host, port = n.gossip_address.rsplit(":", 1)
            for size in [0, 1, 2, 3, 17, 40, 41, 1500, 2048, 2049, 8192, 60_000, 65_507]:
                for _ in range(3):
                    s.sendto(bytes(rng.getrandbits(8) for _ in range(size)), (host, int(port)))
            for first in range(256):  # every version byte, sealed-packet sized
                s.sendto(bytes([first]) + os.urandom(120), (host, int(port)))
    names = sorted(n.name for n in nodes)
    wait_for("members still alive", lambda: (all(sorted(m["name"] for m in members(n) if m["status"] == "alive") == names for n in nodes), ""), 30)
    still_serving(nodes, stored)


# ------------------------------------------------------------ gossip: datagrams far above 2 KiB
def test_the_most_large_tags_reach_every_member(nodes, stored, module_node_factory):
    """As many user tags as a node may set (56: room is kept for the node's own), of 255 random
    bytes each: every sealed datagram carrying them is far above NIO's 2 KiB default."""
    rng = random.Random(9)
    tags = {f"t{i:02}": "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(255)) for i in range(56)}
    # Last in the module: the tagged node stays a member (it may hold a vote) until teardown.
    tagged = module_node_factory(f"tagged{len(nodes)}", seeds=[nodes[0].gossip_address], tags=tags)
    everyone = nodes + [tagged]

    def all_see():
        for n in everyone:
            seen = {m["name"]: m["tags"] for m in members(n)}
            got = seen.get(tagged.name, {})
            if any(got.get(k) != v for k, v in tags.items()):
                return False, f"{n.name} sees {len(got)} of the tags"
        return True, ""
    wait_for("every member sees the 56 tags", all_see, 60)
    still_serving(nodes, stored)


# ------------------------------------------------------------ a siege of the node ports
DATA_HELLO_S, RAFT_HELLO_S = 5, 2  # DataSettings.helloTimeout, RaftServiceSettings.helloTimeout
# This process sees a close a little after the node makes it (one CI run saw 15 of 1,300 Raft
# sockets at 3.07 s with every core busy restarting B): the bound is the deadline + 1 s + this.
OBSERVED_WITHIN_S = 0.25
RESTART_BOUND_S = 30  # the restarted node serves PUT and GET again within this (docs/ARCHITECTURE.md)
NODE_MAGIC = b"STKS-NODE-v1" + bytes(4)


def framed(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "little") + payload


class CloseWatch:
    """When the server closes each socket (EOF or reset), reading and dropping what it sends."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.closed_at: dict = {}
        self.watched = 0

    def add(self, s: socket.socket) -> None:
        s.setblocking(False)
        self.sel.register(s, selectors.EVENT_READ)
        self.watched += 1
        self.poll(0)

    def poll(self, timeout: float) -> None:
        for key, _ in self.sel.select(timeout=timeout):
            try:
                data = key.fileobj.recv(65536)
            except ConnectionResetError:
                data = b""
            except BlockingIOError:
                continue
            if data == b"":
                self.closed_at[key.fileobj] = time.monotonic()
                self.sel.unregister(key.fileobj)

    def until(self, stop: threading.Event) -> None:
        while len(self.closed_at) < self.watched and not stop.is_set():
            self.poll(0.05)


def test_strangers_holding_node_ports_keep_no_member_out(node_factory):
    """While 1,100 silent connections and 200 half-open node handshakes (a hello, then nothing)
    from other loopback addresses sit on node A's data and Raft ports, node B is killed and
    restarted: it serves PUT and GET again within RESTART_BOUND_S, every stranger's socket is
    closed within its port's handshake deadline plus one second, the refusals are counted, and
    every object acknowledged before reads back through every node."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # 1,300 sockets in this process
    if soft < 4096:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(8192, hard)) if hard != resource.RLIM_INFINITY else 8192, hard))
        except (ValueError, OSError):
            pass
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1500:
        pytest.skip(f"this process may open only {resource.getrlimit(resource.RLIMIT_NOFILE)[0]} files (ulimit -n); the siege needs 1,500")
    from test_raft import healthy_with
    a = node_factory("siege-a")
    b, c = (node_factory(f"siege-{n}", seeds=[a.gossip_address]) for n in "bc")
    nodes = [a, b, c]
    wait_for("3 voters", healthy_with(nodes, 3), 90)
    s3 = a.client()
    s3.create_bucket(Bucket="siege")
    stored = {f"k{i}": os.urandom(20_000 + i) for i in range(12)}
    for k, v in stored.items():
        s3.put_object(Bucket="siege", Key=k, Body=v)
    before = a.metrics()

    socks: list[tuple[socket.socket, float]] = []
    deadline_of: dict = {}
    watch = CloseWatch()

    def open_from(host: str, port: int, first: bytes = b"") -> None:
        s = socket.socket()
        s.bind((host, 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        opened = time.monotonic()
        if first:
            try:
                s.sendall(first)
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused at accept already
        socks.append((s, opened))
        deadline_of[s] = opened + (DATA_HELLO_S if port == a.data_port else RAFT_HELLO_S) + 1 + OBSERVED_WITHIN_S
        watch.add(s)

    try:
        for i in range(1100):
            open_from(f"127.0.0.{2 + i % 11}", (a.data_port, a.raft_port)[i % 2])
        for i in range(200):
            data = i % 2 == 0
            hello = bytes([1, 2 if data else 1, 1]) + os.urandom(32)
            open_from(f"127.0.0.{13 + i % 2}", a.data_port if data else a.raft_port, (NODE_MAGIC if data else b"") + framed(hello))
        stop = threading.Event()
        watcher = threading.Thread(target=watch.until, args=(stop,))
        watcher.start()
        try:
            started = time.monotonic()
            b.restart()
            back = None
            for i in range(600):  # bounded: about 60 s
                try:
                    b.client().put_object(Bucket="siege", Key=f"after-{i}", Body=b"x" * 1000)
                    assert b.client().get_object(Bucket="siege", Key="k0")["Body"].read() == stored["k0"]
                    back = time.monotonic() - started
                    break
                except (ClientError, OSError):
                    time.sleep(0.1)
            assert back is not None and back < RESTART_BOUND_S, f"node B served again only after {back} s"
            print(f"node B restarted and served PUT and GET after {back:.1f} s under the siege")
            wait_until = max(deadline_of.values()) + 2
            while len(watch.closed_at) < len(socks) and time.monotonic() < wait_until:
                time.sleep(0.1)
        finally:
            stop.set()
            watcher.join()
        late = [(watch.closed_at.get(s, float("inf")) - opened) for s, opened in socks if watch.closed_at.get(s, float("inf")) > deadline_of[s]]
        assert not late, f"{len(late)} of {len(socks)} sockets closed late or not at all (seconds after opening: {sorted(late)[:5]}…)"
        after = a.metrics()
        assert after["stacks_data_connections_refused_total"] > before.get("stacks_data_connections_refused_total", 0)
        assert after["stacks_raft_connections_refused_total"] > before.get("stacks_raft_connections_refused_total", 0)
        assert all(n.is_running() for n in nodes)
        for n in nodes:
            for k, v in stored.items():
                assert n.client().get_object(Bucket="siege", Key=k)["Body"].read() == v, (n.name, k)
    finally:
        for s, _ in socks:
            s.close()
