#!/usr/bin/env bash
# Installs, idempotently, what building and testing need beyond a Rust
# toolchain:
#  * libclang (bindgen for the rocksdb crate) and a C/C++ toolchain with
#    make (rocksdb and librdkafka compile from source);
#  * OpenSSL's headers and pkg-config (librdkafka's TLS and SASL/SCRAM);
#  * for the tests: openssl (the TLS test makes its certificate authority),
#    stunnel4 (the TLS terminator in front of the test broker), prometheus
#    (promtool checks the alert rules; a real Prometheus evaluates them),
#    python3 (reads the test broker's storage), chromium (the console's
#    browser tests drive it headless);
#  * with --broker: the tansu broker (a Kafka-compatible broker from
#    crates.io) that the integration tests run; its build takes about 10
#    minutes once.
set -euo pipefail
with_broker=0
[ "${1:-}" = "--broker" ] && with_broker=1

missing=()
dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v stunnel4 >/dev/null 2>&1 || command -v stunnel >/dev/null 2>&1 || missing+=(stunnel4)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -qq "${missing[@]}" || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}"; }
fi

if [ "$with_broker" = 1 ] && ! "$HOME/.cargo/bin/tansu" --version >/dev/null 2>&1 && ! tansu --version >/dev/null 2>&1; then
    echo "== installing the tansu broker (once, about 10 minutes)"
    cargo install tansu --locked --version 0.6.0 --features dynostore,libsql
fi
