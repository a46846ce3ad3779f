"""The session's last test (files run in name order): every join token secret and S3 secret the
suite's tests made is looked for in every line the session's nodes logged, and in `stacks status`
of every node still running. None may be there: they belong only in the output of `token create`
and `key create` (and the founder's first start, which shows its new admin key once, as `minio`
shows its root credentials), in `credentials`, `identity/` and the founder's `env`."""
from __future__ import annotations

import json
import re

import pytest

from conftest import _ALL_NODES
from stacks_node import CREATED_SECRETS, StacksNode


LOGGED = re.compile(r"^\d{4}-\d\d-\d\dT")


def test_no_secret_the_suite_made_is_in_any_log():
    nodes = {id(n): n for n in list(_ALL_NODES) + list(StacksNode._by_gossip.values())}.values()
    logs = [n.log_path for n in nodes if n.log_path.exists()]
    if not CREATED_SECRETS or not logs:
        pytest.skip("this session made no secrets (run with the rest of the suite)")
    found = []
    for path in logs:
        # The logger's lines (they open with their time); the agent's one-time announcement is not one.
        text = "\n".join(line for line in path.read_text(errors="replace").splitlines() if LOGGED.match(line))
        found += [(str(path), s[:6] + "…") for s in CREATED_SECRETS if s in text]
    assert not found, f"secrets in logs: {found[:10]}"
    print(f"{len(CREATED_SECRETS)} secrets looked for in {len(logs)} node logs: none found")
    from test_raft import status
    for n in nodes:
        if n.is_running():
            text = json.dumps(status(n)[1])
            assert not [s for s in CREATED_SECRETS if s in text], n.name
