#!/usr/bin/env bash
# Verify that Cairn Tasks and Functions written in Python and JavaScript
# build and run: builds examples/python and examples/js (and the `cairn
# plugin new` templates) from source with the pinned tools, inspects each
# component, backs up and restores with the real `cairn` binary against a
# loopback HTTP server and a local repository, checks the snapshots with
# restic, and checks that a capability the job does not grant is refused
# with the same message a Rust task gets.
#
#   guest-sdk/test-languages.sh
#
# Environment:
#   CAIRN_BIN             the cairn binary (default target/debug/cairn)
#   CAIRN_TEST_CACHE      the compile cache every cairn command of the run
#                         shares (default: one in the work directory). Each
#                         component is compiled once per run (tens of
#                         seconds): componentize-py and componentize-js
#                         snapshot an initialised runtime, so two builds of
#                         the same sources differ and a cache kept between
#                         runs would only grow.
#   CAIRN_TEST_TEMPLATES  0 to skip the templates
#   CAIRN_TEST_KEEP       1 to keep the work directory
#   CAIRN_WAIT            seconds to wait for a missing binary (600); one
#                         older than wit/ is reported after `plugin inspect`
#
# Prints each check; ends with "N passed, M failed" and exits 1 if any failed.

set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cairn=${CAIRN_BIN:-$repo/target/debug/cairn}
wait_limit=${CAIRN_WAIT:-600}
work=$(mktemp -d "${TMPDIR:-/tmp}/cairn-languages.XXXXXX")
cache=${CAIRN_TEST_CACHE:-$work/cache}
export CAIRN_PASSWORD=languages-test
export RESTIC_PASSWORD=$CAIRN_PASSWORD

passed=0
failed=0
server_pid=""

