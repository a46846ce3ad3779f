"""Tenancy, table-driven: every S3 operation the server knows, sent by alice's neighbours (bob,
another user; carol, a key scoped to bob's bucket; an anonymous caller) at alice's bucket, with the
bucket, key and copy source spelt every way a client or an attacker could (encoded and doubled
slashes, dot segments, case, a leading `?`, `versionId`, virtual-host addressing, presigned URLs),
on one node and on three. No request reads, lists, changes or deletes anything of alice's: her
secret, its ETag and her hidden key never appear in a response, her objects and her upload are
unchanged afterwards, and nothing of hers lands in bob's bucket. Alice's own requests on the same
table succeed, so the table reaches the routes it names."""
from __future__ import annotations

import base64
import hashlib
import http.client
import subprocess
import uuid
from urllib.parse import quote, unquote, urlsplit

import boto3
import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import _factory, _stop
from s3util import xml_error
from stacks_node import remember_secret, s3_config, stacks_binary

DOMAIN = "s3.test"


def create_key(node, *args) -> tuple[str, str]:
    out = subprocess.run([str(stacks_binary()), "key", "create", "--data-dir", str(node.data_dir), *args],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    kv = dict(line.split("=", 1) for line in out.stdout.split() if "=" in line)
    return kv["AWS_ACCESS_KEY_ID"], remember_secret(kv["AWS_SECRET_ACCESS_KEY"])


@pytest.fixture(scope="module", params=["one-node", "three-nodes"])
def tenants(request, tmp_path_factory):
    make, made = _factory(tmp_path_factory)
    s3 = {"base_domain": f'"{DOMAIN}"'}
    first = make("tenant1", s3=s3)
    nodes = [first]
    if request.param == "three-nodes":
        from test_layout import same_layout_everywhere
        from test_raft import healthy_with, wait_for
        nodes += [make(f"tenant{i}", start=False, seeds=[first.gossip_address], s3=s3) for i in (2, 3)]
        for n in nodes[1:]:
            n.start()
        wait_for("3 voters", healthy_with(nodes, 3), 90)
        wait_for("three nodes in the layout", same_layout_everywhere(nodes, lambda v: len(v["members"]) == 3), 60)
    yield nodes
    _stop(made)


class Caller:
    """Sends one request through one node, byte-exact path, signed with its key (or not)."""

    def __init__(self, name: str, key: tuple[str, str] | None):
        self.name, self.key = name, key

    def send(self, node, method, path, query="", headers=None, body=b"", host=None):
        port = urlsplit(node.endpoint).port
        host = f"{host}:{port}" if host else f"127.0.0.1:{port}"
        hdrs = {"Host": host, **(headers or {})}
        if self.key is not None:
            # Signed over the path the server reads (decoded, then encoded once), as an attacker
            # who wants the request to reach the route would sign it.
            canonical = quote(unquote(path), safe="/~")
            req = AWSRequest(method=method, url=f"http://{host}{canonical}" + (f"?{query}" if query else ""), data=body, headers=hdrs)
            S3SigV4Auth(Credentials(*self.key), "s3", node.region).add_auth(req)
            hdrs = dict(req.headers.items())
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.putrequest(method, path + (f"?{query}" if query else ""), skip_host=True, skip_accept_encoding=True)
            for k, v in hdrs.items():
                conn.putheader(k, v)
            if method in ("PUT", "POST") and "Content-Length" not in hdrs:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            if body:
                conn.send(body)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


def test_no_route_reaches_another_tenants_bucket(tenants):
    nodes = tenants
    admin = nodes[0]
    run = uuid.uuid4().hex[:8]
    A, B = f"alice-vault-{run}", f"bob-bucket-{run}"
    alice = create_key(admin, "--name", f"alice-{run}")
    bob = create_key(admin, "--name", f"bob-{run}")

    def client(node, key):
        return boto3.client("s3", endpoint_url=node.endpoint, aws_access_key_id=key[0], aws_secret_access_key=key[1],
                            region_name="us-east-1", config=s3_config())

    a, b = client(nodes[0], alice), client(nodes[-1], bob)
    secret = f"ALICE-SECRET-{uuid.uuid4().hex}".encode() * 64
    hidden = f"hidden-{uuid.uuid4().hex}"
    a.create_bucket(Bucket=A)
    etag = a.put_object(Bucket=A, Key="secret.txt", Body=secret)["ETag"].strip('"')
    a.put_object(Bucket=A, Key=f"dir/{hidden}", Body=secret)
    upload = a.create_multipart_upload(Bucket=A, Key="mp")["UploadId"]
    part_etag = a.upload_part(Bucket=A, Key="mp", UploadId=upload, PartNumber=1, Body=secret)["ETag"]
    b.create_bucket(Bucket=B)
    b.put_object(Bucket=B, Key="mine", Body=b"bob's own")
    bob_upload = b.create_multipart_upload(Bucket=B, Key="bmp")["UploadId"]
    carol = create_key(admin, "--name", f"carol-{run}", "--bucket", B, "--allow", "read,write")

    def alices_state():
        r = client(nodes[-1], alice)
        objects = sorted((o["Key"], o["ETag"]) for o in r.list_objects_v2(Bucket=A).get("Contents", []))
        parts = [(p["PartNumber"], p["ETag"]) for p in r.list_parts(Bucket=A, Key="mp", UploadId=upload).get("Parts", [])]
        return objects, parts, r.get_object(Bucket=A, Key="secret.txt")["Body"].read() == secret

    before = alices_state()
    assert before[1] == [(1, part_etag)] and before[2]

    # How alice's bucket and her object's key are spelt: (path of the bucket, path of the object,
    # virtual host or None, what a neighbour gets: 403 where it names alice's bucket, 404 where it
    # names none, "own" where it resolves into bob's bucket instead).
    up = "".join(c.upper() if c.isalpha() else c for c in A)
    enc = "%" + format(ord(A[0]), "02X") + A[1:]
    spellings = [
        (f"/{A}", f"/{A}/secret.txt", None, 403),
        (f"/{A}/", f"/{A}//secret.txt", None, 403),
        (f"/{enc}", f"/{enc}/secret.txt", None, 403),
        (f"/{A}%2F", f"/{A}%2Fsecret.txt", None, 403),
        ("/", "/secret.txt", f"{A}.{DOMAIN}", 403),
        (f"//{A}", f"//{A}/secret.txt", None, 404),
        (f"/{up}", f"/{up}/secret.txt", None, 404),
        (f"/./{A}", f"/./{A}/secret.txt", None, 404),
        ("/", "/secret.txt", f"{up}.{DOMAIN}", 404),
        (f"/{B}/../{A}", f"/{B}/../{A}/secret.txt", None, "own"),
        (f"/{B}/%2E%2E/{A}", f"/{B}/%2e%2e/{A}/secret.txt", None, "own"),
        ("/", f"/../{A}/secret.txt", f"{B}.{DOMAIN}", "own"),
    ]
    complete = (f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{part_etag}</ETag></Part>"
                "</CompleteMultipartUpload>").encode()
    delete_body = b"<Delete><Object><Key>secret.txt</Key></Object></Delete>"
    md5 = base64.b64encode(hashlib.md5(delete_body).digest()).decode()
    sources = [f"{A}/secret.txt", f"/{A}/secret.txt", f"%2F{A}/secret.txt", f"?/{A}/secret.txt", f"/{A}/secret.txt?versionId=null",
               f"{A}%2Fsecret.txt", f"//{A}/secret.txt", f"/{B}/../{A}/secret.txt", f"{up}/secret.txt", f"{enc}/secret.txt",
               quote(f"/{A}/secret.txt", safe="")]

    def table():
        """(operation, method, path, query, headers, body, host, what a neighbour gets)."""
        for bpath, opath, host, own in spellings:
            yield "ListObjects", "GET", bpath, "", {}, b"", host, own
            yield "ListObjectsV2", "GET", bpath, "list-type=2&fetch-owner=true", {}, b"", host, own
            yield "GetBucketLocation", "GET", bpath, "location", {}, b"", host, own
            yield "ListMultipartUploads", "GET", bpath, "uploads", {}, b"", host, own
            yield "HeadBucket", "HEAD", bpath, "", {}, b"", host, own
            yield "DeleteObjects", "POST", bpath, "delete", {"Content-MD5": md5}, delete_body, host, own
            yield "DeleteBucket", "DELETE", bpath, "", {}, b"", host, own
            yield "GetObject", "GET", opath, "", {}, b"", host, own
            yield "GetObjectRange", "GET", opath, "", {"Range": "bytes=0-9"}, b"", host, own
            yield "GetObjectPart", "GET", opath, "partNumber=1", {}, b"", host, own
            yield "HeadObject", "HEAD", opath, "", {}, b"", host, own
            yield "PutObject", "PUT", opath, "", {}, b"overwritten", host, own
            yield "CopyObjectInto", "PUT", opath, "", {"x-amz-copy-source": f"/{B}/mine"}, b"", host, own
            yield "DeleteObject", "DELETE", opath, "", {}, b"", host, own
            mp = opath.replace("secret.txt", "mp")
            yield "CreateMultipartUpload", "POST", mp, "uploads", {}, b"", host, own
            yield "UploadPart", "PUT", mp, f"partNumber=1&uploadId={quote(upload)}", {}, b"overwritten", host, own
            yield "UploadPartCopy", "PUT", mp, f"partNumber=2&uploadId={quote(upload)}", {"x-amz-copy-source": f"/{B}/mine"}, b"", host, own
            yield "ListParts", "GET", mp, f"uploadId={quote(upload)}", {}, b"", host, own
            yield "CompleteMultipartUpload", "POST", mp, f"uploadId={quote(upload)}", {}, complete, host, own
            yield "AbortMultipartUpload", "DELETE", mp, f"uploadId={quote(upload)}", {}, b"", host, own
        # Out of alice's bucket into one the caller may write: copies, and her upload id under bob's bucket.
        for i, src in enumerate(sources):
            yield "CopyObjectOut", "PUT", f"/{B}/loot-{i}", "", {"x-amz-copy-source": src}, b"", None, None
            yield "CopyObjectOutVhost", "PUT", f"/loot-v{i}", "", {"x-amz-copy-source": src}, b"", f"{B}.{DOMAIN}", None
            yield "UploadPartCopyOut", "PUT", f"/{B}/bmp", f"partNumber={i + 1}&uploadId={quote(bob_upload)}", {"x-amz-copy-source": src}, b"", None, None
        yield "UploadPartForeignId", "PUT", f"/{B}/mp", f"partNumber=1&uploadId={quote(upload)}", {}, b"x", None, None
        yield "ListPartsForeignId", "GET", f"/{B}/mp", f"uploadId={quote(upload)}", {}, b"", None, None
        yield "CompleteForeignId", "POST", f"/{B}/mp", f"uploadId={quote(upload)}", {}, complete, None, None
        yield "AbortForeignId", "DELETE", f"/{B}/mp", f"uploadId={quote(upload)}", {}, b"", None, None
        yield "ListBuckets", "GET", "/", "", {}, b"", None, None

    leaks = [secret[:40], etag.encode(), hidden.encode(), upload.encode()]
    callers = [Caller("bob", bob), Caller("carol", carol), Caller("anonymous", None)]
    sent = 0
    for caller in callers:
        for op, method, path, query, headers, body, host, own in table():
            node = nodes[(sent := sent + 1) % len(nodes)]
            status, rh, data = caller.send(node, method, path, query, headers, body, host)
            what = f"{caller.name} {op} {method} {host or ''}{path}?{query} {headers} through {node.name} -> {status} {data[:300]!r}"
            code = xml_error(data)[0] if data else ""
            assert code != "SignatureDoesNotMatch", what  # the request reached the route it names
            everything = data + repr(rh).encode()
            for leak in leaks:
                if leak == upload.encode() and "uploadId" in query:
                    continue  # the caller sent it
                assert leak not in everything, f"leaked {leak[:20]!r}: {what}"
            if op == "ListBuckets":
                assert A.encode() not in data, what
            if caller.name == "anonymous":
                assert status == 403, what
            elif own in (403, 404):
                assert status == own and (method == "HEAD" or code == ("AccessDenied" if own == 403 else "NoSuchBucket")), what
            elif op.startswith(("CopyObjectOut", "UploadPartCopyOut")):
                assert status >= 400, what
        # Presigned URLs bob made for alice's bucket are refused like his signed requests.
        if caller.name == "bob":
            pb = client(nodes[0], bob)
            for method, params in [("get_object", {"Bucket": A, "Key": "secret.txt"}), ("head_object", {"Bucket": A, "Key": "secret.txt"}),
                                   ("put_object", {"Bucket": A, "Key": "secret.txt"}), ("delete_object", {"Bucket": A, "Key": "secret.txt"}),
                                   ("list_objects_v2", {"Bucket": A}), ("delete_bucket", {"Bucket": A})]:
                url = pb.generate_presigned_url(method, Params=params, ExpiresIn=300)
                verb = {"get": "GET", "head": "HEAD", "put": "PUT", "delete": "DELETE", "list": "GET"}[method.split("_")[0]]
                r = requests.request(verb, url, data=b"presigned" if verb == "PUT" else None, timeout=60)
                assert r.status_code == 403 and secret[:40] not in r.content and etag not in repr(r.headers), (method, r.status_code, r.content[:300])

    # Nothing of alice's changed, and nothing of hers reached bob's bucket.
    assert alices_state() == before
    for o in b.list_objects_v2(Bucket=B).get("Contents", []):
        assert secret[:40] not in b.get_object(Bucket=B, Key=o["Key"])["Body"].read(), o["Key"]
    for p in b.list_parts(Bucket=B, Key="bmp", UploadId=bob_upload).get("Parts", []):
        assert p["ETag"].strip('"') != etag, p

    # Alice's own requests on the canonical spellings succeed: the table reaches its routes.
    me = Caller("alice", alice)
    for op, method, path, query, headers, body, host, own in table():
        mutates = op in ("DeleteBucket", "DeleteObjects", "DeleteObject", "PutObject", "CopyObjectInto", "UploadPart", "UploadPartCopy",
                         "CompleteMultipartUpload", "AbortMultipartUpload")
        if own == 403 and not mutates and "//" not in path:
            status, _, data = me.send(nodes[-1], method, path, query, headers, body, host)
            assert 200 <= status < 300, f"alice {op} {method} {host or ''}{path}?{query} -> {status} {data[:300]!r}"
    client(nodes[0], alice).abort_multipart_upload(Bucket=A, Key="mp", UploadId=upload)
