"""S3 API conformance of a real Stacks node, driven by boto3.

Proves that objects from 0 B to 200 MiB (multipart) round-trip byte-exact with
correct ETags; that bucket/object lifecycle, metadata, ranges, conditional
requests, copy, batch delete, listing (v1 and v2, with all pagination knobs) and
multipart bookkeeping behave like S3, including the standard error codes; and
that integrity checks on write (Content-MD5, x-amz-checksum-* in header and
aws-chunked trailer form) accept good data and reject bad data with BadDigest
without storing anything.

Over 400 lines on purpose: one real-client test per S3 behaviour a boto3 user relies on, each
short and independent, grouped by operation under the comment rulers; handler logic that needs no
real client is checked in process by Tests/S3Tests/S3ResponderTests.swift.
"""

from __future__ import annotations

import datetime
import hashlib
import os

import pytest
from botocore.exceptions import ClientError

from s3util import (
    CHECKSUMS,
    MiB,
    b64,
    content_md5,
    err,
    list_state,
    md5_hex,
    multipart_etag,
    raw_request,
    sha256_hex,
    stream_sha256,
    write_random_file,
)


def get_bytes(s3, bucket, key, **kw) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key, **kw)["Body"].read()


def assert_error(exc_info, status, code=None):
    got_status, got_code = err(exc_info.value)
    assert got_status == status, f"expected HTTP {status}, got {got_status} ({got_code})"
    if code is not None:
        assert got_code == code, f"expected error code {code}, got {got_code!r}"


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("size", [0, 1, 5 * MiB, 64 * MiB], ids=["0B", "1B", "5MiB", "64MiB"])
def test_put_get_roundtrip(s3, bucket, size):
    data = os.urandom(size)
    put = s3.put_object(Bucket=bucket, Key=f"obj-{size}", Body=data)
    assert put["ETag"] == f'"{md5_hex(data)}"'

    head = s3.head_object(Bucket=bucket, Key=f"obj-{size}")
    assert head["ContentLength"] == size
    assert head["ETag"] == f'"{md5_hex(data)}"'

    resp = s3.get_object(Bucket=bucket, Key=f"obj-{size}")
    assert resp["ContentLength"] == size
    assert resp["ETag"] == f'"{md5_hex(data)}"'
    digest, n = stream_sha256(resp["Body"])
    assert n == size
    assert digest == sha256_hex(data)


@pytest.mark.slow
def test_multipart_200mib_roundtrip(s3, bucket, tmp_path):
    size, part_size = 200 * MiB, 16 * MiB
    src = tmp_path / "big.bin"
    want_sha, part_md5s = write_random_file(src, size, chunk=part_size)
    key = "big/200mib.bin"

    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts = []
    try:
        with open(src, "rb") as f:
            for number in range(1, len(part_md5s) + 1):
                chunk = f.read(part_size)
                resp = s3.upload_part(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                )
                assert resp["ETag"] == f'"{part_md5s[number - 1]}"'
                parts.append({"PartNumber": number, "ETag": resp["ETag"]})
                del chunk
        done = s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    except BaseException:
        try:
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except Exception:
            pass
        raise
    src.unlink()

    want_etag = f'"{multipart_etag(part_md5s)}"'
    assert len(part_md5s) == 13
    assert done["ETag"] == want_etag

    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == size
    assert head["ETag"] == want_etag

    resp = s3.get_object(Bucket=bucket, Key=key)
    digest, n = stream_sha256(resp["Body"])
    assert n == size
    assert digest == want_sha

    # A range spanning the boundary between parts 1 and 2 must be contiguous.
    rng = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={part_size - 5}-{part_size + 4}")
    assert rng["ContentLength"] == 10
    assert rng["ContentRange"] == f"bytes {part_size - 5}-{part_size + 4}/{size}"


