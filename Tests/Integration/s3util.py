"""Shared helpers: error inspection, hashing/checksums, raw SigV4-signed HTTP."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import socket
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree import ElementTree

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

MiB = 1024 * 1024


# ------------------------------------------------------------------ errors
def err(exc: ClientError) -> tuple[int, str]:
    """(HTTP status, S3 error code) of a botocore ClientError."""
    return (
        exc.response["ResponseMetadata"]["HTTPStatusCode"],
        exc.response.get("Error", {}).get("Code", ""),
    )


def xml_error(body: bytes) -> tuple[str, str]:
    """(Code, Message) from an S3 XML error document ('' if absent/unparsable)."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return "", ""

    def find(tag):
        for el in root.iter():
            if el.tag.split("}")[-1] == tag:
                return el.text or ""
        return ""

    return find("Code"), find("Message")


# ----------------------------------------------------------------- hashing
def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def content_md5(data: bytes) -> str:
    return b64(hashlib.md5(data).digest())


def crc32_b64(data: bytes) -> str:
    return b64(zlib.crc32(data).to_bytes(4, "big"))


def _make_crc32c_table():
    poly = 0x82F63B78
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _make_crc32c_table()


def crc32c(data: bytes) -> int:
    try:  # fast path when awscrt is installed
        from awscrt import checksums

        return checksums.crc32c(data)
    except ImportError:
        pass
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c_b64(data: bytes) -> str:
    return b64(crc32c(data).to_bytes(4, "big"))


def sha256_b64(data: bytes) -> str:
    return b64(hashlib.sha256(data).digest())


CHECKSUMS = {
    # algorithm name -> (header, function producing the base64 value)
    "CRC32": ("x-amz-checksum-crc32", crc32_b64),
    "CRC32C": ("x-amz-checksum-crc32c", crc32c_b64),
    "SHA256": ("x-amz-checksum-sha256", sha256_b64),
}


def write_random_file(path: Path, size: int, chunk: int = 16 * MiB) -> tuple[str, list[str]]:
    """Fill `path` with `size` random bytes; return (sha256 hex, md5 hex of each `chunk`)."""
    whole = hashlib.sha256()
    part_md5s = []
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            n = min(chunk, remaining)
            buf = os.urandom(n)
            whole.update(buf)
            part_md5s.append(hashlib.md5(buf).hexdigest())
            f.write(buf)
            remaining -= n
    return whole.hexdigest(), part_md5s


def multipart_etag(part_md5_hexes: list[str]) -> str:
    joined = b"".join(bytes.fromhex(h) for h in part_md5_hexes)
    return f"{hashlib.md5(joined).hexdigest()}-{len(part_md5_hexes)}"


def stream_sha256(body, chunk: int = MiB) -> tuple[str, int]:
    """sha256 hex and length of a botocore StreamingBody, without buffering it."""
    h = hashlib.sha256()
    n = 0
    for piece in body.iter_chunks(chunk):
        h.update(piece)
        n += len(piece)
    return h.hexdigest(), n


def list_state(s3, bucket: str) -> list[tuple[str, str, int]]:
    """Sorted (key, etag, size) of every object in `bucket` (follows pagination)."""
    out = []
    token = None
    for _ in range(10_000):
        kw = {"Bucket": bucket}
        if token:
            kw["ContinuationToken"] = token
        resp = s3.list_objects_v2(**kw)
        out.extend((o["Key"], o["ETag"], o["Size"]) for o in resp.get("Contents", []))
        if not resp.get("IsTruncated"):
            break
        token = resp["NextContinuationToken"]
    return sorted(out)


def empty_and_delete_bucket(s3, bucket: str) -> None:
    """Best-effort cleanup; never raises."""
    try:
        for key, _, _ in list_state(s3, bucket):
            try:
                s3.delete_object(Bucket=bucket, Key=key)
            except Exception:
                pass
        try:
            for up in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
                s3.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        except Exception:
            pass
        s3.delete_bucket(Bucket=bucket)
    except Exception:
        pass


# --------------------------------------------------------------- raw HTTP
@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def code(self) -> str:
        return xml_error(self.body)[0]

    @property
    def message(self) -> str:
        return xml_error(self.body)[1]