cleanup() {
    if [[ -n $server_pid ]]; then
        kill "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
    fi
    if [[ ${CAIRN_TEST_KEEP:-0} == 1 ]]; then
        echo "work directory kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

section() { printf '\n== %s\n' "$*"; }
pass() { passed=$((passed + 1)); printf '  ok    %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf '  FAIL  %s\n' "$*"; }

# check DESCRIPTION COMMAND...: passes when the command succeeds; shows its
# output when it fails.
check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then
        pass "$what"
    else
        fail "$what"
        printf '%s\n' "$out" | tail -n 20 | sed 's/^/        /'
    fi
}

# expect_eq DESCRIPTION ACTUAL EXPECTED
expect_eq() {
    if [[ $2 == "$3" ]]; then
        pass "$1"
    else
        fail "$1"
        printf '        expected: %s\n        actual:   %s\n' "$3" "$2"
    fi
}

# jget JSON FILTER: jq -r, empty on error.
jget() { jq -r "$2" <<<"$1" 2>/dev/null; }

# summary: the run's report from `cairn --json backup|restore` on stdin (it
# prints newline-delimited `status` messages, then the `summary`).
summary() { jq -c 'select(type == "object" and .message_type == "summary")' 2>/dev/null | tail -n 1; }

finish() {
    printf '\n%d passed, %d failed\n' "$passed" "$failed"
    ((failed == 0))
    exit
}

# --- tools and unit tests -------------------------------------------------

section "tools (guest-sdk/install-tools.sh)"
if tools=$("$here/install-tools.sh"); then
    eval "$tools"
    pass "pinned tools installed: componentize-py, componentize-js, jco"
else
    fail "install-tools.sh"
    finish
fi

section "SDK unit tests"
check "Python SDK unit tests (guest-sdk/python/run-tests.sh)" "$here/python/run-tests.sh"
check "JavaScript SDK unit tests (node --test, host imports faked)" \
    bash -c "cd '$here/js' && node --import ./test/register.mjs --test test/sdk.test.js"
check "TypeScript declarations type-check (tsc -p guest-sdk/js/test)" \
    "$CAIRN_JS_TOOLS/node_modules/.bin/tsc" -p "$here/js/test/tsconfig.json"
check "examples/js type-checks against the declarations (tsc -p examples/js)" \
    "$CAIRN_JS_TOOLS/node_modules/.bin/tsc" -p "$repo/examples/js/jsconfig.json"

# --- the cairn binary -----------------------------------------------------

section "cairn binary"
waited=0
until [[ -x $cairn ]]; do
    if ((waited >= wait_limit)); then
        fail "$cairn does not exist (waited ${waited}s)"
        finish
    fi
    echo "  waiting for $cairn to be built…"
    sleep 60
    waited=$((waited + 60))
done
pass "using $cairn ($("$cairn" --version))"

# --- build ----------------------------------------------------------------

section "build the examples from source"
declare -A seconds
build() { # NAME COMMAND [ARG...]
    local start=$SECONDS log=$work/build-${1//[^a-z]/-}.log
    if "${@:2}" >"$log" 2>&1; then
        seconds[$1]=$((SECONDS - start))
        pass "$1 built in ${seconds[$1]}s ($(grep -c '^built ' "$log") components)"
    else
        fail "$1 build"
        tail -n 20 "$log" | sed 's/^/        /'
    fi
}
build "examples/python" "$repo/examples/python/build.sh"
build "examples/js" "$repo/examples/js/build.sh"

py_task=$repo/examples/python/build/py_http_snapshot.wasm
py_fn=$repo/examples/python/build/py_json_field.wasm
js_task=$repo/examples/js/build/js_http_snapshot.wasm
js_fn=$repo/examples/js/build/js_json_field.wasm

# The templates of `cairn plugin new --lang python|js`, rendered as the CLI
# will render them (see guest-sdk/TEMPLATES.md).
render() { # LANG NAME DEST
    local src=$here/$1/template
    (cd "$src" && find . -type f) | while read -r f; do
        mkdir -p "$(dirname "$3/$f")"
        sed -e "s|{{name}}|$2|g" -e "s|{{module}}|${2//-/_}|g" \
            -e "s|{{class}}|$(sed -E 's/(^|-)([a-z])/\U\2/g' <<<"$2")|g" \
            -e "s|{{sdk_about}}|The SDK it builds with is $here/$1.|g" \
            -e "s|{{sdk}}|$here/$1|g" "$src/$f" >"$3/$f"
        [[ -x $src/$f ]] && chmod +x "$3/$f"
    done
}
templates=${CAIRN_TEST_TEMPLATES:-1}
if [[ $templates == 1 ]]; then
    render python nightly-greeting "$work/tpl-python"
    render js nightly-greeting "$work/tpl-js"
    if left=$(grep -rl '{{' "$work/tpl-python" "$work/tpl-js"); then
        fail "templates: a placeholder is left in $left"
    else
        pass "templates rendered, no placeholder left"
    fi
    build "template python (nightly-greeting)" "$work/tpl-python/build.sh"
    build "template js (nightly-greeting)" "$work/tpl-js/build.sh"
    check "template js type-checks against the SDK's declarations (tsc, jsconfig.json)" \
        "$CAIRN_JS_TOOLS/node_modules/.bin/tsc" -p "$work/tpl-js/jsconfig.json"
fi

# --- inspect --------------------------------------------------------------

mkdir -p "$cache" "$work/data" "$work/restored"
cat >"$work/inspect.toml" <<EOF
[runtime]
cache-dir = "$cache"
EOF

section "cairn plugin inspect"
stale=0
inspect() { # FILE KIND NAME NEEDS...
    local file=$1 kind=$2 name=$3 out
    shift 3
    if ! out=$("$cairn" -c "$work/inspect.toml" --json plugin inspect "$file" 2>&1); then
        fail "inspect $(basename "$file")"
        printf '%s\n' "$out" | tail -n 5 | sed 's/^/        /'
        grep -q 'has the wrong type\|was not found in the linker' <<<"$out" && stale=1
        return
    fi
    local got_kind got_name
    got_kind=$(jget "$out" '.kind')
    got_name=$(jget "$out" '.description.name // .name')
    if [[ $got_kind == "$kind" && $got_name == "$name" ]]; then
        pass "$(basename "$file"): $kind \`$name\`"
    else
        fail "$(basename "$file"): expected $kind \`$name\`, got $got_kind \`$got_name\`"
    fi
    local need
    for need in "$@"; do
        if jq -e --arg n "$need" '[.needs[][]] | index($n)' <<<"$out" >/dev/null; then
            pass "$(basename "$file") declares need \`$need\`"
        else
            fail "$(basename "$file") does not declare need \`$need\`"
        fi
    done
}
inspect "$py_task" task py-http-snapshot "{url}" "cat" "{restore-command[0]}" "{function}"
inspect "$py_fn" function py-json-field "{url}"
inspect "$js_task" task js-http-snapshot "{url}" "cat" "{restore-command[0]}" "{function}"
inspect "$js_fn" function js-json-field "{url}"
if [[ $templates == 1 ]]; then
    inspect "$work/tpl-python/build/nightly_greeting.wasm" task nightly-greeting
    inspect "$work/tpl-js/build/nightly_greeting.wasm" task nightly-greeting
fi
if ((stale)); then
    echo "  note: the component imports something $cairn does not provide with that type:"
    echo "        the binary is probably older than wit/ (rebuild it, then run this again)"
fi

# --- a loopback HTTP server -----------------------------------------------

section "backup and restore"
cat >"$work/server.py" <<'EOF'
"""A loopback JSON API for the test: GET /status.json; exits after 15 min."""
import http.server, json, sys, threading

DOC = {"service": "demo", "version": {"major": 1, "minor": 4}, "items": [{"name": "a"}, {"name": "b"}]}

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(DOC).encode()
        status = 200 if self.path == "/status.json" else 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_address[1]))