# ------------------------------------------------------------ bucket lifecycle
def test_bucket_lifecycle(s3, make_bucket):
    name = make_bucket()
    s3.head_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    s3.put_object(Bucket=name, Key="k", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=name)
    assert_error(e, 409, "BucketNotEmpty")
    s3.head_bucket(Bucket=name)  # still there

    s3.delete_object(Bucket=name, Key="k")
    s3.delete_bucket(Bucket=name)

    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=name)
    assert_error(e, 404)
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=name)
    assert_error(e, 404, "NoSuchBucket")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=name, Key="k")
    assert_error(e, 404, "NoSuchBucket")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=name, Key="k", Body=b"x")
    assert_error(e, 404, "NoSuchBucket")
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket=name)
    assert_error(e, 404, "NoSuchBucket")
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_list_buckets_includes_created_buckets(s3, make_bucket):
    names = {make_bucket() for _ in range(3)}
    listed = s3.list_buckets()
    got = {b["Name"] for b in listed["Buckets"]}
    assert names <= got
    for b in listed["Buckets"]:
        assert isinstance(b["CreationDate"], datetime.datetime)


def test_missing_key_errors(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="nope")
    assert_error(e, 404, "NoSuchKey")
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="nope")
    assert_error(e, 404)
    # Deleting a missing key is not an error in S3.
    resp = s3.delete_object(Bucket=bucket, Key="nope")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_overwrite_replaces_content(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"first version, longer")
    s3.put_object(Bucket=bucket, Key="k", Body=b"second")
    assert get_bytes(s3, bucket, "k") == b"second"
    assert list_state(s3, bucket) == [("k", f'"{md5_hex(b"second")}"', 6)]


# -------------------------------------------------------- metadata / head
def test_head_object_metadata_and_content_type(s3, bucket):
    data = b"hello metadata"
    s3.put_object(
        Bucket=bucket,
        Key="meta.txt",
        Body=data,
        ContentType="text/plain; charset=utf-8",
        Metadata={"color": "blue", "multi-word-name": "Value With Spaces"},
    )
    head = s3.head_object(Bucket=bucket, Key="meta.txt")
    assert head["ContentType"] == "text/plain; charset=utf-8"
    assert head["Metadata"] == {"color": "blue", "multi-word-name": "Value With Spaces"}
    assert head["ETag"] == f'"{md5_hex(data)}"'
    assert head["ContentLength"] == len(data)
    assert isinstance(head["LastModified"], datetime.datetime)

    got = s3.get_object(Bucket=bucket, Key="meta.txt")
    assert got["ContentType"] == "text/plain; charset=utf-8"
    assert got["Metadata"] == head["Metadata"]
    assert got["Body"].read() == data


def test_default_content_type(s3, bucket):
    s3.put_object(Bucket=bucket, Key="noct", Body=b"abc")
    ct = s3.head_object(Bucket=bucket, Key="noct")["ContentType"]
    assert ct in ("binary/octet-stream", "application/octet-stream")


# ---------------------------------------------------------------- ranges
DATA100 = bytes(range(100))


@pytest.mark.parametrize(
    "header,start,end",
    [
        ("bytes=0-9", 0, 9),
        ("bytes=10-19", 10, 19),
        ("bytes=99-99", 99, 99),
        ("bytes=-10", 90, 99),  # suffix range
        ("bytes=5-", 5, 99),  # open range
        ("bytes=90-1000", 90, 99),  # end past EOF is clamped
        ("bytes=-1000", 0, 99),  # suffix longer than object
    ],
)
def test_range_get(s3, bucket, header, start, end):
    s3.put_object(Bucket=bucket, Key="r", Body=DATA100)
    resp = s3.get_object(Bucket=bucket, Key="r", Range=header)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert resp["ContentRange"] == f"bytes {start}-{end}/100"
    assert resp["ContentLength"] == end - start + 1
    assert resp["Body"].read() == DATA100[start : end + 1]


