#!/usr/bin/env bash
# Fails, listing the files, when any C++ source differs from clang-format.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=()
while IFS= read -r f; do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then bad+=("$f"); fi
done < <(git ls-files '*.cc' '*.h')
if [ ${#bad[@]} -ne 0 ]; then
  echo "check-format: these files need clang-format -i: ${bad[*]}" >&2
  exit 1
fi
echo "check-format: ${#bad[@]} files need formatting"
