# bash completion for cmkctl and cmkfs (installed as
# /usr/share/bash-completion/completions/cmkctl and .../cmkfs).
#
# The candidates come from the program itself: `cmkctl __complete WORDS...`
# prints those for the last word, from its command table and from the state
# directory the command line names (--state-dir, --config, the environment);
# the line ":files" or ":dirs" asks for a file or directory name instead.
_cmkfs_complete() {
  local cur words cword
  if declare -F _get_comp_words_by_ref >/dev/null; then
    # Keep --flag=value and cmk://... in one word.
    _get_comp_words_by_ref -n =: cur words cword
  else
    words=("${COMP_WORDS[@]}")
    cword=$COMP_CWORD
    cur=${COMP_WORDS[COMP_CWORD]}
  fi
  COMPREPLY=()
  local out
  out=$("${words[0]}" __complete "${words[@]:1:cword-1}" "$cur" 2>/dev/null) || return 0
  # --flag=VALUE: bash replaces only the part after '='.
  [[ $cur == -*=* ]] && cur=${cur#*=}
  case $out in
    :files | :dirs)
      local dirs=
      [ "$out" = :dirs ] && dirs=-d
      if declare -F _filedir >/dev/null; then
        _filedir $dirs
      else
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen ${dirs:--f} -- "$cur")
      fi
      return 0
      ;;
  esac
  [ -n "$out" ] && mapfile -t COMPREPLY <<<"$out"
  if declare -F __ltrim_colon_completions >/dev/null; then
    __ltrim_colon_completions "$cur"
  fi
  return 0
}
complete -F _cmkfs_complete cmkctl cmkfs