@pytest.mark.parametrize("header", ["bytes=100-200", "bytes=100-", "bytes=500-600"])
def test_unsatisfiable_range(s3, bucket, header):
    s3.put_object(Bucket=bucket, Key="r", Body=DATA100)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="r", Range=header)
    assert_error(e, 416, "InvalidRange")


def test_range_on_empty_object_is_invalid(s3, bucket):
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="empty", Range="bytes=0-0")
    assert_error(e, 416, "InvalidRange")


# ------------------------------------------------------------ conditionals
def test_conditional_get_and_head(s3, bucket):
    s3.put_object(Bucket=bucket, Key="c", Body=b"conditional")
    head = s3.head_object(Bucket=bucket, Key="c")
    etag, lm = head["ETag"], head["LastModified"]
    day = datetime.timedelta(days=1)

    ok = [
        {"IfMatch": etag},
        {"IfNoneMatch": '"0123456789abcdef0123456789abcdef"'},
        {"IfModifiedSince": lm - day},
        {"IfUnmodifiedSince": lm},
        {"IfUnmodifiedSince": lm + day},
        # S3 rule: If-Match true wins over If-Unmodified-Since false.
        {"IfMatch": etag, "IfUnmodifiedSince": lm - day},
    ]
    not_modified = [
        {"IfNoneMatch": etag},
        {"IfModifiedSince": lm},
        # S3 rule: If-None-Match false wins over If-Modified-Since true.
        {"IfNoneMatch": etag, "IfModifiedSince": lm - day},
    ]
    failed = [
        {"IfMatch": '"0123456789abcdef0123456789abcdef"'},
        {"IfUnmodifiedSince": lm - day},
    ]
    for cond in ok:
        assert get_bytes(s3, bucket, "c", **cond) == b"conditional", cond
        s3.head_object(Bucket=bucket, Key="c", **cond)
    for op in (s3.get_object, s3.head_object):
        for cond in not_modified:
            with pytest.raises(ClientError) as e:
                op(Bucket=bucket, Key="c", **cond)
            assert err(e.value)[0] == 304, (op.__name__, cond, err(e.value))
        for cond in failed:
            with pytest.raises(ClientError) as e:
                op(Bucket=bucket, Key="c", **cond)
            assert err(e.value)[0] == 412, (op.__name__, cond, err(e.value))
            if op is s3.get_object:
                assert err(e.value)[1] == "PreconditionFailed"


# ------------------------------------------------------------------- copy
def test_copy_object_copy_and_replace_metadata(s3, bucket, make_bucket):
    other = make_bucket()
    data = os.urandom(100_000)
    s3.put_object(
        Bucket=bucket, Key="src", Body=data, ContentType="image/png", Metadata={"origin": "src"}
    )

    copied = s3.copy_object(
        Bucket=other, Key="dst-copy", CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="COPY",
    )
    assert copied["CopyObjectResult"]["ETag"] == f'"{md5_hex(data)}"'
    head = s3.head_object(Bucket=other, Key="dst-copy")
    assert head["Metadata"] == {"origin": "src"}
    assert head["ContentType"] == "image/png"
    assert head["ETag"] == f'"{md5_hex(data)}"'
    assert get_bytes(s3, other, "dst-copy") == data

    s3.copy_object(
        Bucket=bucket, Key="dst-replace", CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE", Metadata={"fresh": "yes"}, ContentType="text/csv",
    )
    head = s3.head_object(Bucket=bucket, Key="dst-replace")
    assert head["Metadata"] == {"fresh": "yes"}
    assert head["ContentType"] == "text/csv"
    assert get_bytes(s3, bucket, "dst-replace") == data

    # The source is untouched.
    head = s3.head_object(Bucket=bucket, Key="src")
    assert head["Metadata"] == {"origin": "src"}
    assert head["ContentType"] == "image/png"

    # In-place metadata update (self-copy with REPLACE) is legal...
    s3.copy_object(
        Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE", Metadata={"origin": "updated"}, ContentType="image/png",
    )
    assert s3.head_object(Bucket=bucket, Key="src")["Metadata"] == {"origin": "updated"}
    assert get_bytes(s3, bucket, "src") == data
    # ...but a self-copy that changes nothing is rejected.
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"})
    assert_error(e, 400, "InvalidRequest")


