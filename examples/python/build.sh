#!/usr/bin/env bash
# Build the Python examples: build/py_http_snapshot.wasm (a Task) and
# build/py_json_field.wasm (a Function). Installs the pinned tools on first
# use (guest-sdk/install-tools.sh).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
sdk=${CAIRN_PYTHON_SDK:-$here/../../guest-sdk/python}

"$sdk/build.sh" --world task --app http_snapshot --path "$here/src" -o "$here/build/py_http_snapshot.wasm"
"$sdk/build.sh" --world function --app json_field --path "$here/src" -o "$here/build/py_json_field.wasm"
