#!/usr/bin/env bash
# Installs the Debian packages the build needs, only when one is missing.
# liblmdb-dev and libmsgpack-dev are linked; pkg-config finds them; protobuf-compiler checks Schemas/.
set -euo pipefail
needed=(liblmdb-dev libmsgpack-dev pkg-config)
[ "${CARTRITA_WITH_PROTOC:-0}" = 1 ] && needed+=(protobuf-compiler)
# promtool (Debian's prometheus package) checks the server's /metrics output in the tests.
[ "${CARTRITA_WITH_PROMTOOL:-0}" = 1 ] && needed+=(prometheus)
# Debian's chromium renders the web debugger headless in Tools/debugger-e2e.
[ "${CARTRITA_WITH_CHROMIUM:-0}" = 1 ] && needed+=(chromium)
missing=()
for package in "${needed[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
