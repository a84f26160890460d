"""Cut ``.npz`` datasets into bundles that fit one device call, and put them back together there.

A call to the lent GPU machine carries at most 64 MiB (working tree included),
so the CIFAR-10 run's data (227 MB: train 57, train_extra 85, queries 57, test
28) travels in four calls. ``pack`` (here) splits each dataset's rows into
pieces, saved as compressed ``.npz`` (``x``, ``y``) and packed in dataset order
into numbered bundle folders of at most ``--limit-mb`` (the first smaller, to
leave room for the wheels), each with a ``manifest.json``. ``join`` (there)
copies what arrived and writes ``<dataset>.npz`` (uncompressed) for every
dataset whose pieces are all there: nothing is joined twice.

    python benchmarks/device/pack_data.py pack --out .devdata \\
        train=../shared/data/cifar10/train.npz train_extra=../shared/data/cifar10/train_extra.npz \\
        queries=../shared/data/tinyimagenet/queries.npz test=../shared/data/cifar10/test.npz
    # on the device, after each call:
    python benchmarks/device/pack_data.py join .devdata/* --pieces /tmp/kdcp/pieces --out /tmp/kdcp/data
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import numpy as np

MB = 1_000_000


def _load(path):
    with np.load(path) as data:
        return data["x"], data["y"]


def pack(sources: dict[str, str], out: str, limit_mb: float = 63.0, first_limit_mb: float = 55.0,
         margin: float = 0.97) -> list[dict]:
    """Split ``{name: path}`` into bundles ``out/1``, ``out/2``...; returns their manifests.

    Rows per piece are sized from each file's bytes per row (times ``margin``);
    a bundle that still comes out over its limit is an error.
    """
    os.makedirs(out, exist_ok=True)
    limits = lambda index: (first_limit_mb if index == 0 else limit_mb) * MB  # noqa: E731
    bundles: list[list[dict]] = [[]]
    used = 0.0
    for name, path in sources.items():
        x, y = _load(path)
        per_row = os.path.getsize(path) / max(1, len(x))
        start, piece = 0, 0
        while start < len(x):
            limit = limits(len(bundles) - 1)
            room = limit - used
            rows = int(room * margin / per_row)
            if rows < 1 or room < (1 - margin) * limit:  # full: no slivers of a few rows
                bundles.append([])
                used = 0.0
                continue
            stop = min(len(x), start + rows)
            folder = os.path.join(out, str(len(bundles)))
            os.makedirs(folder, exist_ok=True)
            file = f"{name}.part{piece:02d}.npz"
            np.savez_compressed(os.path.join(folder, file), x=x[start:stop], y=y[start:stop])
            size = os.path.getsize(os.path.join(folder, file))
            bundles[-1].append({"dataset": name, "piece": piece, "start": start, "stop": stop, "rows": len(x),
                                "file": file, "bytes": size})
            used += size
            start, piece = stop, piece + 1
        for entry in (e for bundle in bundles for e in bundle if e["dataset"] == name):
            entry["pieces"] = piece
    manifests = []
    for index, entries in enumerate(bundles):
        total = sum(e["bytes"] for e in entries)
        if total > limits(index):
            raise ValueError(f"bundle {index + 1} holds {total / MB:.1f} MB, over its {limits(index) / MB:.0f} MB")
        manifest = {"bundle": index + 1, "bytes": total, "pieces": entries}
        with open(os.path.join(out, str(index + 1), "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1)
        manifests.append(manifest)
    return manifests


def join(bundle_dirs: list[str], pieces_dir: str, out: str) -> dict[str, str]:
    """Stage the bundles' pieces into ``pieces_dir``; write each complete dataset to ``out/<name>.npz``.

    Returns ``{name: "joined" | "ready" | "k/n pieces"}``.
    """
    os.makedirs(pieces_dir, exist_ok=True)
    os.makedirs(out, exist_ok=True)
    for folder in bundle_dirs:
        manifest_path = os.path.join(folder, "manifest.json")
        if not os.path.exists(manifest_path):
            continue
        with open(manifest_path) as f:
            manifest = json.load(f)
        for entry in manifest["pieces"]:
            target = os.path.join(pieces_dir, entry["file"])
            if not os.path.exists(target):
                shutil.copy(os.path.join(folder, entry["file"]), target + ".tmp")
                os.replace(target + ".tmp", target)
                with open(target + ".json", "w") as f:
                    json.dump(entry, f)
    entries: dict[str, list[dict]] = {}
    for name in sorted(os.listdir(pieces_dir)):
        if name.endswith(".npz.json"):
            with open(os.path.join(pieces_dir, name)) as f:
                entry = json.load(f)
            entries.setdefault(entry["dataset"], []).append(entry)
    status = {}
    for dataset, found in entries.items():
        target = os.path.join(out, f"{dataset}.npz")
        if os.path.exists(target):
            status[dataset] = "ready"
            continue
        total = found[0]["pieces"]
        if len(found) < total:
            status[dataset] = f"{len(found)}/{total} pieces"
            continue
        found.sort(key=lambda e: e["piece"])
        parts = [_load(os.path.join(pieces_dir, e["file"])) for e in found]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        if len(x) != found[0]["rows"]:
            raise ValueError(f"{dataset}: joined {len(x)} rows, expected {found[0]['rows']}")
        with open(target + ".tmp", "wb") as f:
            np.savez(f, x=x, y=y)
        os.replace(target + ".tmp", target)
        status[dataset] = "joined"
    return status


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("sources", nargs="+", metavar="NAME=PATH")
    p.add_argument("--out", required=True)
    p.add_argument("--limit-mb", type=float, default=63.0)
    p.add_argument("--first-limit-mb", type=float, default=55.0)
    p = sub.add_parser("join")
    p.add_argument("bundles", nargs="*")
    p.add_argument("--pieces", required=True)
    p.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.command == "pack":
        sources = dict(item.split("=", 1) for item in args.sources)
        for manifest in pack(sources, args.out, args.limit_mb, args.first_limit_mb):
            names = ", ".join(f"{e['dataset']}[{e['start']}:{e['stop']}]" for e in manifest["pieces"])
            print(f"bundle {manifest['bundle']}: {manifest['bytes'] / MB:.1f} MB  {names}")
    else:
        print(json.dumps(join(args.bundles, args.pieces, args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
