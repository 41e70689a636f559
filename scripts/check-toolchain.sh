#!/usr/bin/env bash
# Checks that the Rust versions the project states are true to its
# lockfile: Cargo.toml's `rust-version` is at least the highest
# `rust-version` of any locked dependency, and the Dockerfile's build image
# (`FROM rust:X.Y…`) is at least Cargo.toml's. Run by scripts/test.sh; the
# image itself cannot be built where Docker cannot run, this is the part of
# it that can be checked anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --locked --format-version 1 | python3 -c '
import json, re, sys

def v(s):
    return tuple(int(x) for x in s.split("."))

def show(t):
    return ".".join(map(str, t))

meta = json.load(sys.stdin)
root = {p["id"] for p in meta["packages"] if p["source"] is None}
deps = [(v(p["rust_version"]), p["name"] + " " + p["version"])
        for p in meta["packages"]
        if p.get("rust_version") and p["id"] not in root]
need, who = max(deps)
own = [v(p["rust_version"]) for p in meta["packages"] if p["id"] in root and p.get("rust_version")]
if not own:
    sys.exit("Cargo.toml states no rust-version")
docker = open("Dockerfile").read()
m = re.search(r"^FROM rust:(\d+\.\d+(?:\.\d+)?)", docker, re.M)
if not m:
    sys.exit("the Dockerfile does not build FROM rust:X.Y")
image = v(m.group(1))
print(f"highest dependency rust-version: {show(need)} ({who}); Cargo.toml: {show(own[0])}; Dockerfile image: rust:{m.group(1)}")
ok = True
if own[0] < need:
    print(f"error: Cargo.toml rust-version {show(own[0])} is below {who}'"'"'s {show(need)}")
    ok = False
if image < own[0]:
    print(f"error: the Dockerfile builds with rust:{m.group(1)}, below Cargo.toml'"'"'s rust-version {show(own[0])}")
    ok = False
sys.exit(0 if ok else 1)
'