def test_copy_missing_source(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "nope"})
    assert_error(e, 404, "NoSuchKey")
    assert list_state(s3, bucket) == []


# ------------------------------------------------------------ delete objects
@pytest.mark.parametrize("quiet", [False, True], ids=["verbose", "quiet"])
def test_delete_objects(s3, bucket, quiet):
    for i in range(6):
        s3.put_object(Bucket=bucket, Key=f"d/{i}", Body=b"x" * i)
    doomed = ["d/0", "d/2", "d/4", "d/never-existed"]
    resp = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": k} for k in doomed], "Quiet": quiet}
    )
    assert resp.get("Errors", []) == []
    deleted = sorted(d["Key"] for d in resp.get("Deleted", []))
    if quiet:
        assert deleted == []
    else:
        assert deleted == sorted(doomed)  # S3 reports missing keys as deleted too
    assert [k for k, _, _ in list_state(s3, bucket)] == ["d/1", "d/3", "d/5"]


# ---------------------------------------------------------------- listing
LIST_KEYS = sorted(
    ["a/1", "a/2", "a/b/3", "a/b/c/4", "b/1", "c", "d/e/f", "dz", "e f/ü+%.txt"]
)


@pytest.fixture
def listing_bucket(s3, bucket):
    for k in LIST_KEYS:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    return bucket


def _v2_pages(s3, bucket, **kw):
    pages, token = [], None
    for _ in range(100):
        args = dict(Bucket=bucket, **kw)
        if token:
            args["ContinuationToken"] = token
        resp = s3.list_objects_v2(**args)
        pages.append(resp)
        if not resp["IsTruncated"]:
            return pages
        token = resp["NextContinuationToken"]
        assert token
    raise AssertionError("pagination did not terminate")


def _keys(resp):
    return [o["Key"] for o in resp.get("Contents", [])]


def _prefixes(resp):
    return [p["Prefix"] for p in resp.get("CommonPrefixes", [])]


def test_list_v2_all_and_prefix(s3, listing_bucket):
    resp = s3.list_objects_v2(Bucket=listing_bucket)
    assert _keys(resp) == LIST_KEYS
    assert resp["KeyCount"] == len(LIST_KEYS)
    assert resp["IsTruncated"] is False
    for o in resp["Contents"]:
        assert o["Size"] == len(o["Key"].encode())
        assert o["ETag"] == f'"{md5_hex(o["Key"].encode())}"'

    resp = s3.list_objects_v2(Bucket=listing_bucket, Prefix="a/")
    assert _keys(resp) == ["a/1", "a/2", "a/b/3", "a/b/c/4"]
    assert s3.list_objects_v2(Bucket=listing_bucket, Prefix="zzz").get("Contents", []) == []


def test_list_v2_delimiter(s3, listing_bucket):
    resp = s3.list_objects_v2(Bucket=listing_bucket, Delimiter="/")
    assert _keys(resp) == ["c", "dz"]
    assert _prefixes(resp) == ["a/", "b/", "d/", "e f/"]
    assert resp["KeyCount"] == 6

    resp = s3.list_objects_v2(Bucket=listing_bucket, Delimiter="/", Prefix="a/")
    assert _keys(resp) == ["a/1", "a/2"]
    assert _prefixes(resp) == ["a/b/"]

    resp = s3.list_objects_v2(Bucket=listing_bucket, Delimiter="/", Prefix="a/b/")
    assert _keys(resp) == ["a/b/3"]
    assert _prefixes(resp) == ["a/b/c/"]