threading.Timer(900, server.shutdown).start()
server.serve_forever()
EOF
python3 "$work/server.py" "$work/port" &
server_pid=$!
for _ in $(seq 300); do [[ -s $work/port ]] && break; sleep 0.1; done
port=$(cat "$work/port" 2>/dev/null)
if [[ -z $port ]]; then
    fail "the loopback HTTP server did not start"
    finish
fi
pass "loopback HTTP server on 127.0.0.1:$port"
origin="http://127.0.0.1:$port"
expected_doc=$(python3 -c 'import json; print(json.dumps({"service": "demo", "version": {"major": 1, "minor": 4}, "items": [{"name": "a"}, {"name": "b"}]}, sort_keys=True))')
printf 'first line\nsecond line: ünïcode\n' >"$work/data/notes.txt"

job() { # NAME TASK FUNCTION-NAME
    cat <<EOF

[jobs.$1]
task = "$2"
params = { url = "$origin/status.json", file = "$work/data/notes.txt", function = "$3", field = "version.minor", restore-command = ["tee", "$work/restored/$1.txt"] }

[jobs.$1.allow]
http = ["$origin"]
functions = ["$3"]

[jobs.$1.allow.commands]
cat = { allow-args = ["$work/data/notes.txt"] }
tee = { allow-args = ["$work/restored/$1.txt"] }
EOF
}
{
    cat <<EOF
[repository]
path = "$work/repository"
password-env = "CAIRN_PASSWORD"

[runtime]
cache-dir = "$cache"

[functions.py-json-field]
module = "$py_fn"

[functions.js-json-field]
module = "$js_fn"
EOF
    job python "$py_task" py-json-field
    job js "$js_task" js-json-field
    if [[ $templates == 1 ]]; then
        for lang in python js; do
            cat <<EOF

[jobs.template-$lang]
task = "$work/tpl-$lang/build/nightly_greeting.wasm"
params = { name = "cairn" }
EOF
        done
    fi
} >"$work/cairn.toml"

check "cairn validate: the jobs' grants cover what the modules declare" \
    "$cairn" -c "$work/cairn.toml" validate

run_job() { # KIND JOB → JSON report on stdout
    "$cairn" -c "$work/cairn.toml" --json "$1" "$2" 2>"$work/$1-$2.log" | summary
}

