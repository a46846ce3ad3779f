"""Fixtures for the Stacks S3 integration tests.

`node` is one real `stacks agent` shared by the whole session (started in a temp
dir on free loopback ports, torn down with SIGTERM/SIGKILL even if tests fail).
`node_factory` makes extra, independent nodes that stop when the test ends
(`module_node_factory`: when the module's tests end).
`bucket` is a fresh, uniquely named bucket per test, emptied and deleted after.

Binary: $STACKS_BIN, else <repo>/.build/debug/stacks.
"""

from __future__ import annotations

import atexit
import re
import uuid

import pytest

from s3util import empty_and_delete_bucket
from stacks_node import StacksNode, stacks_binary

_ALL_NODES: list[StacksNode] = []


def _kill_all() -> None:
    for n in _ALL_NODES:
        try:
            n.kill()
        except Exception:
            pass


atexit.register(_kill_all)  # belt and braces; fixtures normally stop nodes first


def _factory(tmp_path_factory):
    """A `make(name, ...)` that starts nodes, and the list of nodes it made."""
    binary = stacks_binary()
    if not binary.exists():
        pytest.fail(f"stacks binary not found at {binary}: build it first or set STACKS_BIN")
    made: list[StacksNode] = []

    def make(name: str = "node1", nested_depth: int = 0, start: bool = True, **gossip) -> StacksNode:
        root = tmp_path_factory.mktemp(f"stacks-{name}")
        data_dir = root.joinpath(*[f"jail{i}" for i in range(nested_depth)], name)
        n = StacksNode(root, name, data_dir=data_dir, **gossip)
        made.append(n)
        _ALL_NODES.append(n)
        if not start:
            return n
        try:
            n.start()
        except RuntimeError as e:
            pytest.fail(str(e), pytrace=False)
        return n

    return make, made


def _stop(made: list[StacksNode]) -> None:
    for n in made:
        n.stop()


# Nodes live as long as the scope that asked for them: a test's nodes stop when the test ends,
# so a later test does not share two cores with a finished test's cluster.
@pytest.fixture
def node_factory(tmp_path_factory):
    """Call `node_factory(name)` to get a started node; its nodes stop when the test ends."""
    make, made = _factory(tmp_path_factory)
    yield make
    _stop(made)


@pytest.fixture(scope="module")
def module_node_factory(tmp_path_factory):
    """`node_factory` for module-scoped fixtures: its nodes stop when the module's tests end."""
    make, made = _factory(tmp_path_factory)
    yield make
    _stop(made)


@pytest.fixture(scope="session")
def node(tmp_path_factory) -> StacksNode:
    # The data dir sits 4 directories below the node's temp root so that even a
    # server that (wrongly) resolves "../" in keys stays inside a dir we watch.
    make, made = _factory(tmp_path_factory)
    yield make("node1", nested_depth=4)
    _stop(made)


@pytest.fixture(scope="session")
def s3(node):
    return node.client()


def unique_bucket_name(hint: str = "") -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", hint.lower()).strip("-")[:30].strip("-")
    return f"t-{slug}-{uuid.uuid4().hex[:12]}" if slug else f"t-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def bucket(s3, request):
    name = unique_bucket_name(request.node.name)
    s3.create_bucket(Bucket=name)
    yield name
    empty_and_delete_bucket(s3, name)


@pytest.fixture
def make_bucket(s3, request):
    """Factory for additional buckets in one test (all cleaned up)."""
    names = []

    def make() -> str:
        name = unique_bucket_name(request.node.name)
        s3.create_bucket(Bucket=name)
        names.append(name)
        return name

    yield make
    for name in names:
        empty_and_delete_bucket(s3, name)