@pytest.mark.parametrize("max_keys", [1, 2, 4])
def test_list_v2_pagination(s3, listing_bucket, max_keys):
    pages = _v2_pages(s3, listing_bucket, MaxKeys=max_keys)
    keys = [k for p in pages for k in _keys(p)]
    assert keys == LIST_KEYS
    for p in pages:
        assert len(_keys(p)) <= max_keys
        assert p["KeyCount"] == len(_keys(p))
    assert len(pages) == -(-len(LIST_KEYS) // max_keys)

    # With a delimiter, keys and common prefixes share the page budget.
    pages = _v2_pages(s3, listing_bucket, MaxKeys=max_keys, Delimiter="/")
    assert [k for p in pages for k in _keys(p)] == ["c", "dz"]
    assert [x for p in pages for x in _prefixes(p)] == ["a/", "b/", "d/", "e f/"]
    for p in pages:
        assert len(_keys(p)) + len(_prefixes(p)) <= max_keys


def test_list_v2_start_after_and_max_keys_zero(s3, listing_bucket):
    resp = s3.list_objects_v2(Bucket=listing_bucket, StartAfter="a/b/3")
    assert _keys(resp) == [k for k in LIST_KEYS if k > "a/b/3"]
    resp = s3.list_objects_v2(Bucket=listing_bucket, StartAfter="a/b/3", Prefix="a/")
    assert _keys(resp) == ["a/b/c/4"]
    resp = s3.list_objects_v2(Bucket=listing_bucket, StartAfter="zzz")
    assert _keys(resp) == []

    resp = s3.list_objects_v2(Bucket=listing_bucket, MaxKeys=0)
    assert _keys(resp) == []
    assert resp["KeyCount"] == 0


def test_list_v1_marker_pagination(s3, listing_bucket):
    resp = s3.list_objects(Bucket=listing_bucket)
    assert _keys(resp) == LIST_KEYS
    assert resp["IsTruncated"] is False

    keys, marker = [], ""
    for _ in range(100):
        resp = s3.list_objects(Bucket=listing_bucket, MaxKeys=2, Marker=marker)
        page = _keys(resp)
        assert len(page) <= 2
        keys += page
        if not resp["IsTruncated"]:
            break
        marker = resp.get("NextMarker") or page[-1]
    assert keys == LIST_KEYS

    resp = s3.list_objects(Bucket=listing_bucket, Marker="b/1")
    assert _keys(resp) == [k for k in LIST_KEYS if k > "b/1"]

    resp = s3.list_objects(Bucket=listing_bucket, Delimiter="/", Prefix="a/")
    assert _keys(resp) == ["a/1", "a/2"]
    assert _prefixes(resp) == ["a/b/"]

    # With a delimiter, a truncated v1 listing must carry NextMarker.
    resp = s3.list_objects(Bucket=listing_bucket, Delimiter="/", MaxKeys=1)
    assert resp["IsTruncated"] is True
    assert resp.get("NextMarker")


# -------------------------------------------------------------- multipart
def test_multipart_list_parts_uploads_and_abort(s3, bucket):
    key = "mp/aborted"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    p1, p2 = os.urandom(5 * MiB), os.urandom(1024)
    e1 = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=p1)["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2, Body=p2)["ETag"]
    assert (e1, e2) == (f'"{md5_hex(p1)}"', f'"{md5_hex(p2)}"')

    parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in parts] == [
        (1, e1, len(p1)),
        (2, e2, len(p2)),
    ]

    # Re-uploading a part number replaces it.
    p2b = b"replacement part two"
    e2b = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2, Body=p2b)["ETag"]
    parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in parts] == [
        (1, e1, len(p1)),
        (2, e2b, len(p2b)),
    ]

    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [(key, upload_id)]

    # An in-progress upload is not an object.
    assert list_state(s3, bucket) == []

    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)
    assert_error(e, 404, "NoSuchUpload")
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=3, Body=b"x")
    assert_error(e, 404, "NoSuchUpload")
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}]},
        )
    assert_error(e, 404, "NoSuchUpload")
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key=key)
    assert_error(e, 404)


