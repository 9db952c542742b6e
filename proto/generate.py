"""Generate the gRPC Python code in cluster/api/ from proto/.

Usage: python proto/generate.py [--check]

The proto file paths mirror the generated package (proto/cluster/api/v1/x.proto ->
cluster/api/v1/x_pb2.py), so plain protoc output imports correctly. With --check, the code is
generated into a temporary directory and compared with the committed files; a difference exits 1.
"""

from __future__ import annotations

import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_PACKAGE = Path("cluster/api/v1")


def generate(out_root: Path) -> list[Path]:
    """Run protoc for every .proto file; return the generated files relative to out_root."""
    protos = sorted(
        str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / OUT_PACKAGE).glob("*.proto")
    )
    include = str(Path(protoc.__file__).parent / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p.relative_to(out_root) for p in (out_root / OUT_PACKAGE).glob("*_pb2*"))


def main() -> int:
    if "--check" not in sys.argv[1:]:
        for rel in generate(ROOT):
            print(f"generated {rel}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        committed = sorted(p.relative_to(ROOT) for p in (ROOT / OUT_PACKAGE).glob("*_pb2*"))
        stale = [
            str(rel)
            for rel in fresh
            if not (ROOT / rel).exists() or not filecmp.cmp(Path(tmp) / rel, ROOT / rel, False)
        ]
        stale += [str(rel) for rel in committed if rel not in fresh]
    if stale:
        print("generated code is stale, run `python proto/generate.py`: " + ", ".join(stale))
        return 1
    print("generated code matches proto/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
