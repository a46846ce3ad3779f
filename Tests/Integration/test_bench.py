"""`stacks bench s3`, the built-in S3 load generator, run against real nodes (one, and three at 2+1)."""

from __future__ import annotations

import json
import subprocess

import pytest
from botocore.exceptions import ClientError

from conftest import unique_bucket_name
from stacks_node import stacks_binary


def bench(node, *args: str, secret: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "AWS_ENDPOINT_URL": node.endpoint, "AWS_ACCESS_KEY_ID": node.access_key,
           "AWS_SECRET_ACCESS_KEY": secret or node.secret_key}
    return subprocess.run([str(stacks_binary()), "bench", "s3", *args], env=env, capture_output=True, text=True, timeout=timeout)


def summary(r: subprocess.CompletedProcess) -> dict:
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("workload,ops", [("put", {"PUT"}), ("get", {"GET"}), ("mixed", {"PUT", "GET", "HEAD", "DELETE"}), ("list", {"LIST"})])
def test_each_workload_runs_clean_and_leaves_nothing(cluster, s3, workload, ops):
    name = unique_bucket_name(f"bench-{workload}")
    pids = ",".join(str(n.proc.pid) for n in cluster)
    r = bench(cluster[-1], "--workload", workload, "--bucket", name, "--size", "16KiB", "--concurrency", "4",
              "--objects", "40", "--duration", "1500ms", "--server-pids", pids)
    s = summary(r)
    assert s["workload"] == workload and s["concurrency"] == 4 and s["object_size"] == 16384
    assert {o["op"] for o in s["operations"]} == ops, s
    assert s["total"]["errors"] == 0 and s["error_kinds"] == {}, s
    for o in s["operations"]:
        assert o["count"] > 0 and o["ops_per_s"] > 0 and 0 < o["p50_ms"] <= o["p99_ms"] <= o["max_ms"], o
    if workload in ("put", "get"):
        assert s["total"]["mib_per_s"] > 0
    assert s["server_cpu_ms_per_op"] > 0
    assert "ops/s" in r.stderr and "errors" in r.stderr, "a progress line and the table go to stderr"
    # The run made the bucket, so it removed it with everything it wrote.
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=name)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_an_existing_bucket_keeps_its_own_objects(cluster, s3, bucket):
    s3.put_object(Bucket=bucket, Key="mine", Body=b"keep me")
    s = summary(bench(cluster[0], "--workload", "put", "--bucket", bucket, "--concurrency", "2", "--objects", "10",
                      "--requests", "30", "--duration", "30s", "--seed", "7"))
    assert s["total"]["count"] == 30, "--requests caps the timed operations"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["mine"], "the bench deletes what it wrote and nothing else"
    assert s3.get_object(Bucket=bucket, Key="mine")["Body"].read() == b"keep me"
    s = summary(bench(cluster[0], "--workload", "put", "--bucket", bucket, "--objects", "5", "--requests", "5", "--keep", "--seed", "8"))
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert len(keys) == 6 and all(k.startswith("stacks-bench-8/") for k in keys if k != "mine"), keys


def test_bad_keys_and_arguments_are_refused_clearly(cluster, s3):
    name = unique_bucket_name("bench-refused")
    r = bench(cluster[0], "--bucket", name, "--duration", "1s", secret="wrong")
    assert r.returncode != 0 and "HTTP 403" in r.stderr, r.stderr
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket=name)
    for args, words in [(["--concurrency", "0"], "concurrency"), (["--size", "3GiB"], "size"), (["--duration", "2h"], "duration"),
                        (["--workload", "scan"], "workload"), (["--endpoint", "https://127.0.0.1:1"], "http://")]:
        r = bench(cluster[0], *args)
        assert r.returncode != 0 and words in r.stderr and not r.stdout, (args, r.stderr)