def test_multipart_unknown_upload_id(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="k", UploadId="does-not-exist", PartNumber=1, Body=b"x")
    assert_error(e, 404, "NoSuchUpload")


def test_multipart_complete_with_wrong_etag(s3, bucket):
    key = "mp/badpart"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"only part")
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"0123456789abcdef0123456789abcdef"'}]},
        )
    assert_error(e, 400, "InvalidPart")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key=key)
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


@pytest.fixture
def three_part_object(s3, bucket):
    """A multipart object with parts of 5 MiB, 5 MiB and 1 KiB (+ their bytes)."""
    key = "mp/three"
    parts_data = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1024)]
    upload_id = s3.create_multipart_upload(
        Bucket=bucket, Key=key, ContentType="application/x-test", Metadata={"mp": "yes"}
    )["UploadId"]
    parts = []
    for i, data in enumerate(parts_data, 1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=i, Body=data)["ETag"]
        parts.append({"PartNumber": i, "ETag": etag})
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    assert done["ETag"] == f'"{multipart_etag([md5_hex(d) for d in parts_data])}"'
    return key, parts_data


def test_multipart_object_metadata_and_listing(s3, bucket, three_part_object):
    key, parts_data = three_part_object
    total = sum(len(d) for d in parts_data)
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == total
    assert head["ContentType"] == "application/x-test"
    assert head["Metadata"] == {"mp": "yes"}
    assert head["ETag"].endswith('-3"')
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert list_state(s3, bucket) == [(key, head["ETag"], total)]
    assert hashlib.sha256(get_bytes(s3, bucket, key)).digest() == hashlib.sha256(
        b"".join(parts_data)
    ).digest()


def test_get_and_head_part_number(s3, bucket, three_part_object):
    key, parts_data = three_part_object
    total = sum(len(d) for d in parts_data)
    offset = 0
    for number, data in enumerate(parts_data, 1):
        head = s3.head_object(Bucket=bucket, Key=key, PartNumber=number)
        assert head["ResponseMetadata"]["HTTPStatusCode"] in (200, 206)
        assert head["PartsCount"] == 3
        assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-mp-parts-count"] == "3"
        assert head["ContentLength"] == len(data)

        resp = s3.get_object(Bucket=bucket, Key=key, PartNumber=number)
        assert resp["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert resp["PartsCount"] == 3
        assert resp["ContentLength"] == len(data)
        assert resp["ContentRange"] == f"bytes {offset}-{offset + len(data) - 1}/{total}"
        assert resp["Body"].read() == data
        offset += len(data)

    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key=key, PartNumber=4)
    assert_error(e, 416, "InvalidPartNumber")


# ------------------------------------------------------- integrity on write
def test_content_md5_good_and_bad(s3, bucket):
    data = b"integrity matters"
    s3.put_object(Bucket=bucket, Key="good", Body=data, ContentMD5=content_md5(data))
    assert get_bytes(s3, bucket, "good") == data

    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad", Body=data, ContentMD5=content_md5(b"other"))
    assert_error(e, 400, "BadDigest")
    # Overwrite of an existing key with a bad digest must leave the old object.
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="good", Body=b"evil", ContentMD5=content_md5(b"other"))
    assert_error(e, 400, "BadDigest")
    assert get_bytes(s3, bucket, "good") == data
    assert list_state(s3, bucket) == [("good", f'"{md5_hex(data)}"', len(data))]


def test_upload_part_bad_content_md5(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part(
            Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"part",
            ContentMD5=content_md5(b"not the part"),
        )
    assert_error(e, 400, "BadDigest")
    assert s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id).get("Parts", []) == []
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id)


