#!/usr/bin/env python3
"""Generate the protobuf and gRPC Python code under relstorage_paxos/pb/ from proto/.

The only producer of generated code (CONVENTIONS.md). ``proto/`` mirrors the package path, so
``proto/relstorage_paxos/pb/x.proto`` becomes ``relstorage_paxos/pb/x_pb2.py`` (plus
``x_pb2_grpc.py`` and ``x_pb2.pyi``) with absolute imports. ``--out DIR`` writes elsewhere
(the freshness test compares such a run with the committed files).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "relstorage_paxos" / "pb").mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).resolve().parent / "_proto"
    for proto in proto_files():
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            str(proto.relative_to(PROTO_ROOT)),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {proto}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--out", type=Path, default=ROOT, help="root to write the package tree into"
    )
    args = parser.parse_args(argv)
    generate(args.out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
