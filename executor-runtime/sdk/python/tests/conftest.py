"""Fixtures of the SDK's integration tests: a Kafka (the embedded kfake, and the real broker of
MILLRACE_KAFKA_BOOTSTRAP), entities' executor.json files, and pods of real processes: the
millrace-io and millrace-state binaries (MILLRACE_BIN_DIR, built by hack/python.sh) and the Python
function under test."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
FUNCTIONS = HERE / "functions"


def bin_dir() -> Path:
    d = os.environ.get("MILLRACE_BIN_DIR")
    if not d:
        pytest.fail("MILLRACE_BIN_DIR is not set: run the tests with hack/python.sh test", pytrace=False)
    return Path(d)


def b64(v: Any) -> str:
    if isinstance(v, str):
        v = v.encode()
    return base64.b64encode(v).decode()


class Kafka:
    """A Kafka driven through the testkafka helper."""

    def __init__(self, tier: str, bootstrap: str = "") -> None:
        self.tier = tier
        args = [str(bin_dir() / "testkafka")] + (["--bootstrap", bootstrap] if bootstrap else [])
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lock = threading.Lock()
        self.bootstrap = self._line()["bootstrap"]
        # Unique names on a shared real broker.
        self.prefix = f"py{time.time_ns() % 1_000_000_000}-" if bootstrap else ""
        self.n = 0

    def _line(self) -> Dict[str, Any]:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError("testkafka exited")
        return json.loads(line)

    def call(self, **req: Any) -> Dict[str, Any]:
        with self.lock:
            self.proc.stdin.write(json.dumps(req) + "\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
            res = self._line()
        if res.get("error"):
            raise RuntimeError(f"testkafka {req['op']}: {res['error']}")
        return res

    def name(self, base: str) -> str:
        self.n += 1
        return f"{self.prefix}{base}{self.n}"

    def create(self, topics: List[str], partitions: int, compact: bool = False) -> None:
        self.call(op="create", topics=topics, partitions=partitions, compact=compact)

    def produce(self, topic: str, records: List[tuple]) -> None:
        """records: (key, value) or (key, value, partition)."""
        recs = [{"key": b64(r[0]), "value": b64(r[1]), "partition": r[2] if len(r) > 2 else -1} for r in records]
        self.call(op="produce", topic=topic, records=recs)

    def read(self, topic: str, committed: bool = True) -> List[Dict[str, Any]]:
        out = []
        for r in self.call(op="read", topic=topic, committed=committed).get("records") or []:
            out.append({
                "partition": r["partition"], "offset": r["offset"],
                "key": base64.b64decode(r.get("key") or ""), "value": base64.b64decode(r.get("value") or ""),
                "headers": {h["key"]: base64.b64decode(h.get("value") or "") for h in r.get("headers") or []},
            })
        return out

    def offsets(self, group: str) -> Dict[str, Dict[str, int]]:
        return self.call(op="offsets", group=group).get("offsets") or {}

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait(timeout=30)


@pytest.fixture(scope="session", params=["kfake", "real"])
def kafka(request: pytest.FixtureRequest):
    if request.param == "real":
        bs = os.environ.get("MILLRACE_KAFKA_BOOTSTRAP", "")
        if not bs:
            pytest.skip("MILLRACE_KAFKA_BOOTSTRAP is not set: start a broker with `hack/kafka.sh start` and export the address it prints to run the real-broker tier")
        k = Kafka("real", bs)
    else:
        k = Kafka("kfake")
    yield k
    k.close()


def wait_for(what: str, cond: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Entity:
    """An entity's executor.json, laid out like a mounted ConfigMap (a ..data symlink swap on
    every change), with its topics created."""

    def __init__(self, kafka: Kafka, name: str, inputs: List[str], outputs: List[str], partitions: int = 4,
                 stateful: bool = False, guarantee: str = "AtLeastOnce", user_config: Optional[Dict[str, str]] = None,
                 max_batch: int = 100) -> None:
        # Unix socket paths are limited to about 100 bytes: a short folder.
        self.dir = Path(tempfile.mkdtemp(prefix="mrpy-", dir="/tmp"))
        self.kafka = kafka
        group = kafka.prefix + "test.py." + name + str(time.time_ns() % 1_000_000)
        self.config: Dict[str, Any] = {
            "apiVersion": "executor.millrace.dev/v1", "namespace": "test", "pipeline": "py", "entity": name,
            "kafka": {"bootstrapServers": kafka.bootstrap.split(",")},
            "inputs": [{"stream": t, "topic": t, "partitions": partitions, "deadLetterTopic": t + ".dlq"} for t in inputs],
            "outputs": [{"stream": t, "topic": t} for t in outputs],
            "groupID": group, "transactionalIDPrefix": group, "guarantee": guarantee,
            "assignment": {"mode": "Group"},
            "runtime": {"socketDir": str(self.dir), "metricsPort": 1, "stateMetricsPort": 1,
                        "maxBatchRecords": max_batch, "maxInFlightBatches": 4, "commitInterval": "100ms"},
        }
        if user_config:
            self.config["userConfig"] = user_config
        topics = inputs + [t + ".dlq" for t in inputs] + outputs
        if stateful:
            self.config["state"] = {"changelogTopic": group + ".changelog", "backend": "memory"}
            kafka.create([group + ".changelog"], partitions, compact=True)
        kafka.create(topics, partitions)
        self.path = self.dir / "executor.json"
        self.write()

    @property
    def group(self) -> str:
        return self.config["groupID"]

    def write(self) -> None:
        ts = self.dir / f"..{time.time_ns()}"
        ts.mkdir()
        (ts / "executor.json").write_text(json.dumps(self.config))
        tmp = self.dir / "..data_tmp"
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(ts.name)
        os.replace(tmp, self.dir / "..data")
        if not self.path.is_symlink():
            self.path.symlink_to(Path("..data") / "executor.json")

    def update(self, change: Callable[[Dict[str, Any]], None]) -> None:
        change(self.config)
        self.write()


class Process:
    """One container of a pod, as a child process logging to a file."""

    def __init__(self, name: str, argv: List[str], env: Dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log_file, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 40.0) -> int:
        """SIGTERM, then the exit status (negative: killed by that signal)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.name} did not exit within {timeout}s of SIGTERM")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log_file.close()


