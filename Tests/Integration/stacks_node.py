"""Start, stop, kill -9 and restart a real `stacks agent` process for tests.

A StacksNode owns one data directory and one pair of loopback ports for its
whole life, so a restart comes back on the same endpoint with the same
credentials (the server keeps its key in the data dir).
"""

from __future__ import annotations

import ctypes
import base64
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import boto3
import requests
from botocore.config import Config

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / ".build" / "debug" / "stacks"
READY_TIMEOUT = float(os.environ.get("STACKS_READY_TIMEOUT", "60"))
STOP_TIMEOUT = 10.0
# One gossip key for every node a test session starts, unless a test asks for another.
SESSION_GOSSIP_KEY = base64.b64encode(os.urandom(32)).decode()
# Every secret the session's tests made (join token secrets, S3 secrets), for the last test to
# look for in every log the session's nodes wrote.
CREATED_SECRETS: set[str] = set()


def remember_secret(text: str) -> str:
    """Registers a token's secret part (the text after its last '-') or a secret as it is."""
    CREATED_SECRETS.add(text.rsplit("-", 1)[-1] if text.startswith("STKS1-") else text)
    return text


def stacks_binary() -> Path:
    return Path(os.environ.get("STACKS_BIN") or DEFAULT_BIN)


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (bind port 0, read it, release it)."""
    return _unused_port(socket.SOCK_STREAM)


def free_udp_port() -> int:
    """A currently free UDP port on 127.0.0.1."""
    return _unused_port(socket.SOCK_DGRAM)


_handed_out: set[int] = set()


def _unused_port(kind) -> int:
    """A port free now and never handed out before in this session: nodes created before any
    of them binds must not get the same port twice."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no unused port found")


def parse_env_file(path: Path) -> dict[str, str]:
    """Parse a shell-style KEY=value file (optional `export`, optional quotes)."""
    env: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[len("export "):].strip()
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def _die_with_parent() -> None:
    # Linux: SIGKILL the node if the pytest process dies (even by SIGKILL), so a
    # crashed test run never leaves a server behind. Note PDEATHSIG fires when
    # the *thread* that forked exits, so always start nodes from the main thread.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def s3_config(**overrides) -> Config:
    kw = dict(
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        retries={"total_max_attempts": 1},  # no retries at all (max_attempts counts retries)
        connect_timeout=10,
        read_timeout=180,
    )
    kw.update(overrides)
    return Config(**kw)


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format → {'name{labels}': value}; comments skipped."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            out[series] = float(value)
    return out


