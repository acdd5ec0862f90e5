#!/usr/bin/env bash
# Build a Cairn plug-in written in Python into a WebAssembly component.
#
#   guest-sdk/python/build.sh --world task|function --app MODULE \
#       [--path DIR]... -o OUT.wasm
#
# --world   the cairn:plugin world the module exports: `task` or `function`
# --app     the Python module (found on the --path directories) that assigns
#           `WitWorld = cairn_guest.export_task(...)` (or export_function)
# --path    a directory holding the module and its pure-Python dependencies
#           (repeatable; default: the current directory). The SDK
#           (guest-sdk/python, package `cairn_guest`) is always added.
# -o        the component to write
#
# What it runs (tools from guest-sdk/install-tools.sh, installed on first use):
#
#   componentize-py -d WIT -w WORLD bindings OUT_DIR/bindings-WORLD
#       the `wit_world` package generated from the WIT, for editors and type
#       checkers only (point them at OUT_DIR/bindings-WORLD);
#   componentize-py -d WIT -w WORLD componentize -p DIR... -p SDK MODULE -o OUT
#       generates the same bindings again, internally, and builds the
#       component: CPython 3.14 and the module, initialised at build time.
#
# WIT is $CAIRN_WIT, by default the repository's wit/ (package
# cairn:plugin@0.1.0).

set -euo pipefail

sdk=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
wit=${CAIRN_WIT:-$(cd "$sdk/../../wit" 2>/dev/null && pwd || true)}

usage() {
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

world="" app="" out=""
paths=()
while (($#)); do
    case $1 in
        --world) world=${2:-}; shift 2 ;;
        --app) app=${2:-}; shift 2 ;;
        --path) paths+=("${2:-}"); shift 2 ;;
        -o | --out) out=${2:-}; shift 2 ;;
        -h | --help) usage ;;
        *) echo "build.sh: unknown argument \`$1\`" >&2; usage ;;
    esac
done
[[ $world == task || $world == function ]] || { echo "build.sh: --world must be task or function" >&2; usage; }
[[ -n $app && -n $out ]] || usage
((${#paths[@]})) || paths=(.)
[[ -n $wit && -f $wit/worlds.wit ]] || {
    echo "build.sh: no WIT found (looked for $sdk/../../wit/worlds.wit); set CAIRN_WIT to the wit/ directory of Cairn" >&2
    exit 2
}

# The pinned componentize-py (installed if missing).
eval "$("$sdk/../install-tools.sh" --quiet python)"

out_dir=$(dirname "$out")
mkdir -p "$out_dir"

rm -rf "$out_dir/bindings-$world"
"$CAIRN_COMPONENTIZE_PY" -q -d "$wit" -w "$world" bindings "$out_dir/bindings-$world"

path_args=()
for p in "${paths[@]}"; do
    path_args+=(-p "$p")
done
# No ambient virtualenv: the component holds the given paths and the SDK only.
env -u VIRTUAL_ENV -u PYTHONPATH \
    "$CAIRN_COMPONENTIZE_PY" -q -d "$wit" -w "$world" componentize \
    "${path_args[@]}" -p "$sdk" "$app" -o "$out"
echo "built $out ($(du -h "$out" | cut -f1), world $world, module $app)"