def sign(
    node,
    method: str,
    path: str,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    payload_hash: str | None = None,
    access_key: str | None = None,
    secret_key: str | None = None,
) -> dict[str, str]:
    """Return the headers of a SigV4-signed request (incl. Host, X-Amz-Date, Authorization).

    `path` must already be URI-encoded exactly as it will be sent. `payload_hash`
    overrides x-amz-content-sha256 (e.g. "UNSIGNED-PAYLOAD",
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER" or the hash of a body you will not send).
    """
    url = node.endpoint + path + (f"?{query}" if query else "")
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    req.headers["Host"] = urlsplit(node.endpoint).netloc
    creds = Credentials(access_key or node.access_key, secret_key or node.secret_key)
    auth = S3SigV4Auth(creds, "s3", node.region)
    if payload_hash is not None:
        # S3SigV4Auth always recomputes the header from payload(); pin it instead.
        auth.payload = lambda _req, _h=payload_hash: _h
    auth.add_auth(req)
    return dict(req.headers.items())


def raw_request(
    node,
    method: str,
    path: str,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    signed: bool = True,
    timeout: float = 60,
    **sign_kw,
) -> RawResponse:
    """Send one request with http.client, byte-exact path, and return the response."""
    hdrs = dict(headers or {})
    if signed:
        hdrs = sign(node, method, path, query, hdrs, body, **sign_kw)
    split = urlsplit(node.endpoint)
    conn = http.client.HTTPConnection(split.hostname, split.port, timeout=timeout)
    try:
        target = path + (f"?{query}" if query else "")
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        has_host = any(k.lower() == "host" for k in hdrs)
        if not has_host:
            conn.putheader("Host", split.netloc)
        for k, v in hdrs.items():
            conn.putheader(k, v)
        if not any(k.lower() in ("content-length", "transfer-encoding") for k in hdrs):
            if body or method in ("PUT", "POST"):
                conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        if body:
            conn.send(body)
        resp = conn.getresponse()
        data = resp.read()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def send_raw_bytes(node, request_bytes: bytes, shutdown_write: bool = True, timeout: float = 30) -> bytes:
    """Write `request_bytes` on a fresh socket, optionally half-close, and read until
    the server closes or `timeout` passes. Returns whatever the server sent."""
    split = urlsplit(node.endpoint)
    received = b""
    with socket.create_connection((split.hostname, split.port), timeout=timeout) as sock:
        try:
            sock.sendall(request_bytes)
            if shutdown_write:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may legitimately hang up on garbage early
        sock.settimeout(timeout)
        try:
            while not _complete_response(received):
                piece = sock.recv(65536)
                if not piece:
                    break
                received += piece
                if len(received) > 10 * MiB:
                    break
        except (socket.timeout, ConnectionResetError, BrokenPipeError):
            pass
    return received


def _complete_response(data: bytes) -> bool:
    """True once `data` holds a whole HTTP response with a Content-Length body
    (or no body), so we need not wait for the server to close the connection."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                length = int(value.strip())
            except ValueError:
                return False
        elif name.strip().lower() == b"transfer-encoding":
            return body.endswith(b"0\r\n\r\n")
    return len(body) >= length


# ------------------------------------------------- signed aws-chunked bodies
def signing_key(secret_key: str, date: str, region: str, service: str = "s3") -> bytes:
    import hmac

    k = hmac.new(f"AWS4{secret_key}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def signed_aws_chunked(node, path: str, data: bytes, chunk: int = 64 * 1024, tamper_chunk: int | None = None):
    """Headers and body of a PUT using STREAMING-AWS4-HMAC-SHA256-PAYLOAD (every
    chunk signed, chained from the seed signature). If `tamper_chunk` is given,
    that chunk's data is altered after it was signed."""
    import hmac

    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] + [b""]
    encoded_len = sum(
        len(b"%x;chunk-signature=%s\r\n" % (len(p), b"0" * 64)) + len(p) + 2 for p in pieces
    )
    hdrs = sign(
        node, "PUT", path,
        headers={
            "Content-Encoding": "aws-chunked",
            "X-Amz-Decoded-Content-Length": str(len(data)),
            "Content-Length": str(encoded_len),
        },
        payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    )
    amz_date = next(v for k, v in hdrs.items() if k.lower() == "x-amz-date")
    scope = f"{amz_date[:8]}/{node.region}/s3/aws4_request"
    key = signing_key(node.secret_key, amz_date[:8], node.region)
    prev = hdrs["Authorization"].rsplit("Signature=", 1)[1]
    empty_hash = hashlib.sha256(b"").hexdigest()
    body = []
    for i, p in enumerate(pieces):
        sts = "\n".join(
            ["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, empty_hash, hashlib.sha256(p).hexdigest()]
        )
        prev = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        sent = p
        if tamper_chunk == i and p:
            sent = bytes([p[0] ^ 0xFF]) + p[1:]
        body.append(b"%x;chunk-signature=%s\r\n%s\r\n" % (len(sent), prev.encode(), sent))
    out = b"".join(body)
    assert len(out) == encoded_len
    return hdrs, out
