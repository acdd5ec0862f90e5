#!/usr/bin/env bash
# Build build/{{module}}.wasm from src/app.py with the Cairn Python SDK
# (componentize-py; the pinned tools are installed on first use).
# CAIRN_PYTHON_SDK overrides where the SDK is (default: {{sdk}}).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
sdk=${CAIRN_PYTHON_SDK:-{{sdk}}}
[[ $sdk == /* ]] || sdk=$here/$sdk
"$sdk/build.sh" --world task --app app --path "$here/src" -o "$here/build/{{module}}.wasm"