for lang in python js; do
    report=$(run_job backup "$lang")
    expect_eq "$lang: backup succeeds" "$(jget "$report" '.run.status')" succeeded
    [[ $(jget "$report" '.run.status') == succeeded ]] || jget "$report" '.run.error' | sed 's/^/        /'
    expect_eq "$lang: api.json stored with storage.create (bytes)" \
        "$(jget "$report" '.result.artifacts["api.json"] > 0')" true
    expect_eq "$lang: file streamed with storage.create-from-command (bytes)" \
        "$(jget "$report" '.result.artifacts.file')" "$(stat -c %s "$work/data/notes.txt")"
    expect_eq "$lang: the task called the $lang function (functions.call)" \
        "$(jget "$report" '.result.field | "\(.status) \(.field)=\(.value)"')" "200 version.minor=4"
    expect_eq "$lang: state counts runs" "$(jget "$report" '.result.runs')" 1
    snapshot=$(jget "$report" '.run.snapshot_id')

    report=$(run_job backup "$lang")
    expect_eq "$lang: state persists between runs" "$(jget "$report" '.result.runs')" 2

    report=$(run_job restore "$lang")
    expect_eq "$lang: restore succeeds" "$(jget "$report" '.run.status')" succeeded
    [[ $(jget "$report" '.run.status') == succeeded ]] || jget "$report" '.run.error' | sed 's/^/        /'
    expect_eq "$lang: restore read api.json back (storage.open)" \
        "$(jget "$report" '.result.document' | jq -cS .)" "$(jq -cS . <<<"$expected_doc")"
    expect_eq "$lang: restore fed the file into tee (restore-to-command)" \
        "$(jget "$report" '.result.file.stdout')" "$(cat "$work/data/notes.txt")"
    expect_eq "$lang: the restored file has the original bytes" \
        "$(cmp -s "$work/restored/$lang.txt" "$work/data/notes.txt" && echo same)" same
    expect_eq "$lang: restore sees the notes" \
        "$(jget "$report" '.result.notes["source-url"]')" "$origin/status.json"

    # The repository, read with restic itself.
    latest=$(jget "$("$cairn" -c "$work/cairn.toml" --json snapshots "$lang" 2>/dev/null)" 'max_by(.time_ms) | .id')
    expect_eq "$lang: \`cairn snapshots --json\` lists the latest backup" \
        "$(jget "$("$cairn" -c "$work/cairn.toml" --json snapshots "$lang" 2>/dev/null)" 'length')" 2
    expect_eq "$lang: snapshot holds api.json and file (restic ls)" \
        "$(restic -r "$work/repository" ls "$latest" 2>/dev/null | grep -E '^/(api\.json|file)$' | sort | tr '\n' ' ')" \
        "/api.json /file "
    expect_eq "$lang: restic dump /api.json is the served document" \
        "$(restic -r "$work/repository" dump "$latest" /api.json 2>/dev/null | jq -cS .)" "$(jq -cS . <<<"$expected_doc")"
    expect_eq "$lang: restic dump /file is the file's bytes" \
        "$(restic -r "$work/repository" dump "$latest" /file 2>/dev/null | sha256sum)" \
        "$(sha256sum <"$work/data/notes.txt")"
    expect_eq "$lang: the manifest keeps the notes" \
        "$(restic -r "$work/repository" dump "$latest" /.cairn/manifest.json 2>/dev/null | jq -r '.. | objects | .["source-url"]? // empty' | head -1)" \
        "$origin/status.json"
    [[ -n $snapshot ]] || fail "$lang: no snapshot id in the backup report"
done

if [[ $templates == 1 ]]; then
    for lang in python js; do
        report=$(run_job backup "template-$lang")
        expect_eq "template $lang: backup succeeds" "$(jget "$report" '.run.status')" succeeded
        [[ $(jget "$report" '.run.status') == succeeded ]] || jget "$report" '.run.error' | sed 's/^/        /'
        report=$(run_job restore "template-$lang")
        expect_eq "template $lang: restore reads the greeting back" \
            "$(jget "$report" '.result.greeting')" "hello, cairn"
    done
fi

# --- what is not granted --------------------------------------------------

section "denied and invalid: the same errors as a Rust task"
{
    cat <<EOF
[repository]
path = "$work/repository"
password-env = "CAIRN_PASSWORD"

[runtime]
cache-dir = "$cache"

[jobs.rust]
task = "builtin:elasticsearch-dump"
params = { url = "$origin" }
EOF
    for lang in python js; do
        task=$py_task
        [[ $lang == js ]] && task=$js_task
        cat <<EOF

[jobs.$lang]
task = "$task"
params = { url = "$origin/status.json", file = "$work/data/notes.txt" }
allow = { commands = ["cat"] }

[jobs.$lang-invalid]
task = "$task"
params = { url = "$origin/status.json" }
allow = { http = ["$origin"], commands = ["cat"] }
EOF
    done
} >"$work/denied.toml"

