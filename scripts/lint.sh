#!/usr/bin/env bash
# Static checks, one per sub-command; ctest runs each as its own entry
# (lint.*). Exit 0 clean, 1 findings, 77 when the tool is not installed.
#   scripts/lint.sh analyzer DIR   gcc -fanalyzer over src/ and examples/
#   scripts/lint.sh cppcheck DIR   cppcheck, suppressions in scripts/cppcheck.supp
#   scripts/lint.sh tidy DIR       clang-tidy, checks in .clang-tidy
#   scripts/lint.sh format         clang-format on the lines changed since
#                                  .clang-format was added (see fmt_base)
#   scripts/lint.sh python         pyflakes over every Python file
# DIR is a scratch directory for the compile database (compile_commands.json):
# the C checks configure the project there without building it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
jobs=$(nproc 2>/dev/null || echo 2)

skip() { echo "lint: SKIP: $*"; exit 77; }
need() { command -v "$1" >/dev/null || skip "$1 is not installed (scripts/deps.sh test)"; }

# Configures the library, the program and the examples (no tests, no fuzz
# targets) into $1 and leaves $1/compile_commands.json there.
ccdb() {
  need cmake
  cmake -S "$root" -B "$1" -DCMAKE_BUILD_TYPE=Debug -DBUILD_TESTING=OFF \
        -DRTLS_OUTER_TESTS=OFF -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
}

# The compile database's source files under src/ and examples/, one a line.
ccdb_files() {
  python3 - "$1/compile_commands.json" "$root" <<'EOF'
import json, sys
root = sys.argv[2] + "/"
seen = set()
for e in json.load(open(sys.argv[1])):
    f = e["file"]
    if f.startswith((root + "src/", root + "examples/")) and f not in seen:
        seen.add(f)
        print(f)
EOF
}

# GCC's analyzer (GCC 12 on Debian 12). Each file is compiled on its own,
# with its exact flags from the database (-Werror among them, so every
# analyzer warning fails), output to /dev/null: one file's finding does
# not hide the next one's.
# Suppressions: none for the whole tree. A false positive is silenced at
# its one site with "#pragma GCC diagnostic ignored" and a comment saying
# why (guarded with !defined(__clang__): clang does not know the name).
analyzer() {
  need gcc
  need python3
  local dir=$1
  ccdb "$dir"
  python3 - "$dir/compile_commands.json" "$root" >"$dir/analyzer.cmds" <<'EOF'
import json, shlex, sys
root = sys.argv[2] + "/"
for e in json.load(open(sys.argv[1])):
    if not e["file"].startswith((root + "src/", root + "examples/")):
        continue
    a = e.get("arguments") or shlex.split(e["command"])
    a[0] = "gcc"                  # the analyzer is GCC's, whatever CC is
    i = a.index("-o")
    del a[i:i + 2]
    a += ["-fanalyzer", "-fdiagnostics-plain-output", "-o", "/dev/null"]
    print("cd %s && %s" % (shlex.quote(e["directory"]), shlex.join(a)))
EOF
  local n
  n=$(wc -l <"$dir/analyzer.cmds")
  if tr '\n' '\0' <"$dir/analyzer.cmds" | xargs -0 -r -P"$jobs" -n1 sh -c; then
    echo "lint: analyzer: $n files, no findings"
    return 0
  fi
  echo "lint: analyzer: findings above (-Wanalyzer-*)"
  return 1
}

# cppcheck 2.10 (Debian 12) with the gnu (POSIX + glibc) and OpenSSL
# library models. --inline-suppr allows "// cppcheck-suppress id" at a
# site; tree-wide suppressions, each explained, are in scripts/cppcheck.supp.
cppcheck_() {
  need cppcheck
  local dir=$1 out
  ccdb "$dir"
  out=$(cppcheck --project="$dir/compile_commands.json" \
          --file-filter="$root/src/*" --file-filter="$root/examples/*" \
          --enable=warning,portability,performance --library=gnu --library=openssl \
          --inline-suppr --suppressions-list="$root/scripts/cppcheck.supp" \
          --error-exitcode=1 -j"$jobs" --quiet \
          --template='{file}:{line}:{column}: {severity}: {message} [{id}]' 2>&1) && {
    echo "lint: cppcheck: no findings"
    return 0
  }
  echo "$out"
  echo "lint: cppcheck: findings above"
  return 1
}

