"""The committed protocol stubs are those of the pinned generator (hack/tools.sh), and the
package's runtime requirements admit them (make verify regenerates them and fails on a diff)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
PROTO = ROOT / "executor-runtime" / "sdk" / "python" / "src" / "millrace" / "_proto"


def pinned_grpcio_tools() -> str:
    m = re.search(r"^\s+\[protoc\]=(\S+)$", (ROOT / "hack" / "tools.sh").read_text(), re.M)
    assert m, "hack/tools.sh pins no protoc"
    return m.group(1)


def test_grpc_stubs_name_the_pinned_grpcio_tools():
    for f in PROTO.glob("*/v1/*_pb2_grpc.py"):
        assert f"GRPC_GENERATED_VERSION = '{pinned_grpcio_tools()}'" in f.read_text(), f


def test_the_runtime_requirements_admit_the_generated_code():
    pyproject = (ROOT / "executor-runtime" / "sdk" / "python" / "pyproject.toml").read_text()
    assert f'"grpcio>={pinned_grpcio_tools()},<2"' in pyproject
    for f in PROTO.glob("*/v1/*_pb2.py"):
        m = re.search(r"^# Protobuf Python Version: (\d+)\.(\d+)\.(\d+)$", f.read_text(), re.M)
        assert m, f
        major = int(m.group(1))
        assert f'"protobuf>={m.group(1)}.{m.group(2)}.{m.group(3)},<{major + 1}"' in pyproject, f

