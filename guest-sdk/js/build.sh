#!/usr/bin/env bash
# Build a Cairn plug-in written in JavaScript into a WebAssembly component:
#
#   guest-sdk/js/build.sh --world task|function -o OUT.wasm ENTRY.js
#
# Installs the pinned tools on first use (guest-sdk/install-tools.sh), then
# runs build.mjs (rolldown bundles ENTRY with the SDK, componentize-js makes
# the component); see build.mjs for the options.
set -euo pipefail
sdk=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
eval "$("$sdk/../install-tools.sh" --quiet js)"
export CAIRN_JS_TOOLS
exec node "$sdk/build.mjs" "$@"