def function_argv(spec: str) -> List[str]:
    """"wordcount:sum" runs millrace.examples.wordcount sum; "functions/x.py" runs a test function."""
    if spec.endswith(".py"):
        return [sys.executable, str(HERE / spec)]
    module, _, arg = spec.partition(":")
    return [sys.executable, "-m", f"millrace.examples.{module}"] + ([arg] if arg else [])


class Pod:
    """The containers of one executor pod: state sidecar, the Python function, I/O sidecar."""

    def __init__(self, entity: Entity, function: str, ordinal: int = 0, env: Optional[Dict[str, str]] = None) -> None:
        self.entity = entity
        self.dir = entity.dir / f"pod{ordinal}"
        self.dir.mkdir(exist_ok=True)
        base = dict(os.environ, MILLRACE_ORDINAL=str(ordinal), PYTHONPATH=str(SRC), PYTHONUNBUFFERED="1")
        base.update(env or {})
        cfg = str(entity.path)
        b = bin_dir()
        self.state: Optional[Process] = None
        if "state" in entity.config:
            self.state = Process("state", [str(b / "millrace-state"), "--config", cfg, "--socket-dir", str(self.dir), "--metrics-addr", "-"], base, self.dir)
            wait_for("the state socket", lambda: (self.dir / "state.sock").exists(), 20)
        fenv = dict(base, MILLRACE_FUNCTION_SOCKET=str(self.dir / "function.sock"))
        self.function = Process("function", function_argv(function), fenv, self.dir)
        wait_for("the function socket", lambda: (self.dir / "function.sock").exists(), 20)
        self.io = Process("io", [str(b / "millrace-io"), "--config", cfg, "--socket-dir", str(self.dir), "--metrics-addr", "-"], base, self.dir)

    def stop(self) -> Dict[str, int]:
        """Stop in the kubelet's order: the function, then the I/O sidecar, then the state sidecar."""
        codes = {"function": self.function.terminate(), "io": self.io.terminate()}
        if self.state is not None:
            codes["state"] = self.state.terminate()
        return codes

    def kill(self) -> None:
        for p in (self.function, self.io, self.state):
            if p is not None:
                p.kill()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log()}" for p in (self.function, self.io, self.state) if p is not None)


@pytest.fixture
def pods(request: pytest.FixtureRequest):
    """Starts pods and kills what is left at the end, printing the logs of a failed test."""
    started: List[Pod] = []

    def start(entity: Entity, function: str, **kw: Any) -> Pod:
        p = Pod(entity, function, **kw)
        started.append(p)
        return p

    yield start
    failed = getattr(request.node, "rep_call", None)
    for p in started:
        p.kill()
        if failed is not None and failed.failed:
            print(p.logs())
        shutil.rmtree(p.entity.dir, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