# clang-tidy 14 with .clang-tidy (bugprone-*, clang-analyzer-*; every
# warning an error), one process per file, $jobs at a time. Headers under
# src/ and include/ are checked too (a header's finding shows once for
# each file that includes it).
tidy() {
  need clang-tidy
  need python3
  local dir=$1 n rc=0 re
  ccdb "$dir"
  ccdb_files "$dir" >"$dir/tidy.files"
  n=$(wc -l <"$dir/tidy.files")
  re=$(printf '%s' "$root" | sed 's/[][\.*^$+?(){}|]/\\&/g')
  tr '\n' '\0' <"$dir/tidy.files" |
    xargs -0 -r -P"$jobs" -n1 clang-tidy -p "$dir" --quiet \
      --header-filter="^$re/(src|include)/" >"$dir/tidy.log" 2>&1 || rc=$?
  grep -v -E '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$' "$dir/tidy.log" || true
  if [ "$rc" = 0 ]; then
    echo "lint: tidy: $n files, no findings"
    return 0
  fi
  echo "lint: tidy: findings above"
  return 1
}

# The commit that added .clang-format: formatting is checked on what
# changed since (a whole-tree reformat would churn every file). Before
# that commit exists, HEAD: the uncommitted work is checked.
fmt_base() {
  local base
  base=$(git -C "$root" log --diff-filter=A --format=%H -- .clang-format | tail -n 1)
  if [ -z "$base" ]; then
    [ "$(git -C "$root" rev-parse --is-shallow-repository)" = true ] &&
      echo "lint: format: shallow clone without the commit that added .clang-format: checking against HEAD" >&2
    base=HEAD
  fi
  echo "$base"
}

# "file first count" for each added or changed run of lines in C sources
# since $1, working tree included; an untracked source is new throughout.
fmt_changed() {
  git -C "$root" diff -U0 --no-color --no-ext-diff --src-prefix=a/ --dst-prefix=b/ \
      --diff-filter=AMR "$1" -- '*.c' '*.h' |
    awk '/^\+\+\+ b\// { f = substr($0, 7); next }
         /^@@ /        { split($3, a, ","); n = (2 in a) ? a[2] + 0 : 1
                         if (n > 0) print f, substr(a[1], 2), n }'
  git -C "$root" ls-files --others --exclude-standard -- '*.c' '*.h' |
    while read -r f; do
      echo "$f 1 $(awk 'END { print NR }' "$root/$f")"
    done | awk '$3 > 0'
}

# Like "git clang-format --diff BASE", but it writes nothing into the
# repository (git-clang-format stores trees as objects) and it sees
# untracked files. Prints what clang-format would change in those lines.
format() {
  need git
  need clang-format
  git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1 ||
    skip "$root is not a git checkout"
  export GIT_OPTIONAL_LOCKS=0 # never refresh the index of a tree others work in
  local base changed f args bad=0 nfiles=0 nlines=0 first count
  base=$(fmt_base)
  changed=$(fmt_changed "$base")
  for f in $(awk '{ print $1 }' <<<"$changed" | sort -u); do
    args=()
    while read -r first count; do
      args+=("--lines=$first:$((first + count - 1))")
      nlines=$((nlines + count))
    done < <(awk -v f="$f" '$1 == f { print $2, $3 }' <<<"$changed")
    nfiles=$((nfiles + 1))
    clang-format --style=file "${args[@]}" "$root/$f" |
      diff -u --label "a/$f" --label "b/$f" "$root/$f" - || bad=1
  done
  if [ "$bad" = 0 ]; then
    echo "lint: format: $nlines changed lines in $nfiles files since ${base:0:12}: formatted"
    return 0
  fi
  echo "lint: format: the changed lines above differ from .clang-format;" \
       "fix: clang-format -i --lines=FIRST:LAST FILE, or git clang-format ${base:0:12}"
  return 1
}

# pyflakes (Debian: pyflakes3): unused imports and variables, undefined
# names, in every Python file of the tests, fuzz seeds, bench and scripts.
python_() {
  local pf
  if command -v pyflakes3 >/dev/null; then
    pf=(pyflakes3)
  elif python3 -c 'import pyflakes' 2>/dev/null; then
    pf=(python3 -m pyflakes)
  else
    skip "pyflakes3 is not installed (scripts/deps.sh test)"
  fi
  local files n
  mapfile -t files < <(cd "$root" && find tests fuzz bench scripts -name '*.py' -type f | sort)
  n=${#files[@]}
  if (cd "$root" && "${pf[@]}" "${files[@]}"); then
    echo "lint: python: $n files, no findings"
    return 0
  fi
  echo "lint: python: findings above"
  return 1
}

usage() { echo "usage: $0 analyzer|cppcheck|tidy DIR | format | python" >&2; exit 2; }

case "${1:-}" in
  analyzer) [ $# -eq 2 ] || usage; analyzer "$2" ;;
  cppcheck) [ $# -eq 2 ] || usage; cppcheck_ "$2" ;;
  tidy) [ $# -eq 2 ] || usage; tidy "$2" ;;
  format) [ $# -eq 1 ] || usage; format ;;
  python) [ $# -eq 1 ] || usage; python_ ;;
  *) usage ;;
esac
