#!/usr/bin/env bash
# Cairn quick start: builds Cairn, backs up examples/quickstart/sample into a
# local restic-format repository, lists the snapshot, restores it elsewhere and
# checks the copy byte for byte. Needs only rustup and cargo.
#
# CAIRN_BIN=path/to/cairn skips the build and uses that binary;
# QUICKSTART_WORK=DIR puts the config, repository and restore there instead
# of examples/quickstart/.cairn (the end-to-end tests use both).
set -euo pipefail
cd "$(dirname "$0")"
export CAIRN_PASSWORD="${CAIRN_PASSWORD:-quickstart}"
here=$(pwd)
work=${QUICKSTART_WORK:-examples/quickstart/.cairn}
mkdir -p "$work"
work=$(cd "$work" && pwd)
config=$work/cairn.toml
sample=$here/examples/quickstart/sample

# The job's config (paths are absolute: task params are passed to the module as they are).
cat >"$config" <<TOML
# Written by quickstart.sh. Relative paths in [repository], [state] and
# allow.paths are resolved against this file's directory.

[repository]
path = "repository"                 # restic format; created on first backup (or by \`cairn init\`)
password-env = "CAIRN_PASSWORD"

[state]
path = "state.db"                   # run history and job state (SQLite)

[jobs.sample]
# Built-in Task module: adds each directory to the run's snapshot as a restic
# tree (modes, times, symlinks kept); restores into \`target\`.
task = "builtin:directory"
params = { paths = ["$sample"], target = "$work/restored" }
retention = { keep-last = 3 }
timeout = "10m"
memory = "64MiB"

# Deny by default: read the sample, write the restore target, nothing else.
[jobs.sample.allow]
paths = { "$sample" = "read", "$work/restored" = "read-write" }
TOML

if [ -n "${CAIRN_BIN:-}" ]; then
  cairn=$CAIRN_BIN
else
  echo "== building cairn (release; the first build takes a few minutes)"
  cargo build --release -p cairn
  # Where cargo put it: CARGO_TARGET_DIR, a `build.target-dir` setting, or target/.
  target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  cairn=${target_dir:-${CARGO_TARGET_DIR:-target}}/release/cairn
fi

echo "== backing up examples/quickstart/sample"
"$cairn" -c "$config" backup sample

echo "== snapshots"
"$cairn" -c "$config" snapshots

echo "== restoring the latest snapshot into $work/restored"
rm -rf "$work/restored"
"$cairn" -c "$config" restore sample

echo "== comparing the restored copy with the original"
diff -r --no-dereference "$sample" "$work/restored"
echo "identical: every file, mode, symlink and directory came back"

cat <<MSG

Where things are:
  repository   $work/repository   (restic format, password: \$CAIRN_PASSWORD = $CAIRN_PASSWORD)
  run history  $work/state.db      (try: $cairn -c $config runs)
  restored     $work/restored

Read the repository with restic itself:
  RESTIC_PASSWORD=$CAIRN_PASSWORD restic -r $work/repository snapshots
  RESTIC_PASSWORD=$CAIRN_PASSWORD restic -r $work/repository check --read-data
MSG
