"""Real-world S3 clients against a real Stacks node (and three: written through one node, read through another).

Proves that the aws CLI (high-level `aws s3` incl. its automatic multipart, and
low-level `aws s3api` incl. a hand-driven multipart upload) and s3cmd (SigV4,
path-style, incl. a 12 MiB multipart upload in 5 MiB chunks) can put, list, get
and delete objects with byte-exact results. Each client test is skipped with a
clear reason when its executable is not installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from s3util import MiB, md5_hex, multipart_etag, write_random_file

CLI_TIMEOUT = 300


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(MiB), b""):
            h.update(chunk)
    return h.hexdigest()


def run(cmd: list[str], env: dict[str, str], input: bytes | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd, env=env, input=input, capture_output=True, timeout=CLI_TIMEOUT,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"stdout:\n{proc.stdout.decode(errors='replace')[-3000:]}\n"
            f"stderr:\n{proc.stderr.decode(errors='replace')[-3000:]}"
        )
    return proc


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.pop("S3CMD_CONFIG", None)
    return env


# ------------------------------------------------------------------ aws CLI
@pytest.fixture
def reader(cluster):
    """The node reads go through: another than the one written through, on the 3-node run."""
    return cluster[1] if len(cluster) > 1 else cluster[0]


@pytest.fixture
def aws(node, reader, tmp_path):
    exe = shutil.which("aws")
    if not exe:
        pytest.skip("aws CLI executable not found on PATH (pip install awscli)")
    config = tmp_path / "aws-config"
    config.write_text(
        "[default]\n"
        f"region = {node.region}\n"
        "max_attempts = 1\n"
        "s3 =\n"
        "    addressing_style = path\n"
    )
    env = clean_env()
    env.update(
        AWS_ACCESS_KEY_ID=node.access_key,
        AWS_SECRET_ACCESS_KEY=node.secret_key,
        AWS_DEFAULT_REGION=node.region,
        AWS_CONFIG_FILE=str(config),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-such-credentials"),
        AWS_PAGER="",
    )

    def call(*args: str, via=node) -> subprocess.CompletedProcess:
        return run([exe, "--endpoint-url", via.endpoint, *args], env)

    def call_json(*args: str, via=node):
        out = call(*args, via=via).stdout
        return json.loads(out) if out.strip() else {}

    # Writes through `node`; `aws.read(...)` and `aws.read_json(...)` through `reader`.
    call.json = call_json
    call.read = lambda *args: call(*args, via=reader)
    call.read_json = lambda *args: call_json(*args, via=reader)
    return call


def test_aws_s3_cp_ls_rm(aws, s3, bucket, tmp_path):
    small, large = tmp_path / "small.bin", tmp_path / "large.bin"
    small_sha, _ = write_random_file(small, 100 * 1024)
    large_sha, _ = write_random_file(large, 20 * MiB)  # above the CLI's 8 MiB multipart threshold

    aws("s3", "cp", str(small), f"s3://{bucket}/dir/small.bin")
    aws("s3", "cp", str(large), f"s3://{bucket}/dir/large.bin")

    assert bucket in aws.read("s3", "ls").stdout.decode()
    listing = aws.read("s3", "ls", f"s3://{bucket}/dir/").stdout.decode()
    sizes = {line.split()[-1]: int(line.split()[-2]) for line in listing.splitlines() if line.strip()}
    assert sizes == {"small.bin": 100 * 1024, "large.bin": 20 * MiB}, listing
    assert "PRE dir/" in aws.read("s3", "ls", f"s3://{bucket}/").stdout.decode()

    assert s3.head_object(Bucket=bucket, Key="dir/large.bin")["ETag"].endswith('-3"')

    for name, sha in [("small.bin", small_sha), ("large.bin", large_sha)]:
        out = tmp_path / f"down-{name}"
        aws.read("s3", "cp", f"s3://{bucket}/dir/{name}", str(out))
        assert file_sha256(out) == sha, name

    aws("s3", "rm", f"s3://{bucket}/dir/small.bin")
    aws("s3", "rm", f"s3://{bucket}/dir/large.bin")
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []


def test_aws_s3api_object_roundtrip(aws, bucket, tmp_path):
    src = tmp_path / "obj.bin"
    sha, _ = write_random_file(src, 3 * MiB + 17)
    data_md5 = hashlib.md5(src.read_bytes()).hexdigest()

    put = aws.json(
        "s3api", "put-object", "--bucket", bucket, "--key", "api/obj.bin", "--body", str(src),
        "--content-type", "application/x-stacks", "--metadata", "owner=tests,kind=binary",
    )
    assert put["ETag"] == f'"{data_md5}"'

    head = aws.read_json("s3api", "head-object", "--bucket", bucket, "--key", "api/obj.bin")
    assert head["ContentLength"] == 3 * MiB + 17
    assert head["ETag"] == f'"{data_md5}"'
    assert head["ContentType"] == "application/x-stacks"
    assert head["Metadata"] == {"owner": "tests", "kind": "binary"}

    out = tmp_path / "obj.out"
    got = aws.read_json("s3api", "get-object", "--bucket", bucket, "--key", "api/obj.bin", str(out))
    assert got["ContentLength"] == 3 * MiB + 17
    assert file_sha256(out) == sha

    aws.json("s3api", "put-object", "--bucket", bucket, "--key", "api/other", "--body", str(src))
    aws.json("s3api", "put-object", "--bucket", bucket, "--key", "elsewhere", "--body", str(src))
    listed = aws.read_json("s3api", "list-objects-v2", "--bucket", bucket, "--prefix", "api/")
    assert [o["Key"] for o in listed["Contents"]] == ["api/obj.bin", "api/other"]
    assert all(o["Size"] == 3 * MiB + 17 for o in listed["Contents"])


def test_aws_s3api_multipart(aws, bucket, tmp_path):
    key = "api/multipart.bin"
    part1, part2 = tmp_path / "p1", tmp_path / "p2"
    write_random_file(part1, 5 * MiB)
    write_random_file(part2, 1 * MiB + 3)
    created = aws.json("s3api", "create-multipart-upload", "--bucket", bucket, "--key", key)
    upload_id = created["UploadId"]

    parts = []
    for number, path in [(1, part1), (2, part2)]:
        resp = aws.json(
            "s3api", "upload-part", "--bucket", bucket, "--key", key, "--upload-id", upload_id,
            "--part-number", str(number), "--body", str(path),
        )
        assert resp["ETag"] == f'"{md5_hex(path.read_bytes())}"'
        parts.append({"PartNumber": number, "ETag": resp["ETag"]})

    spec = tmp_path / "parts.json"
    spec.write_text(json.dumps({"Parts": parts}))
    done = aws.json(
        "s3api", "complete-multipart-upload", "--bucket", bucket, "--key", key,
        "--upload-id", upload_id, "--multipart-upload", f"file://{spec}",
    )
    want_etag = multipart_etag([md5_hex(part1.read_bytes()), md5_hex(part2.read_bytes())])
    assert done["ETag"] == f'"{want_etag}"'

    out = tmp_path / "mp.out"
    aws.read_json("s3api", "get-object", "--bucket", bucket, "--key", key, str(out))
    assert out.read_bytes() == part1.read_bytes() + part2.read_bytes()


# ------------------------------------------------------------------- s3cmd
@pytest.fixture
def s3cmd(node, reader, tmp_path):
    exe = shutil.which("s3cmd")
    if not exe:
        pytest.skip("s3cmd executable not found on PATH (apt-get install s3cmd)")
    host = urlsplit(node.endpoint).netloc
    cfg = tmp_path / "s3cmd.cfg"
    # Everything is also passed on the command line; the file only keeps s3cmd
    # from reading ~/.s3cfg or prompting.
    cfg.write_text(
        "[default]\n"
        f"access_key = {node.access_key}\n"
        f"secret_key = {node.secret_key}\n"
        f"host_base = {host}\n"
        f"host_bucket = {host}\n"
        f"bucket_location = {node.region}\n"
        "use_https = False\n"
        "signature_v2 = False\n"
    )
    env = clean_env()
    env["HOME"] = str(tmp_path)
    def common(via):
        h = urlsplit(via.endpoint).netloc
        return [exe, f"--config={cfg}", f"--host={h}", f"--host-bucket={h}", "--no-ssl",
                f"--access_key={node.access_key}", f"--secret_key={node.secret_key}", f"--region={node.region}"]

    def call(*args: str, via=node) -> subprocess.CompletedProcess:
        return run([*common(via), *args], env)

    # Writes through `node`; `s3cmd.read(...)` through `reader`.
    call.read = lambda *args: call(*args, via=reader)
    return call


def test_s3cmd_put_get_ls_del(s3cmd, s3, bucket, tmp_path):
    small, large = tmp_path / "small.bin", tmp_path / "large.bin"
    small_sha, _ = write_random_file(small, 64 * 1024 + 1)
    large_sha, _ = write_random_file(large, 12 * MiB)

    s3cmd("put", str(small), f"s3://{bucket}/s3cmd/small.bin")
    s3cmd("put", "--multipart-chunk-size-mb=5", str(large), f"s3://{bucket}/s3cmd/large.bin")

    head = s3.head_object(Bucket=bucket, Key="s3cmd/large.bin")
    assert head["ContentLength"] == 12 * MiB
    assert head["ETag"].endswith('-3"'), head["ETag"]  # 5 + 5 + 2 MiB
    assert s3.head_object(Bucket=bucket, Key="s3cmd/small.bin")["ETag"] == f'"{md5_hex(small.read_bytes())}"'

    listing = s3cmd.read("ls", f"s3://{bucket}/s3cmd/").stdout.decode()
    assert f"s3://{bucket}/s3cmd/small.bin" in listing, listing
    assert f"s3://{bucket}/s3cmd/large.bin" in listing, listing
    sizes = {line.split()[-1]: int(line.split()[-2]) for line in listing.splitlines() if "s3://" in line}
    assert sizes[f"s3://{bucket}/s3cmd/large.bin"] == 12 * MiB
    assert f"s3://{bucket}" in s3cmd.read("ls").stdout.decode()

    for name, sha in [("small.bin", small_sha), ("large.bin", large_sha)]:
        out = tmp_path / f"down-{name}"
        s3cmd.read("get", "--force", f"s3://{bucket}/s3cmd/{name}", str(out))
        assert file_sha256(out) == sha, name

    s3cmd("del", f"s3://{bucket}/s3cmd/small.bin")
    s3cmd("del", f"s3://{bucket}/s3cmd/large.bin")
    assert "s3://" not in s3cmd.read("ls", f"s3://{bucket}/s3cmd/").stdout.decode()
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []
