#!/usr/bin/env bash
# Build build/{{module}}.wasm from src/index.js with the Cairn JavaScript SDK
# (rolldown + componentize-js; the pinned tools are installed on first use).
# CAIRN_JS_SDK overrides where the SDK is (default: {{sdk}}).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
sdk=${CAIRN_JS_SDK:-{{sdk}}}
[[ $sdk == /* ]] || sdk=$here/$sdk
"$sdk/build.sh" --world task -o "$here/build/{{module}}.wasm" "$here/src/index.js"
