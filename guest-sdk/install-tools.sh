#!/usr/bin/env bash
# Install the pinned tools that build Cairn plug-ins written in Python and
# JavaScript, into a cache outside the repository:
#
#   $CAIRN_TOOLS/python   a venv (the machine's python3.11) with componentize-py
#   $CAIRN_TOOLS/js       node_modules with componentize-js and jco, installed
#                         with `npm ci` from guest-sdk/js/tools/package-lock.json
#
# CAIRN_TOOLS defaults to ~/.cache/cairn-tools. Idempotent: what is already
# installed at the pinned version is left alone. Needs only the PyPI and npm
# registries. Prints where the tools are; the last lines are shell
# assignments (`CAIRN_COMPONENTIZE_PY=…`) that build scripts may `eval`.
#
# Usage: guest-sdk/install-tools.sh [--quiet] [python] [js]
#
# With `python` or `js`, only that language's tools (the default is both).

set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1
COMPONENTIZE_JS_VERSION=0.23.0
JCO_VERSION=1.35.0
PYTHON=${CAIRN_PYTHON:-python3.11}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tools=${CAIRN_TOOLS:-$HOME/.cache/cairn-tools}
quiet=false
langs=()
for arg in "$@"; do
    case $arg in
        --quiet) quiet=true ;;
        python | js) langs+=("$arg") ;;
        *) echo "install-tools: unknown argument \`$arg\` (usage: install-tools.sh [--quiet] [python] [js])" >&2; exit 2 ;;
    esac
done
((${#langs[@]})) || langs=(python js)

say() { $quiet || echo "install-tools: $*" >&2; }
die() { echo "install-tools: error: $*" >&2; exit 1; }

# --- Python: componentize-py in a venv ------------------------------------

install_python() {
    local venv=$tools/python
    local have=""
    if [[ -x $venv/bin/componentize-py ]]; then
        have=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("componentize-py"))' 2>/dev/null || true)
    fi
    if [[ $have == "$COMPONENTIZE_PY_VERSION" ]]; then
        say "componentize-py $have already installed in $venv"
        return
    fi
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found in PATH (set CAIRN_PYTHON to a Python 3.11 interpreter)"
    if [[ ! -x $venv/bin/python ]]; then
        say "creating venv $venv with $("$PYTHON" --version 2>&1)"
        mkdir -p "$tools"
        "$PYTHON" -m venv "$venv"
    fi
    say "installing componentize-py==$COMPONENTIZE_PY_VERSION${have:+ (replacing $have)}"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-input "componentize-py==$COMPONENTIZE_PY_VERSION"
    have=$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("componentize-py"))')
    [[ $have == "$COMPONENTIZE_PY_VERSION" ]] || die "componentize-py is $have after installing $COMPONENTIZE_PY_VERSION"
}

# --- JavaScript: componentize-js and jco from the pinned lock file --------

install_js() {
    local dir=$tools/js
    local lock=$here/js/tools/package-lock.json
    command -v npm >/dev/null || die "npm not found in PATH (install Node.js 18 or later)"
    # Installed from the same lock file and both packages at their pins: done.
    if [[ -f $dir/package-lock.json ]] && cmp -s "$lock" "$dir/package-lock.json" \
        && [[ $(node_version "$dir" @bytecodealliance/componentize-js) == "$COMPONENTIZE_JS_VERSION" ]] \
        && [[ $(node_version "$dir" @bytecodealliance/jco) == "$JCO_VERSION" ]]; then
        say "componentize-js $COMPONENTIZE_JS_VERSION and jco $JCO_VERSION already installed in $dir"
        return
    fi
    say "installing componentize-js $COMPONENTIZE_JS_VERSION and jco $JCO_VERSION into $dir (npm ci)"
    mkdir -p "$dir"
    cp "$here/js/tools/package.json" "$lock" "$dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error </dev/null >&2)
    [[ $(node_version "$dir" @bytecodealliance/componentize-js) == "$COMPONENTIZE_JS_VERSION" ]] \
        || die "componentize-js in $dir is not $COMPONENTIZE_JS_VERSION after npm ci"
    [[ $(node_version "$dir" @bytecodealliance/jco) == "$JCO_VERSION" ]] \
        || die "jco in $dir is not $JCO_VERSION after npm ci"
}

# The version of package $2 installed under $1/node_modules, or nothing.
node_version() {
    local manifest=$1/node_modules/$2/package.json
    [[ -f $manifest ]] || return 0
    node -p "require(process.argv[1]).version" "$manifest" 2>/dev/null || true
}

for lang in "${langs[@]}"; do
    "install_$lang"
done

say "tools are in $tools"
for lang in "${langs[@]}"; do
    case $lang in
        python) echo "CAIRN_COMPONENTIZE_PY=$tools/python/bin/componentize-py" ;;
        js)
            echo "CAIRN_COMPONENTIZE_JS=$tools/js/node_modules/.bin/componentize-js"
            echo "CAIRN_JCO=$tools/js/node_modules/.bin/jco"
            echo "CAIRN_JS_TOOLS=$tools/js"
            ;;
    esac
done