class StacksNode:
    # Every node by gossip address: a node started with seeds joins with a token made on one of them.
    _by_gossip: dict[str, "StacksNode"] = {}

    def __init__(self, root: Path, name: str = "node1", data_dir: Path | None = None,
                 seeds: list[str] | None = None, gossip_key: str | None = None, tags: dict[str, str] | None = None,
                 raft: dict[str, object] | None = None, data: dict[str, object] | None = None, wait_env: bool = True, s3: dict[str, object] | None = None,
                 join: tuple[str, str] | None = None):
        self.root = Path(root)
        self.name = name
        self.data_dir = Path(data_dir) if data_dir else self.root / name
        self.config_path = self.root / f"{name}.toml"
        self.s3_port = free_port()
        self.admin_port = free_port()
        while self.admin_port == self.s3_port:
            self.admin_port = free_port()
        self.metrics_port = free_port()
        while self.metrics_port in (self.s3_port, self.admin_port):
            self.metrics_port = free_port()
        self.gossip_port = free_udp_port()
        self.raft_port = free_port()
        self.data_port = free_port()
        while self.data_port in (self.s3_port, self.admin_port, self.metrics_port, self.raft_port):
            self.data_port = free_port()
        # Extra [raft] settings (bootstrap, voters, dead_voter_after).
        self.raft = raft or {}
        # Extra [data] settings (remove_after).
        self.data = data or {}
        # Extra [s3] settings (max_connections, idle_timeout).
        self.s3 = s3 or {}
        # A joining node writes its env file only once the cluster's state (and a key) reached it;
        # a node that can never join (wrong key) is ready without one.
        self.wait_env = wait_env
        self.seeds = seeds or []
        # "" starts with no gossip key: a founder makes one, a node with `join` (seed, token) receives it.
        self.gossip_key = SESSION_GOSSIP_KEY if gossip_key is None else gossip_key
        self.join = join
        self.tags = tags or {}
        self.log_path = self.data_dir / "stacks-test.log"
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}
        self.starts = 0
        StacksNode._by_gossip[self.gossip_address] = self
        self._write_config()

    # ----------------------------------------------------------------- config
    def _write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            "[node]\n"
            f'name = "{self.name}"\n'
            f'data_dir = "{self.data_dir}"\n'
            "\n[s3]\n"
            f'listen = "127.0.0.1:{self.s3_port}"\n'
            'region = "us-east-1"\n'
            + "".join(f"{k} = {v}\n" for k, v in self.s3.items())
            + "\n[gossip]\n"
            f'listen = "{self.gossip_address}"\n'
            f"seeds = [{', '.join(f'{chr(34)}{x}{chr(34)}' for x in self.seeds)}]\n"
            + (f'key = "{self.gossip_key}"\n' if self.gossip_key else "")
            + "\n[admin]\n"
            f'listen = "127.0.0.1:{self.admin_port}"\n'
            "\n[metrics]\n"
            f'listen = "127.0.0.1:{self.metrics_port}"\n'
            "\n[raft]\n"
            f'listen = "127.0.0.1:{self.raft_port}"\n'
            + "".join(f"{k} = {str(v).lower() if isinstance(v, bool) else v}\n" for k, v in self.raft.items())
            + "\n[data]\n"
            f'listen = "127.0.0.1:{self.data_port}"\n'
            + "".join(f"{k} = {v}\n" for k, v in self.data.items())
            + (f'\n[join]\nseed = "{self.join[0]}"\ntoken = "{self.join[1]}"\n' if self.join else "")
            + ("\n[tags]\n" + "".join(f'{k} = "{v}"\n' for k, v in self.tags.items()) if self.tags else "")
        )

    def metrics(self) -> dict[str, float]:
        """One scrape of the node's `GET /metrics`: series (name with labels) → value."""
        return parse_metrics(self.metrics_text())

    def metrics_text(self) -> str:
        r = requests.get(self.env["STACKS_METRICS_URL"], timeout=10)
        r.raise_for_status()
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers["Content-Type"]
        return r.text

    @property
    def gossip_address(self) -> str:
        return f"127.0.0.1:{self.gossip_port}"

    @property
    def data_address(self) -> str:
        """Its data connection's address: what `stacks status` shows as `address`, a join seed."""
        return f"127.0.0.1:{self.data_port}"

    @property
    def env_path(self) -> Path:
        return self.data_dir / "env"

    @property
    def endpoint(self) -> str:
        return self.env["STACKS_S3_ENDPOINT"].rstrip("/")

    def _keys(self) -> dict[str, str]:
        """The admin S3 key: in the founder's env only (a node that joined with a token keeps no
        S3 secret in its env), so a joined node's is the one of the node it joined through."""
        if "AWS_ACCESS_KEY_ID" in self.env or self.join is None:
            return self.env
        seed = next((n for n in StacksNode._by_gossip.values() if n is not self and n.data_address == self.join[0]), None)
        return seed._keys() if seed is not None else self.env

    @property
    def access_key(self) -> str:
        return self._keys()["AWS_ACCESS_KEY_ID"]

    @property
    def secret_key(self) -> str:
        return self._keys()["AWS_SECRET_ACCESS_KEY"]

    @property
    def region(self) -> str:
        return self.env.get("AWS_DEFAULT_REGION", "us-east-1")

    def primary_gossip_key(self) -> str:
        """The key the node seals gossip with now (first line of DATA_DIR/keyring)."""
        return (self.data_dir / "keyring").read_text().split()[0]

    @property
    def has_credential(self) -> bool:
        return (self.data_dir / "identity" / "node.cred").exists()

    def _enrol_as_users_do(self) -> None:
        """A node left on the session's shared key takes the user's path instead: without seeds it
        founds a cluster with its own keys; with seeds it joins with a token made on a running seed
        that holds a credential (as `tools/dev up` does). Seeds of the shared-key kind stay so."""
        if self.join is not None or self.gossip_key != SESSION_GOSSIP_KEY or self.has_credential:
            return
        if not self.seeds:
            self.gossip_key = ""
        else:
            seed = next((n for n in map(StacksNode._by_gossip.get, self.seeds)
                         if n is not None and n.is_running() and n.has_credential), None)
            if seed is None:
                return
            out = subprocess.run([str(stacks_binary()), "token", "create", "--data-dir", str(seed.data_dir), "--ttl", "1h"],
                                 capture_output=True, text=True, timeout=60)
            if out.returncode != 0:
                raise RuntimeError(f"cannot make a join token on {seed.name}: {out.stderr}")
            self.join = (seed.data_address, remember_secret(out.stdout.strip().splitlines()[-1]))
            self.gossip_key = ""
        self._write_config()

    # -------------------------------------------------------------- lifecycle
    def start(self, timeout: float = READY_TIMEOUT) -> None:
        binary = stacks_binary()
        if not binary.exists():
            raise RuntimeError(
                f"stacks binary not found at {binary}; build it (swift build) or set STACKS_BIN"
            )
        assert self.proc is None or self.proc.poll() is not None, "node already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.starts == 0:
            self._enrol_as_users_do()
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== test harness: start #{self.starts} at {time.ctime()} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [str(binary), "agent", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(self.root),
                preexec_fn=_die_with_parent,
            )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Ready = env file exists and the S3 endpoint answers HTTP (any status)."""
        deadline = time.monotonic() + timeout
        last_err: object = "env file never appeared"
        while time.monotonic() < deadline:
            rc = self.proc.poll() if self.proc else None
            if rc is not None:
                raise RuntimeError(
                    f"stacks exited with code {rc} before becoming ready\n{self.log_tail()}"
                )
            if not self.wait_env and (self.data_dir / "admin").exists():
                try:
                    requests.get(f"http://127.0.0.1:{self.s3_port}/", timeout=2)
                    return
                except (OSError, requests.RequestException) as e:
                    last_err = e
            elif self.env_path.exists() and (self.data_dir / "admin").exists():
                try:
                    env = parse_env_file(self.env_path)
                    endpoint = env["STACKS_S3_ENDPOINT"]
                    requests.get(endpoint, timeout=2)
                    self.env = env
                    if env.get("AWS_SECRET_ACCESS_KEY"):
                        remember_secret(env["AWS_SECRET_ACCESS_KEY"])
                    return
                except (KeyError, OSError, requests.RequestException) as e:
                    last_err = e
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(
            f"stacks not ready after {timeout:.0f}s (last error: {last_err!r})\n{self.log_tail()}"
        )

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9 and reap."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within STOP_TIMEOUT."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()

    def restart(self, timeout: float = READY_TIMEOUT) -> None:
        """kill -9 the node and start it again on the same data dir and ports."""
        self.kill()
        self.start(timeout)

    # ---------------------------------------------------------------- helpers
    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_bytes().decode(errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path} ---\n{tail}\n--- end of log ---"

    def client(self, access_key: str | None = None, secret_key: str | None = None, **config):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=self.region,
            config=s3_config(**config),
        )
