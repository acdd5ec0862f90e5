#!/usr/bin/env bash
# Build the JavaScript examples: build/js_http_snapshot.wasm (a Task) and
# build/js_json_field.wasm (a Function). Installs the pinned tools on first
# use (guest-sdk/install-tools.sh).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
sdk=${CAIRN_JS_SDK:-$here/../../guest-sdk/js}

"$sdk/build.sh" --world task -o "$here/build/js_http_snapshot.wasm" "$here/src/http-snapshot.js"
"$sdk/build.sh" --world function -o "$here/build/js_json_field.wasm" "$here/src/json-field.js"
