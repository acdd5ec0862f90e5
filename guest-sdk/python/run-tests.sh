#!/usr/bin/env bash
# Unit tests of the Python SDK on the build machine's Python (the tools'
# venv), against bindings generated from the WIT into a temporary directory.
set -euo pipefail
sdk=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
wit=${CAIRN_WIT:-$sdk/../../wit}
eval "$("$sdk/../install-tools.sh" --quiet python)"
python=$(dirname "$CAIRN_COMPONENTIZE_PY")/python
bindings=$(mktemp -d)
trap 'rm -rf "$bindings"' EXIT
"$CAIRN_COMPONENTIZE_PY" -q -d "$wit" -w task bindings "$bindings"
cd "$sdk/tests"
PYTHONPATH="$bindings:$sdk" PYTHONDONTWRITEBYTECODE=1 "$python" -m unittest -v "$@" 2>&1