@pytest.mark.parametrize("algorithm", sorted(CHECKSUMS))
def test_checksum_algorithm_accepted(s3, bucket, algorithm):
    if algorithm == "CRC32C":
        pytest.importorskip("awscrt", reason="botocore needs awscrt for CRC32C")
    data = os.urandom(300_000)
    s3.put_object(Bucket=bucket, Key="ck", Body=data, ChecksumAlgorithm=algorithm)
    assert get_bytes(s3, bucket, "ck") == data


@pytest.mark.parametrize("algorithm", sorted(CHECKSUMS))
def test_checksum_header_correct_and_wrong(s3, bucket, algorithm):
    header, fn = CHECKSUMS[algorithm]
    param = "Checksum" + algorithm
    data = os.urandom(70_000)

    s3.put_object(Bucket=bucket, Key="ck", Body=data, **{param: fn(data)})
    assert get_bytes(s3, bucket, "ck") == data

    wrong = fn(data + b"!")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="new", Body=data, **{param: wrong})
    assert_error(e, 400, "BadDigest")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="ck", Body=b"replacement", **{param: wrong})
    assert_error(e, 400, "BadDigest")

    assert get_bytes(s3, bucket, "ck") == data
    assert list_state(s3, bucket) == [("ck", f'"{md5_hex(data)}"', len(data))]


def _aws_chunked(data: bytes, trailer_name: str, trailer_value: str, chunk: int = 64 * 1024) -> bytes:
    out = []
    for i in range(0, len(data), chunk):
        piece = data[i : i + chunk]
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
    out.append(b"0\r\n%s:%s\r\n\r\n" % (trailer_name.encode(), trailer_value.encode()))
    return b"".join(out)


def _put_trailer(node, bucket, key, data, algorithm, value):
    header, _ = CHECKSUMS[algorithm]
    body = _aws_chunked(data, header, value)
    return raw_request(
        node, "PUT", f"/{bucket}/{key}",
        headers={
            "Content-Encoding": "aws-chunked",
            "X-Amz-Decoded-Content-Length": str(len(data)),
            "X-Amz-Trailer": header,
            "X-Amz-Sdk-Checksum-Algorithm": algorithm,
            "Content-Length": str(len(body)),
        },
        body=body,
        payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    )


@pytest.mark.parametrize("algorithm", sorted(CHECKSUMS))
def test_checksum_trailer_correct_and_wrong(node, s3, bucket, algorithm):
    """aws-chunked body with the checksum in the trailer (what SDKs send over TLS)."""
    _, fn = CHECKSUMS[algorithm]
    data = os.urandom(200_000)  # several 64 KiB chunks plus a short one

    resp = _put_trailer(node, bucket, "tr", data, algorithm, fn(data))
    assert resp.status == 200, (resp.status, resp.body[:500])
    got = get_bytes(s3, bucket, "tr")
    assert len(got) == len(data)  # chunk framing must not leak into the object
    assert got == data
    assert s3.head_object(Bucket=bucket, Key="tr")["ETag"] == f'"{md5_hex(data)}"'

    resp = _put_trailer(node, bucket, "tr-bad", data, algorithm, fn(b"something else"))
    assert (resp.status, resp.code) == (400, "BadDigest"), resp.body[:500]
    resp = _put_trailer(node, bucket, "tr", b"replacement", algorithm, fn(b"something else"))
    assert (resp.status, resp.code) == (400, "BadDigest"), resp.body[:500]

    assert get_bytes(s3, bucket, "tr") == data
    assert [k for k, _, _ in list_state(s3, bucket)] == ["tr"]


def test_checksum_on_empty_body(s3, bucket):
    # The CRC32 of nothing is 0x00000000; an empty object must still verify.
    s3.put_object(Bucket=bucket, Key="e", Body=b"", ChecksumCRC32=b64(bytes(4)))
    assert get_bytes(s3, bucket, "e") == b""
