#!/usr/bin/env bash
# Validate openapi.yaml against the OpenAPI 3.1 specification with openapi-spec-validator
# (PyPI), offline. The suites check every response they see against the same document
# (tests/common/openapi.rs); this checks the document itself.
#
# The validator lives in a venv at target/openapi-venv (created on first run, reused after).
# Needs python3 with venv support; on Debian the python3-venv package is installed with apt-get
# when it is missing.
set -euo pipefail

# Pinned: bump deliberately.
VALIDATOR_VERSION="0.9.0"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv="target/openapi-venv"
wanted="openapi-spec-validator==$VALIDATOR_VERSION"

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    echo "lint-openapi: python3 has no venv support; installing python3-venv" >&2
    if [[ "$(id -u)" -eq 0 ]]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
if ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$venv"
    mkdir -p target
    python3 -m venv "$venv"
fi
if [[ "$(cat "$venv/.tools" 2>/dev/null || true)" != "$wanted" ]]; then
    echo "lint-openapi: installing $wanted into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wanted"
    echo "$wanted" >"$venv/.tools"
fi

echo "== openapi-spec-validator: openapi.yaml"
"$venv/bin/openapi-spec-validator" openapi.yaml
