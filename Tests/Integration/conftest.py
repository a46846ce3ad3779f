"""Fixtures for the Stacks S3 integration tests.

`node` is one real `stacks agent` shared by the whole session (started in a temp
dir on free loopback ports, torn down with SIGTERM/SIGKILL even if tests fail). Every test
that asks for `node` or `s3` runs twice: against that one node, and against a three-node
cluster (2+1) where `node` is its first node and `s3` writes through it and reads through the
second, so each S3 behaviour also holds for objects spread over the cluster.
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


class RoutedClient:
    """A boto3 client whose reads (get_*, head_*, list_*, downloads, paginators) go to one node
    and everything else to another: written through one, read back through the other."""

    READS = ("get_", "head_", "list_", "download_")

    def __init__(self, writer, reader):
        self._writer, self._reader = writer, reader

    def __getattr__(self, name):
        reads = name.startswith(self.READS) and name != "get_bucket_policy"
        return getattr(self._reader if reads else self._writer, name)


@pytest.fixture(scope="session", params=["one-node", "three-nodes"])
def cluster(request, tmp_path_factory) -> list[StacksNode]:
    """The nodes S3 tests run against: one, or three spreading objects at 2+1."""
    make, made = _factory(tmp_path_factory)
    # The data dir sits 4 directories below the node's temp root so that even a
    # server that (wrongly) resolves "../" in keys stays inside a dir we watch.
    first = make("node1", nested_depth=4)
    nodes = [first]
    if request.param == "three-nodes":
        from test_layout import same_layout_everywhere
        from test_raft import healthy_with, wait_for
        nodes += [make(f"node{i}", nested_depth=4, start=False, seeds=[first.gossip_address]) for i in (2, 3)]
        for n in nodes[1:]:
            n.start()
        wait_for("3 voters", healthy_with(nodes, 3), 90)
        wait_for("three nodes in the layout at 2+1",
                 same_layout_everywhere(nodes, lambda v: len(v["members"]) == 3 and v["scheme"] == "2+1"), 60)
    yield nodes
    _stop(made)


@pytest.fixture(scope="session")
def node(cluster) -> StacksNode:
    return cluster[0]


@pytest.fixture(scope="session")
def s3(cluster):
    return cluster[0].client() if len(cluster) == 1 else RoutedClient(cluster[0].client(), cluster[1].client())


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
