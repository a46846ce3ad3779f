"""Hostile and malformed input against a real Stacks node.

Proves that authentication cannot be bypassed (wrong secret, unknown key,
tampered signature/headers/path/body, anonymous, skewed clock, expired or
altered presigned URLs) while valid presigned GET/PUT work; that missing
resources give the standard 404 codes; that key-length limits are enforced in
bytes; that keys full of "../", "./", "//", backslashes or NUL are stored as
plain, distinct keys and never touch files outside the data dir; that malformed
XML and truncated bodies are rejected; and that after every rejected request the
stored state (object listing with ETags and sizes, bucket list) is unchanged.

Over 400 lines on purpose: one test per hostile input class, each short and independent and each
ending with the same "nothing changed" check, grouped under the comment rulers.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib
import os
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import botocore.auth
import pytest
import requests
from botocore.exceptions import ClientError

from s3util import (
    content_md5,
    err,
    list_state,
    md5_hex,
    raw_request,
    send_raw_bytes,
    sha256_hex,
    sign,
    signed_aws_chunked,
)


class Seeded:
    """A bucket with a few known objects plus a before/after state comparison."""

    SEEDS = {"seed/a": b"alpha", "seed/b": bytes(range(256)) * 4, "victim": b"original victim"}

    def __init__(self, s3, bucket):
        self.s3, self.bucket = s3, bucket
        for k, v in self.SEEDS.items():
            s3.put_object(Bucket=bucket, Key=k, Body=v)
        self.baseline = self.snapshot()

    def snapshot(self):
        buckets = sorted(b["Name"] for b in self.s3.list_buckets()["Buckets"])
        return list_state(self.s3, self.bucket), buckets

    def assert_unchanged(self, what=""):
        assert self.snapshot() == self.baseline, f"state changed after: {what}"
        got = self.s3.get_object(Bucket=self.bucket, Key="victim")["Body"].read()
        assert got == self.SEEDS["victim"], f"victim content changed after: {what}"

    def rebaseline(self):
        self.baseline = self.snapshot()


@pytest.fixture
def seeded(s3, bucket):
    return Seeded(s3, bucket)


@pytest.fixture
def node(cluster):
    """Raw and hand-signed requests go to the last node: on the 3-node run another than the one
    `s3` and `seeded` write through (and read through), so what they find was written elsewhere."""
    return cluster[-1]


def expect_client_error(fn, status, code=None, **kw):
    with pytest.raises(ClientError) as e:
        fn(**kw)
    got = err(e.value)
    assert got[0] == status, f"{fn.__name__}: expected {status}, got {got}"
    if code is not None:
        assert got[1] == code, f"{fn.__name__}: expected {code}, got {got}"


# ------------------------------------------------------------ authentication
def test_wrong_secret_is_rejected(node, seeded):
    bad = node.client(secret_key=node.secret_key[:-1] + ("A" if node.secret_key[-1] != "A" else "B"))
    b = seeded.bucket
    expect_client_error(bad.list_objects_v2, 403, "SignatureDoesNotMatch", Bucket=b)
    expect_client_error(bad.get_object, 403, "SignatureDoesNotMatch", Bucket=b, Key="victim")
    expect_client_error(bad.put_object, 403, "SignatureDoesNotMatch", Bucket=b, Key="victim", Body=b"evil")
    expect_client_error(bad.put_object, 403, "SignatureDoesNotMatch", Bucket=b, Key="new", Body=b"evil")
    expect_client_error(bad.delete_object, 403, "SignatureDoesNotMatch", Bucket=b, Key="victim")
    expect_client_error(bad.delete_bucket, 403, "SignatureDoesNotMatch", Bucket=b)
    expect_client_error(bad.create_bucket, 403, "SignatureDoesNotMatch", Bucket=f"evil-{uuid.uuid4().hex[:8]}")
    expect_client_error(bad.list_buckets, 403, "SignatureDoesNotMatch")
    seeded.assert_unchanged("wrong secret")


def test_unknown_access_key_is_rejected(node, seeded):
    bad = node.client(access_key="AKIAUNKNOWNKEY000000", secret_key=node.secret_key)
    b = seeded.bucket
    expect_client_error(bad.list_objects_v2, 403, "InvalidAccessKeyId", Bucket=b)
    expect_client_error(bad.get_object, 403, "InvalidAccessKeyId", Bucket=b, Key="victim")
    expect_client_error(bad.put_object, 403, "InvalidAccessKeyId", Bucket=b, Key="victim", Body=b"evil")
    expect_client_error(bad.delete_object, 403, "InvalidAccessKeyId", Bucket=b, Key="victim")
    expect_client_error(bad.list_buckets, 403, "InvalidAccessKeyId")
    seeded.assert_unchanged("unknown access key")


def test_anonymous_requests_are_denied(node, seeded):
    b = seeded.bucket
    for method, path, body in [
        ("GET", f"/{b}/victim", b""),
        ("GET", f"/{b}", b""),
        ("GET", "/", b""),
        ("PUT", f"/{b}/victim", b"evil"),
        ("PUT", f"/{b}/anon-new", b"evil"),
        ("DELETE", f"/{b}/victim", b""),
        ("DELETE", f"/{b}", b""),
    ]:
        resp = raw_request(node, method, path, body=body, signed=False)
        assert resp.status == 403, (method, path, resp.status, resp.body[:300])
        assert resp.code == "AccessDenied", (method, path, resp.body[:300])
    seeded.assert_unchanged("anonymous requests")


def _flip_signature(auth_header: str) -> str:
    head, sig = auth_header.rsplit("Signature=", 1)
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    return f"{head}Signature={flipped}"


def test_tampered_requests_are_rejected(node, seeded):
    b = seeded.bucket
    # Control: our raw signing is correct, so rejections below are due to tampering.
    ok = raw_request(node, "GET", f"/{b}/victim")
    assert ok.status == 200 and ok.body == seeded.SEEDS["victim"], (ok.status, ok.body[:300])
    ok = raw_request(node, "PUT", f"/{b}/control", body=b"control", headers={"x-amz-meta-k": "v"})
    assert ok.status == 200, (ok.status, ok.body[:300])
    seeded.rebaseline()

    body = b"evil payload"

    def signed_put(path=f"/{b}/victim", **kw):
        return sign(node, "PUT", path, headers={"x-amz-meta-k": "v", "Content-Length": str(len(body))},
                    body=body, **kw)

    def send(hdrs, path=f"/{b}/victim", send_body=body):
        return raw_request(node, "PUT", path, headers=hdrs, body=send_body, signed=False)

    cases = {}
    h = signed_put()
    h["Authorization"] = _flip_signature(h["Authorization"])
    cases["flipped signature"] = send(h)

    h = signed_put()
    h["x-amz-meta-k"] = "changed"
    cases["signed header changed"] = send(h)

    h = signed_put(path=f"/{b}/innocent")
    cases["path changed"] = send(h)

    h = signed_put()
    date_key = next(k for k in h if k.lower() == "x-amz-date")
    ts = datetime.datetime.strptime(h[date_key], "%Y%m%dT%H%M%SZ") + datetime.timedelta(seconds=1)
    h[date_key] = ts.strftime("%Y%m%dT%H%M%SZ")
    cases["date changed"] = send(h)

    h = signed_put()
    h["x-amz-meta-extra"] = "unsigned header sneaked in"
    auth = h["Authorization"]
    h["Authorization"] = auth.replace("SignedHeaders=", "SignedHeaders=x-amz-meta-extra;", 1)
    cases["signed-headers list changed"] = send(h)

    for name, resp in cases.items():
        assert resp.status == 403, (name, resp.status, resp.body[:300])
        assert resp.code == "SignatureDoesNotMatch", (name, resp.body[:300])
        seeded.assert_unchanged(name)

    # Body swapped after signing: the x-amz-content-sha256 no longer matches.
    h = signed_put()
    resp = send(h, send_body=b"EVIL payload")
    assert resp.status in (400, 403), (resp.status, resp.body[:300])
    if resp.status == 400:
        assert resp.code == "XAmzContentSHA256Mismatch", resp.body[:300]
    seeded.assert_unchanged("body changed after signing")


def shift_signing_clock(monkeypatch, delta: datetime.timedelta) -> None:
    """Make botocore sign as if the clock were off by `delta` (pure-Python and,
    when awscrt is installed, CRT signers)."""
    modules = [botocore.auth]
    try:
        modules.append(importlib.import_module("botocore.crt.auth"))
    except ImportError:
        pass
    for mod in modules:
        real_now = mod.get_current_datetime
        monkeypatch.setattr(
            mod, "get_current_datetime", lambda *a, _real=real_now, **k: _real(*a, **k) + delta
        )


def test_request_time_too_skewed(node, seeded, monkeypatch):
    shift_signing_clock(monkeypatch, -datetime.timedelta(hours=1))
    resp = raw_request(node, "PUT", f"/{seeded.bucket}/victim", body=b"replayed")
    assert resp.status == 403, (resp.status, resp.body[:300])
    assert resp.code == "RequestTimeTooSkewed", resp.body[:300]
    monkeypatch.undo()
    seeded.assert_unchanged("skewed request")


@pytest.mark.parametrize("tamper_chunk", [None, 0, 2], ids=["intact", "first-chunk", "last-data-chunk"])
def test_signed_aws_chunked_upload(node, s3, seeded, tamper_chunk):
    """STREAMING-AWS4-HMAC-SHA256-PAYLOAD: each chunk carries a chained signature;
    a chunk altered after signing must fail the whole PUT and store nothing."""
    b = seeded.bucket
    data = os.urandom(150_000)  # 64 KiB + 64 KiB + 22 KiB + final empty chunk
    for key in ["chunked-new", "victim"]:
        hdrs, body = signed_aws_chunked(node, f"/{b}/{key}", data, tamper_chunk=tamper_chunk)
        resp = raw_request(node, "PUT", f"/{b}/{key}", headers=hdrs, body=body, signed=False)
        if tamper_chunk is None:
            assert resp.status == 200, (resp.status, resp.body[:300])
            got = s3.get_object(Bucket=b, Key=key)["Body"].read()
            assert len(got) == len(data) and got == data
        else:
            assert resp.status == 403, (resp.status, resp.body[:300])
            assert resp.code == "SignatureDoesNotMatch", resp.body[:300]
    if tamper_chunk is not None:
        seeded.assert_unchanged(f"tampered chunk {tamper_chunk}")


# ------------------------------------------------------------ presigned URLs
def test_presigned_get_and_put(s3, seeded):
    b = seeded.bucket
    url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "victim"}, ExpiresIn=300)
    resp = requests.get(url, timeout=30)
    assert resp.status_code == 200, resp.text[:300]
    assert resp.content == seeded.SEEDS["victim"]

    data = os.urandom(100_000)
    url = s3.generate_presigned_url("put_object", Params={"Bucket": b, "Key": "presigned/new"}, ExpiresIn=300)
    resp = requests.put(url, data=data, timeout=30)
    assert resp.status_code == 200, resp.text[:300]
    assert resp.headers["ETag"] == f'"{md5_hex(data)}"'
    assert s3.get_object(Bucket=b, Key="presigned/new")["Body"].read() == data

    url = s3.generate_presigned_url("head_object", Params={"Bucket": b, "Key": "presigned/new"}, ExpiresIn=300)
    resp = requests.head(url, timeout=30)
    assert resp.status_code == 200
    assert int(resp.headers["Content-Length"]) == len(data)


def _assert_expired(resp):
    assert resp.status_code == 403, (resp.status_code, resp.text[:300])
    assert "<Code>AccessDenied</Code>" in resp.text, resp.text[:300]
    assert "Request has expired" in resp.text, resp.text[:300]


def test_presigned_url_signed_in_the_past_is_expired(s3, seeded, monkeypatch):
    b = seeded.bucket
    shift_signing_clock(monkeypatch, -datetime.timedelta(hours=2))
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "victim"}, ExpiresIn=60)
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": b, "Key": "victim"}, ExpiresIn=60)
    monkeypatch.undo()
    assert "X-Amz-Date=" in get_url
    signed_at = parse_qs(urlsplit(get_url).query)["X-Amz-Date"][0]
    assert signed_at < (datetime.datetime.utcnow() - datetime.timedelta(hours=1)).strftime("%Y%m%dT%H%M%SZ")
    _assert_expired(requests.get(get_url, timeout=30))
    _assert_expired(requests.put(put_url, data=b"too late", timeout=30))
    seeded.assert_unchanged("expired presigned PUT")


def test_presigned_url_expires_after_expires_in(s3, seeded):
    b = seeded.bucket
    url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "victim"}, ExpiresIn=1)
    q = parse_qs(urlsplit(url).query)
    signed_at = datetime.datetime.strptime(q["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.timezone.utc
    )
    expires_at = signed_at + datetime.timedelta(seconds=int(q["X-Amz-Expires"][0]))
    # Bounded wait until the wall clock is safely (1 s) past the expiry instant.
    deadline = time.monotonic() + 10
    while datetime.datetime.now(datetime.timezone.utc) < expires_at + datetime.timedelta(seconds=1):
        assert time.monotonic() < deadline, "clock did not advance past expiry"
        time.sleep(0.1)
    _assert_expired(requests.get(url, timeout=30))


def test_presigned_url_tampering(s3, seeded):
    b = seeded.bucket
    url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "seed/a"}, ExpiresIn=300)
    for tampered in [
        url.replace("/seed/a?", "/victim?"),
        url.replace("X-Amz-Expires=300", "X-Amz-Expires=301"),
        url[:-1] + ("0" if url[-1] != "0" else "1"),
    ]:
        assert tampered != url
        resp = requests.get(tampered, timeout=30)
        assert resp.status_code == 403, (tampered, resp.status_code, resp.text[:300])
        assert "<Code>SignatureDoesNotMatch</Code>" in resp.text, resp.text[:300]

    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": b, "Key": "seed/a"}, ExpiresIn=300)
    resp = requests.put(put_url.replace("/seed/a?", "/victim?"), data=b"evil", timeout=30)
    assert resp.status_code == 403
    seeded.assert_unchanged("tampered presigned URLs")


# ------------------------------------------------------------ missing things
def test_missing_bucket_and_key_codes(node, seeded):
    resp = raw_request(node, "GET", f"/no-such-bucket-{uuid.uuid4().hex[:8]}/k")
    assert (resp.status, resp.code) == (404, "NoSuchBucket"), resp.body[:300]
    resp = raw_request(node, "GET", f"/no-such-bucket-{uuid.uuid4().hex[:8]}")
    assert (resp.status, resp.code) == (404, "NoSuchBucket"), resp.body[:300]
    resp = raw_request(node, "GET", f"/{seeded.bucket}/no/such/key")
    assert (resp.status, resp.code) == (404, "NoSuchKey"), resp.body[:300]
    resp = raw_request(node, "HEAD", f"/{seeded.bucket}/no/such/key")
    assert resp.status == 404 and resp.body == b""
    seeded.assert_unchanged("404s")


# ---------------------------------------------------------------- key names
def test_key_length_limit_is_1024_bytes(s3, seeded):
    b = seeded.bucket
    ok_keys = ["k" * 1024, "é" * 512]  # both exactly 1024 bytes of UTF-8
    for i, key in enumerate(ok_keys):
        s3.put_object(Bucket=b, Key=key, Body=f"long {i}".encode())
    for i, key in enumerate(ok_keys):
        assert s3.get_object(Bucket=b, Key=key)["Body"].read() == f"long {i}".encode()
    seeded.rebaseline()
    assert set(ok_keys) <= {k for k, _, _ in seeded.baseline[0]}

    for key in ["k" * 1025, "é" * 512 + "a", "é" * 513]:
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=b, Key=key, Body=b"too long")
        assert err(e.value) == (400, "KeyTooLongError"), (len(key.encode()), err(e.value))
    with pytest.raises(ClientError) as e:
        s3.create_multipart_upload(Bucket=b, Key="m" * 1025)
    assert err(e.value) == (400, "KeyTooLongError")
    seeded.assert_unchanged("too-long keys")


def _files_outside(root: Path, data_dir: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == data_dir:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            p = here / name
            if p != data_dir:
                out.add(str(p.relative_to(root)))
    return out


def test_traversal_style_keys_are_plain_keys(node, s3, seeded):
    b = seeded.bucket
    canary = f"stacks-escape-canary-{uuid.uuid4().hex}"
    passwd_before = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    outside_before = _files_outside(node.root, node.data_dir)

    # The node's data dir is nested 4 levels below node.root, so up to four "../"
    # stay inside node.root; the deep ones aim at /tmp/<canary> (harmless).
    keys = [
        "../../etc/passwd",
        "../../../../etc/passwd",
        "../" * 16 + f"tmp/{canary}",
        f"/tmp/{canary}-abs",
        "..",
        "../",
        "a/../../b",
        "a/b",
        "a/./b",
        "a//b",
        "a/b/..",
        "./x",
        "x",
        ".../x",
        "..\\..\\windows\\system32\\config",
        "..%2F..%2Fencoded",
        "victim/../victim",
    ]
    contents = {k: f"content of {k!r} / {i}".encode() for i, k in enumerate(keys)}
    for k in keys:
        put = s3.put_object(Bucket=b, Key=k, Body=contents[k])
        assert put["ETag"] == f'"{md5_hex(contents[k])}"', k
    for k in keys:
        assert s3.get_object(Bucket=b, Key=k)["Body"].read() == contents[k], k
        assert s3.head_object(Bucket=b, Key=k)["ContentLength"] == len(contents[k]), k

    listed = {k: (etag, size) for k, etag, size in list_state(s3, b)}
    for k in keys:
        assert k in listed, f"{k!r} not listed; listing has {sorted(listed)}"
        assert listed[k] == (f'"{md5_hex(contents[k])}"', len(contents[k])), k
    assert set(listed) == set(keys) | set(Seeded.SEEDS)

    assert not Path("/tmp", canary).exists()
    assert not Path("/tmp", canary + "-abs").exists()
    assert hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest() == passwd_before
    assert _files_outside(node.root, node.data_dir) == outside_before

    # Deleting the dotted variants must not touch their look-alikes.
    for k in ["a/./b", "a//b", "./x", "victim/../victim"]:
        s3.delete_object(Bucket=b, Key=k)
    for k in ["a/b", "x"]:
        assert s3.get_object(Bucket=b, Key=k)["Body"].read() == contents[k]
    for k in keys:
        s3.delete_object(Bucket=b, Key=k)
    seeded.assert_unchanged("traversal keys created and deleted")
    assert _files_outside(node.root, node.data_dir) == outside_before


@pytest.mark.parametrize("encoded_key", ["victim%00.evil", "%00victim", "vic%00tim", "%00"])
def test_nul_in_key(node, s3, seeded, encoded_key):
    b = seeded.bucket
    path = f"/{b}/{encoded_key}"
    resp = raw_request(node, "PUT", path, body=b"nul payload")
    if resp.status == 200:
        # Accepted: it must be an ordinary, distinct key, not a truncated one.
        key = encoded_key.replace("%00", "\x00")
        got = raw_request(node, "GET", path)
        assert (got.status, got.body) == (200, b"nul payload")
        listed = [k for k, _, _ in list_state(s3, b)]
        assert key in listed, listed
        assert raw_request(node, "DELETE", path).status == 204
    else:
        # Rejected: must be a client error about the key, not an auth failure
        # (which would mean this test proved nothing).
        assert resp.status == 400, (resp.status, resp.body[:300])
        got = raw_request(node, "GET", path)
        assert got.status in (400, 404), (got.status, got.body[:300])
    seeded.assert_unchanged(f"PUT {encoded_key}")


# ------------------------------------------------------------- malformed XML
def test_malformed_complete_multipart_xml(node, s3, seeded):
    b, key = seeded.bucket, "mp/malformed"
    upload_id = s3.create_multipart_upload(Bucket=b, Key=key)["UploadId"]
    etag = s3.upload_part(Bucket=b, Key=key, UploadId=upload_id, PartNumber=1, Body=b"part one")["ETag"]
    query = f"uploadId={quote(upload_id, safe='')}"
    bodies = [
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>",  # truncated
        b"this is not xml",
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>"
        + etag.encode() + b"</ETag></Part></Wrong>",  # mismatched tag
        b"\x00\x01\x02\xff" * 10,
    ]
    for body in bodies:
        resp = raw_request(node, "POST", f"/{b}/{key}", query=query, body=body)
        assert (resp.status, resp.code) == (400, "MalformedXML"), (body, resp.status, resp.body[:300])
        with pytest.raises(ClientError):
            s3.head_object(Bucket=b, Key=key)
        parts = s3.list_parts(Bucket=b, Key=key, UploadId=upload_id)["Parts"]
        assert [(p["PartNumber"], p["ETag"]) for p in parts] == [(1, etag)]
        seeded.assert_unchanged(f"malformed complete {body[:20]!r}")

    # The upload survived intact and can still be completed.
    s3.complete_multipart_upload(
        Bucket=b, Key=key, UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    assert s3.get_object(Bucket=b, Key=key)["Body"].read() == b"part one"


def test_malformed_delete_objects_xml(node, s3, seeded):
    b = seeded.bucket
    bodies = [
        b"<Delete><Object><Key>victim</Key></Object>",  # truncated after a valid entry
        b"<Delete><Object><Key>victim</Key></Object><Object><Key>seed/a</Key></Object></Del>",
        b"not xml",
        b"<Delete><Object><Key>victim</Key></Object>" + b"<Object>" * 5,
    ]
    for body in bodies:
        resp = raw_request(
            node, "POST", f"/{b}", query="delete=", body=body, headers={"Content-MD5": content_md5(body)}
        )
        assert (resp.status, resp.code) == (400, "MalformedXML"), (body, resp.status, resp.body[:300])
        seeded.assert_unchanged(f"malformed delete {body[:30]!r}")


# ------------------------------------------------------------- short bodies
@pytest.mark.parametrize("payload_mode", ["signed-hash", "unsigned-payload"])
@pytest.mark.parametrize("key", ["short-new", "victim"])
def test_body_shorter_than_content_length(node, s3, seeded, key, payload_mode):
    b = seeded.bucket
    full = os.urandom(1000)
    payload_hash = sha256_hex(full) if payload_mode == "signed-hash" else "UNSIGNED-PAYLOAD"

    def request_bytes(path: str, body: bytes) -> bytes:
        hdrs = sign(node, "PUT", path, headers={"Content-Length": "1000"}, payload_hash=payload_hash)
        head = f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        return head.encode() + b"\r\n" + body

    # Control: the very same request with the whole body is accepted.
    reply = send_raw_bytes(node, request_bytes(f"/{b}/control-{key}", full), timeout=30)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:300]
    assert s3.get_object(Bucket=b, Key=f"control-{key}")["Body"].read() == full
    s3.delete_object(Bucket=b, Key=f"control-{key}")

    reply = send_raw_bytes(node, request_bytes(f"/{b}/{key}", full[:10]), timeout=30)
    status_line = reply.split(b"\r\n", 1)[0]
    assert not status_line.startswith(b"HTTP/1.1 2"), reply[:300]
    assert not status_line.startswith(b"HTTP/1.0 2"), reply[:300]

    # The object must not appear, now or a moment later (bounded watch).
    deadline = time.monotonic() + 1.0
    while True:
        seeded.assert_unchanged(f"short body ({payload_mode}) for {key}")
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert node.is_running()


# ------------------------------------------------------------ garbage input
def test_garbage_requests_do_not_crash_the_server(node, s3, seeded):
    b = seeded.bucket
    garbage = [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: AWS4-HMAC-SHA256 nonsense\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: AWS4-HMAC-SHA256 Credential=, SignedHeaders=, Signature=\r\n\r\n",
        f"GET /{b}/%zz%g HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
        f"PUT /{b}/x HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n".encode(),
        f"PUT /{b}/x HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n".encode(),
        b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + os.urandom(64),  # a TLS hello
    ]
    for raw in garbage:
        reply = send_raw_bytes(node, raw, shutdown_write=True, timeout=15)
        if reply.startswith(b"HTTP/"):
            status = int(reply.split(b" ", 2)[1])
            assert 400 <= status < 500 or status in (501, 505), (raw[:60], reply[:300])
        assert node.is_running(), f"server died on {raw[:60]!r}\n{node.log_tail()}"
    seeded.assert_unchanged("garbage requests")
