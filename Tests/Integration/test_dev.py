"""`tools/dev up --nodes 5`, the path the README gives: node1 founds the cluster, the other four
join with a token node1 makes, and S3 works through every node with `stacks status` healthy."""
import json
import os
import subprocess
import uuid

import boto3

from stacks_node import REPO_ROOT, parse_env_file, s3_config, stacks_binary

# Below the ephemeral range; S3 on 29600-29604, the other ports 20000 above tools/dev's defaults.
PORT, OFFSET = 29600, 20000


def test_tools_dev_up_joins_four_nodes_with_a_token(tmp_path):
    env = dict(os.environ, STACKS_DEV_DIR=str(tmp_path / "dev"), STACKS_DEV_PORT=str(PORT), STACKS_DEV_OFFSET=str(OFFSET),
               STACKS_DEV_BIN=str(stacks_binary()))
    dev = [str(REPO_ROOT / "tools" / "dev")]
    try:
        up = subprocess.run(dev + ["up", "--nodes", "5"], env=env, capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "health: ok" in up.stdout, up.stdout
        joins = subprocess.run([str(stacks_binary()), "token", "list", "--joins", "--format", "json", "--data-dir", str(tmp_path / "dev" / "node1")],
                               capture_output=True, text=True, timeout=30)
        assert sorted(j["node"] for j in json.loads(joins.stdout)) == ["node2", "node3", "node4", "node5"]
        keys = parse_env_file(tmp_path / "dev" / "env")
        clients = [boto3.client("s3", endpoint_url=f"http://127.0.0.1:{PORT + i}", aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
                                aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1", config=s3_config()) for i in range(5)]
        bucket = f"dev-{uuid.uuid4().hex[:8]}"
        clients[0].create_bucket(Bucket=bucket)
        for i, c in enumerate(clients):
            c.put_object(Bucket=bucket, Key=f"k{i}", Body=bytes([i]) * 70000)
        for i in range(5):
            assert clients[(i + 2) % 5].get_object(Bucket=bucket, Key=f"k{i}")["Body"].read() == bytes([i]) * 70000
        for i in range(1, 6):
            st = subprocess.run([str(stacks_binary()), "status", "--data-dir", str(tmp_path / "dev" / f"node{i}")], capture_output=True, text=True, timeout=30)
            assert st.returncode == 0 and "health: ok" in st.stdout, st.stdout
    finally:
        subprocess.run(dev + ["down"], env=env, capture_output=True, timeout=60)