error_of() { # JOB
    jget "$("$cairn" -c "$work/denied.toml" --json backup "$1" 2>/dev/null | summary)" '.run.error'
}
rust_error=$(error_of rust)
expected="denied: http to $origin is not granted to job"
if [[ $rust_error == *"$expected"* ]]; then
    pass "Rust task: $rust_error"
else
    fail "Rust task: expected an error containing \`$expected\`, got: $rust_error"
fi
for lang in python js; do
    error=$(error_of "$lang")
    if [[ $error == *"$expected"* ]]; then
        pass "$lang task: $error"
    else
        fail "$lang task: expected an error containing \`$expected\`, got: $error"
    fi
    expect_eq "$lang task: the same message as the Rust task's" \
        "$error" "${rust_error//\`rust\`/\`$lang\`}"
    expect_eq "$lang task: a missing param is \`invalid\`" \
        "$(error_of "$lang-invalid")" "backup of job \`$lang-invalid\`: invalid: invalid params: missing field \`file\`"
done

# --- hostile: what holds for a guest in any language --------------------

section "hostile Python guest: secrets, paths, limits (as tests/e2e/hostile.rs for Rust)"
hostile=$work/py_hostile.wasm
build "hostile Python guest (guest-sdk/python/tests/hostile)" \
    "$here/python/build.sh" --world task --app hostile --path "$here/python/tests/hostile" -o "$hostile"
