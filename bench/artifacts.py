"""Artifact costs: delta size vs full size, and publish / verify throughput vs ``sha256sum``.

    python bench/artifacts.py [--size-mib 1024] [--width 1024] [--layers 1000]

1. Delta: an MLP (4 layers of width² weights) and the same model with only its head layer
   retrained, published in full and as ``--delta-from``; bytes stored by each.
2. Hashing: SHA-256 of one ``--size-mib`` file by Baton's hasher and by ``sha256sum``, in the
   same run; then ``check_files`` (what the server runs before a load) and ``publish`` (copy +
   hash + manifest; the model load that records the signature is timed apart) on a version made
   of that file beside a small model.
3. Compile cache: creating an ONNX Runtime session for a deep, narrow model without the cache,
   on a miss, and on hits (the same version again; a weights-only update).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baton.artifacts.manifest import hash_file, read_manifest
from baton.artifacts.publish import publish
from baton.artifacts.verify import check_files
from baton.dev.demo import affine_model, mlp_model, with_new_head
from baton.runtimes.compile_cache import CompileCache
from baton.runtimes.onnx import OnnxRuntime
from baton.settings import ModelSettings
from bench.common import machine, stamp, table


def dir_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def delta_rows(tmp: Path, width: int) -> list[list[object]]:
    base = mlp_model(width=width, layers=4)
    (tmp / "v1.onnx").write_bytes(base.SerializeToString())
    (tmp / "v2.onnx").write_bytes(with_new_head(base, 7).SerializeToString())
    repo = tmp / "delta-repo"
    v1 = publish(tmp / "v1.onnx", repo, "m")
    full = publish(tmp / "v2.onnx", repo, "m")
    delta = publish(tmp / "v2.onnx", repo, "m", delta_from=int(v1.name))
    f, d = dir_bytes(full), dir_bytes(delta)
    name = f"MLP 4 layers of {width}x{width}, new head"
    return [[name, f"{f / 2**20:.2f} MiB", f"{d / 2**20:.2f} MiB", f"{1 - d / f:.1%}"]]


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def write_random(path: Path, size: int) -> None:
    block = os.urandom(16 * 2**20)
    with open(path, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())


def hashing_rows(tmp: Path, size_mib: int) -> list[list[object]]:
    source = tmp / "src"
    source.mkdir()
    onnx.save(affine_model(1.0), str(source / "model.onnx"))
    write_random(source / "weights.bin", size_mib * 2**20)
    data = source / "weights.bin"
    hash_file(data)  # warm the page cache, as a server verifying a just-written version would
    rows = []
    sha = timed(lambda: subprocess.run(["sha256sum", str(data)], check=True, capture_output=True))
    ours = timed(lambda: hash_file(data))
    version = publish(source, tmp / "repo", "big")
    declared = read_manifest(version).files
    verify = timed(lambda: check_files(version, declared))
    shutil.rmtree(version)
    publish_s = timed(lambda: publish(source, tmp / "repo", "big", version=1))
    mib = size_mib + (source / "model.onnx").stat().st_size / 2**20
    for name, seconds, amount in [
        ("sha256sum (coreutils)", sha, size_mib),
        ("Baton hash_file", ours, size_mib),
        ("verify before load (check_files)", verify, mib),
        ("baton publish (copy + hash + fsync + manifest)", publish_s, mib),
    ]:
        rows.append([name, f"{amount:,.0f} MiB", f"{seconds:.2f} s", f"{amount / seconds:,.0f}"])
    return rows


def cache_rows(tmp: Path, layers: int) -> list[list[object]]:
    """Session creation for a deep, narrow model (where graph optimisation is much of the load):
    without the cache, a miss, a reload hit, and a hit for a weights-only update."""
    base = mlp_model(width=32, layers=layers)
    v1, v2 = tmp / "c1", tmp / "c2"
    for directory, model in ((v1, base), (v2, with_new_head(base, 5))):
        directory.mkdir()
        onnx.save(model, str(directory / "model.onnx"))

    def load(directory: Path, cache: CompileCache | None) -> tuple[float, str | None]:
        runtime = OnnxRuntime(directory, ModelSettings(), cache)
        seconds = timed(runtime.load)
        runtime.unload()
        return seconds, runtime.compile_outcome

    rows = []
    plain = min(load(v1, None)[0] for _ in range(3))
    rows.append(["no cache", f"{plain * 1000:.0f} ms", "1.00"])
    for name, directory in (("miss (first load)", v1), ("hit, same version", v1),
                            ("hit, weights-only update", v2)):  # fmt: skip
        runs = []
        for _ in range(3):
            cache = CompileCache(tmp / f"cache-{name[:4]}")
            if name.startswith("hit"):
                load(v1, cache)  # the entry an earlier load left
            else:
                for entry in cache.directory.glob("*.onnx"):
                    entry.unlink()
            seconds, outcome = load(directory, cache)
            assert outcome == name.split()[0].strip(","), (name, outcome)
            runs.append(seconds)
        best = min(runs)
        rows.append([name, f"{best * 1000:.0f} ms", f"{plain / best:.2f}"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=1000, help="depth of the cache model")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as tmp:
        deltas = delta_rows(Path(tmp), args.width)
        hashes = hashing_rows(Path(tmp), args.size_mib)
        caches = cache_rows(Path(tmp), args.layers)
    print(f"# artifacts · {stamp()} · {machine()}")
    print(table(["model", "full version", "delta version", "saved"], deltas))
    print()
    print(table(["operation", "data", "time", "MiB/s"], hashes))
    print()
    print(f"session creation, MLP of {args.layers} layers 32 wide (best of 3)")
    print(table(["compile cache", "load", "speed-up"], caches))


if __name__ == "__main__":
    main()
