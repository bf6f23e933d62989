#!/usr/bin/env bash
# The bash completion script (packaging/completion/cmkctl.bash) driven as
# bash drives it: bash-completion loaded, COMP_WORDS/COMP_CWORD/COMP_LINE/
# COMP_POINT set, the completion function called, COMPREPLY checked. It asks
# this build's cmkctl and cmkfs (on PATH) for the candidates: a command, a
# flag, resource names of a real state directory, a key id, a --flag=value.
# Usage: completion_test.sh SCRIPT   (CMKCTL, CMKFS: the binaries)
set -euo pipefail

script=$1
: "${CMKCTL:?}" "${CMKFS:?}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cmkfs-completion.XXXXXX")
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
fail() { echo "completion test: FAIL: $*" >&2; exit 1; }

mkdir "$tmp/bin"
ln -s "$CMKCTL" "$tmp/bin/cmkctl"
ln -s "$CMKFS" "$tmp/bin/cmkfs"
export PATH="$tmp/bin:$PATH"
unset CMKFS_STATE_DIR CMKFS_CONFIG
S=$tmp/state
ctl() { timeout 60 cmkctl --state-dir "$S" "$@" >/dev/null; }
ctl vault create vault1 --purge-protection
key1=$(timeout 60 cmkctl --state-dir "$S" key create vault1 key1 --size 2048)
ctl des create des1 --key-id cmk://vault1/keys/key1
ctl disk create disk-one --size 4M
ctl disk create disk-two --size 4M
ctl snapshot create snap1 --source disk-one

[ -f /usr/share/bash-completion/bash_completion ] || fail "bash-completion is not installed (packaging/install-deps.sh)"
# bash-completion's own code is not written for set -u.
set +u
# shellcheck disable=SC1091
source /usr/share/bash-completion/bash_completion
# shellcheck disable=SC1090
source "$script"
complete -p cmkctl | grep -q -- '-F _cmkfs_complete cmkctl$' || fail "the script registers no completion for cmkctl"

# complete LINE: runs the completion function on LINE as bash would (the
# cursor at its end, words split at blanks and at bash's COMP_WORDBREAKS
# characters '=' and ':'), and sets REPLY to COMPREPLY, one per line.
complete_line() {
  local line=$1 word=
  COMP_LINE=$line
  COMP_POINT=${#line}
  COMP_WORDS=()
  local i c
  for ((i = 0; i < ${#line}; i++)); do
    c=${line:i:1}
    if [ "$c" = " " ]; then
      [ -n "$word" ] && COMP_WORDS+=("$word")
      word=
    elif [[ $c == [=:] ]]; then
      [ -n "$word" ] && COMP_WORDS+=("$word")
      COMP_WORDS+=("$c")
      word=
    else
      word+=$c
    fi
  done
  COMP_WORDS+=("$word")  # the word at the cursor, maybe empty
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMPREPLY=()
  # As in an interactive shell: no errexit (bash-completion's helpers return
  # non-zero on their way).
  set +e
  _cmkfs_complete "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
  set -e
  REPLY=$(printf '%s\n' "${COMPREPLY[@]}")
}

expect() { # LINE EXPECTED (newline-separated, in order)
  complete_line "$1"
  [ "$REPLY" = "$2" ] || fail "'$1': COMPREPLY is [$(tr '\n' ' ' <<<"$REPLY")], expected [$(tr '\n' ' ' <<<"$2")]"
  echo "ok: '$1' -> $(tr '\n' ' ' <<<"$REPLY")"
}

expect "cmkctl sn" "snapshot"
expect "cmkctl --state-dir $S disk sh" "show"
expect "cmkctl disk create d3 --s" $'--size\n--sku\n--source\n--state-dir\n--subscription'
expect "cmkctl --state-dir $S disk show " $'disk-one\ndisk-two'
expect "cmkctl disk show --state-dir $S disk-t" "disk-two"
expect "cmkctl --state-dir=$S snapshot delete s" "snap1"
expect "cmkctl --state-dir $S disk create d3 --des " "des1"
expect "cmkctl --state-dir $S disk create d3 --source sn" "snapshots/snap1"
expect "cmkctl -o " $'table\njson\ntsv'
expect "cmkctl --output=t" $'table\ntsv'
# A key id holds ':': bash splits the word there, and the script gives back
# only what follows it.
expect "cmkctl --state-dir $S des create des2 --key-id cmk://vault1/keys/k" "//vault1/keys/key1"$'\n'"${key1#cmk:}"
# File and directory names: bash-completion's _filedir.
expect "cmkctl --state-dir $S disk export disk-one $tmp/b" "$tmp/bin"
expect "cmkfs --state-dir $tmp/st" "$tmp/state"
expect "cmkfs --fore" "--foreground"
# A state directory that does not exist gives nothing, and is not created.
expect "cmkctl --state-dir $tmp/absent disk show " ""
[ ! -e "$tmp/absent" ] || fail "completion created the state directory $tmp/absent"
echo "completion test: OK"