secret="s3cret-$$-v@lue/x"
secret_b64=$(printf %s "$secret" | base64 -w0)
printf '%s\n' "$secret" >"$work/pw"
chmod 600 "$work/pw"
{
    cat <<EOF
[repository]
path = "$work/hostile-repository"
password-env = "CAIRN_PASSWORD"

[runtime]
cache-dir = "$cache"

[state]
path = "$work/hostile-state.db"

[secrets.PW]
file = "$work/pw"

[jobs.h]
task = "$hostile"
params = { attack = "secrets" }
timeout = "120s"
memory = "256MiB"

[jobs.h.allow]
commands = ["sh", "base64"]
secrets.PW = { env = "PW", programs = ["sh"], readable = true }
EOF
} >"$work/hostile.toml"
hostile_run() { # ATTACK → JSON report on stdout
    sed -i "s|^params = .*|params = { attack = \"$1\" }|" "$work/hostile.toml"
    "$cairn" -c "$work/hostile.toml" --json backup h 2>"$work/hostile-$1.log" | summary
}
leaks() { # TEXT: whether it holds the secret, plainly or in base64
    [[ $1 == *"$secret"* || $1 == *"$secret_b64"* ]]
}
if [[ -f $hostile ]]; then
    check "cairn validate: the hostile job" "$cairn" -c "$work/hostile.toml" validate

    report=$(hostile_run secrets)
    expect_eq "secrets: the run succeeds (the module read a readable secret)" \
        "$(jget "$report" '.run.status')" succeeded
    if leaks "$report"; then
        fail "secrets: the run's report holds the secret"
    else
        pass "secrets: not in the report (result, notes, state echo, logs)"
    fi
    expect_eq "secrets: what the module returned is masked" "$(jget "$report" '.result.read')" "***"
    expect_eq "secrets: a program's output of the bound secret is masked, base64 too" \
        "$(jget "$report" '.result.echoed')" "$(printf '***\n***')"
    if leaks "$(cat "$work/hostile-secrets.log")"; then
        fail "secrets: cairn's stderr (the run's log) holds the secret"
    else
        pass "secrets: not in cairn's stderr, where the guest's log, stdout and stderr go"
    fi
    run_id=$(jget "$report" '.run.id')
    record=$("$cairn" -c "$work/hostile.toml" --json runs --job h 2>&1)
    logs=$("$cairn" -c "$work/hostile.toml" --json runs show "$run_id" 2>&1)
    if [[ -n $run_id && $logs == *"the secret is"* ]]; then
        pass "secrets: the run's recorded log has the guest's line"
    else
        fail "secrets: no recorded log line of the guest for run $run_id: $(head -c 300 <<<"$logs")"
    fi
    if leaks "$record$logs"; then
        fail "secrets: the run history or its recorded log holds the secret"
    else
        pass "secrets: not in the run history or its recorded log (cairn runs, cairn runs show)"
    fi
    if leaks "$(restic -r "$work/hostile-repository" dump latest /.cairn/manifest.json 2>&1)"; then
        fail "secrets: the snapshot's notes hold the secret"
    else
        pass "secrets: not in the snapshot's notes (restic dump of the manifest)"
    fi

    report=$(hostile_run secret-error)
    error=$(jget "$report" '.run.error')
    if [[ $(jget "$report" '.run.status') == failed && $error == *"leaking *** through an error"* ]] && ! leaks "$report"; then
        pass "secrets: an error carrying the secret is recorded masked: $error"
    else
        fail "secrets: expected a failed run with \`leaking *** through an error\`, got: $(head -c 300 <<<"$report")"
    fi

    report=$(hostile_run paths)
    expect_eq "paths: the run succeeds (each refusal is an error the module sees)" \
        "$(jget "$report" '.run.status')" succeeded
    for name in "../x" ".." "/etc/passwd" "a/../../b" ".cairn" "-rf"; do
        outcome=$(jq -r --arg n "$name" '.result[$n].error // "stored: \(.result[$n].ok)"' <<<"$report" 2>/dev/null)
        if [[ $outcome == invalid:* ]]; then
            pass "paths: artifact name \`$name\` refused ($outcome)"
        else
            fail "paths: artifact name \`$name\`: expected \`invalid: …\`, got: $outcome"
        fi
    done
    outcome=$(jget "$report" '.result.tree.error // "stored"')
    if [[ $outcome == denied:* ]]; then
        pass "paths: a tree of an ungranted directory is denied ($outcome)"
    else
        fail "paths: a tree of /etc: expected \`denied: …\`, got: $outcome"
    fi
    outcome=$(jget "$report" '.result.command.error // "ran"')
    if [[ $outcome == denied:* ]]; then
        pass "paths: an ungranted program is denied ($outcome)"
    else
        fail "paths: cat /etc/hostname: expected \`denied: …\`, got: $outcome"
    fi
    expect_eq "paths: a plain name is still stored" "$(jget "$report" '.result["fine.txt"].ok')" fine.txt
    listed=$(restic -r "$work/hostile-repository" ls latest 2>/dev/null | grep -v '^/\.cairn' | grep '^/' | tr '\n' ' ')
    expect_eq "paths: the snapshot holds only the plain name (restic ls)" "$listed" "/fine.txt "

    sed -i 's|^timeout = .*|timeout = "3s"|' "$work/hostile.toml"
    start=$SECONDS
    report=$(hostile_run spin)
    took=$((SECONDS - start))
    error=$(jget "$report" '.run.error')
    if [[ $(jget "$report" '.run.status') == failed && ( $error == *timeout* || $error == *"timed out"* ) ]] && ((took < 60)); then
        pass "limits: a module spinning forever is stopped by the 3s timeout in ${took}s: $error"
    else
        fail "limits: spin with timeout = 3s: after ${took}s, $(jget "$report" '.run | "\(.status): \(.error)"')"
    fi

    sed -i -e 's|^timeout = .*|timeout = "60s"|' -e 's|^memory = .*|memory = "96MiB"|' "$work/hostile.toml"
    start=$SECONDS
    report=$(hostile_run memory)
    took=$((SECONDS - start))
    error=$(jget "$report" '.run.error')
    shown=$("$cairn" -c "$work/hostile.toml" runs show "$(jget "$report" '.run.id')" 2>&1)
    if [[ $(jget "$report" '.run.status') == failed && ( $error == *MemoryError* || $error == *memory* ) &&
        $shown == *"growing the heap"* ]]; then
        pass "limits: a module growing its memory past \`memory = 96MiB\` fails in ${took}s: $error"
    else
        fail "limits: memory = 96MiB: $(jget "$report" '.run | "\(.status): \(.error)"') $(tail -n 3 "$work/hostile-memory.log")"
    fi
fi

echo
echo "build times: ${seconds[examples/python]:-?}s (Python examples), ${seconds[examples/js]:-?}s (JavaScript examples)"
finish
