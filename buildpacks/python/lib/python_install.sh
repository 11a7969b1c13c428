# shellcheck shell=bash
# Installs the chosen Python (sourced by bin/compile; python_version.sh chose it).
#
# The stack's own python3 (Debian trixie's) needs nothing: the venv is made from it. Any other
# comes from its own Debian release's .debs (python3.X-minimal, libpython3.X-minimal,
# libpython3.X-stdlib and their shared-library closure, verified by apt against that release's
# signed Release file) into /app/.heroku/python (Heroku's path), laid out as a prefix (bin/,
# lib/python3.X/, lib/x86_64-linux-gnu/). A release whose C library is newer than the stack's
# (forky: glibc 2.43 on trixie's 2.41; its lib-dynload modules need GLIBC_2.42) also brings
# that C library: patchelf gives the python executable that release's dynamic loader
# (PT_INTERP) and a DT_RPATH to the vendored lib dir. DT_RPATH, not RUNPATH: the executable's
# RPATH also applies to the libraries and extension modules dlopen'ed later, so _ssl finds the
# vendored libssl and the vendored libc is the only one in the process. An older release
# (bookworm) runs on the stack's C library (glibc is backward compatible, and wheels or system
# libraries that need a newer glibc keep working): only the RPATH is set. The vendored libc is
# never on LD_LIBRARY_PATH: every other program (/bin/sh, gcc) keeps the stack's.
# The processed install is kept in CACHE_DIR/python/<version>-<suite> with the .debs it came
# from; a warm build copies it into /app.

# Incremented when the way an install is laid out changes (the cached ones are then redone).
PYTHON_LAYOUT=1

# python::install BUILD_DIR CACHE_DIR: sets PYTHON, the interpreter to make the venv with.
python::install() {
  local build_dir=$1 cache_dir=$2
  if [ "$PYTHON_SUITE" = stack ]; then
    PYTHON=$(command -v python3) || fail "The stack has no python3."
    topic "Using the stack's Python $PYTHON_VERSION ($STACK_SUITE's python3, nothing to download)"
    # Another release's Python of an earlier build leaves the cache.
    rm -rf "$cache_dir"/python/3.*
    return 0
  fi
  local home=/app/.heroku/python
  [ "$build_dir" = /app ] || fail "Python $PYTHON_VERSION from Debian $PYTHON_SUITE runs from $home only: build in /app." \
    "(The stack's Python, ${STACK_PYTHON_VERSION%.*}, builds anywhere.)"
  local packages libc stack_libc
  libc=$(python3 -I -c 'import json, sys; print(json.load(open(sys.argv[1]))["libc6"])' "$PYTHON_SUMMARY")
  stack_libc=$(dpkg-query -W -f '${Version}' libc6)
  local field=packages_without_libc
  if dpkg --compare-versions "$libc" gt "$stack_libc"; then field=packages; fi
  packages=$(python3 -I -c 'import json, sys; print(" ".join(json.load(open(sys.argv[1]))["pythons"][sys.argv[2]][sys.argv[3]]))' \
    "$PYTHON_SUMMARY" "$PYTHON_MINOR" "$field")
  local cached="$cache_dir/python/$PYTHON_VERSION-$PYTHON_SUITE" key
  # What the install is made of: a newer .deb of any of them (a security update) makes it again.
  key="layout $PYTHON_LAYOUT; $PYTHON_SUITE: $(python3 -I -c '
import json, sys
versions = json.load(open(sys.argv[1]))["pythons"][sys.argv[2]]["versions"]
print(" ".join(f"{name}={versions[name]}" for name in sys.argv[3:]))' "$PYTHON_SUMMARY" "$PYTHON_MINOR" $packages)"
  if [ -f "$cached/.key" ] && [ "$(cat "$cached/.key")" = "$key" ]; then
    topic "Using cached install of Python $PYTHON_VERSION (Debian $PYTHON_SUITE)"
  else
    topic "Installing Python $PYTHON_VERSION from Debian $PYTHON_SUITE"
    python::vendor "$cache_dir" "$cached" "$key" "$home" "$packages"
  fi
  rm -rf "$build_dir/.heroku/python"
  mkdir -p "$build_dir/.heroku/python"
  cp -a "$cached/." "$build_dir/.heroku/python/"
  rm -f "$build_dir/.heroku/python/.key"
  PYTHON="$home/bin/python$PYTHON_MINOR"
  local check
  if ! check=$("$PYTHON" -I -c 'import ssl, sqlite3, ctypes, lzma, bz2, zlib, pyexpat, decimal, hashlib, uuid, readline, termios, sys; print(sys.version.split()[0])' 2>&1) ||
    [ "$check" != "$PYTHON_VERSION" ]; then
    rm -rf "$cached"
    fail "Python $PYTHON_VERSION from Debian $PYTHON_SUITE does not run here: $(tail -1 <<<"$check")"
  fi
  info "$(du -sm "$build_dir/.heroku/python" | cut -f1) MB in .heroku/python: $PYTHON_SUITE's python$PYTHON_MINOR$([ "$field" = packages ] && echo " with its C library") ($(wc -w <<<"$packages") packages)"
}

# python::vendor CACHE_DIR DEST KEY HOME PACKAGES: downloads PACKAGES from PYTHON_SUITE and lays
# them out in DEST as a prefix that runs from HOME.
python::vendor() {
  local cache_dir=$1 dest=$2 key=$3 home=$4 packages=$5 log
  local root="$cache_dir/python/root" patchelf_root="$cache_dir/python/patchelf"
  log=$(mktemp)
  # shellcheck disable=SC2086 # PACKAGES is a list of Debian package names.
  APT_SUITE=$PYTHON_SUITE apt_fetch "$cache_dir" "$root" $packages 2>&1 | tee "$log" | indent ||
    fail "$(tail -1 "$log")"
  # patchelf comes from the stack's own release: it runs here, in the build.
  APT_SUITE=$STACK_SUITE apt_fetch "$cache_dir" "$patchelf_root" patchelf 2>&1 | tee "$log" | indent ||
    fail "$(tail -1 "$log")"
  rm -f "$log"
  local new="$dest.new" dir
  rm -rf "$new" "$dest"
  mkdir -p "$new"
  # One prefix: usr/* and the pre-/usr-merge top-level dirs (bookworm's /lib) merged.
  cp -a "$root/usr/." "$new/"
  for dir in lib lib64 bin sbin etc; do
    if [ -d "$root/$dir" ] && [ ! -L "$root/$dir" ]; then
      mkdir -p "$new/$dir"
      cp -a "$root/$dir/." "$new/$dir/"
    fi
  done
  rm -rf "$new"/share/{doc,man,lintian,binfmts,bug} "$new/lib/binfmt.d" "$new/etc/ld.so.conf.d"
  # Absolute links inside the tree (lib/python3.X/sitecustomize.py -> /etc/python3.X/...) become
  # relative ones; links to what the tree lacks are dropped.
  local link target
  while IFS= read -r -d '' link; do
    target=$(readlink "$link")
    target=${target#/usr}
    if [ -e "$new$target" ] || [ -L "$new$target" ]; then
      ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$new$target")" "$link"
    else
      rm -f "$link"
    fi
  done < <(find "$new" -type l -lname '/*' -print0)
  local python="$new/bin/python$PYTHON_MINOR" libdir="$home/lib/x86_64-linux-gnu"
  [ -x "$python" ] || fail "The .debs of Python $PYTHON_VERSION have no bin/python$PYTHON_MINOR."
  local args=(--no-sort --force-rpath --set-rpath "$libdir")
  # With its own C library: its own loader too (a loader only works with its own libc).
  if [ -e "$new/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" ]; then
    args+=(--set-interpreter "$libdir/ld-linux-x86-64.so.2")
  fi
  # --no-sort: patchelf 0.18's section sorting leaves this non-PIE executable crashing at start.
  "$patchelf_root/usr/bin/patchelf" "${args[@]}" "$python" 2>&1 | indent ||
    fail "patchelf could not point python$PYTHON_MINOR at its libraries."
  ln -sfn "python$PYTHON_MINOR" "$new/bin/python3"
  ln -sfn "python$PYTHON_MINOR" "$new/bin/python"
  echo "$key" >"$new/.key"
  mv "$new" "$dest"
  # One install is kept: the others leave the cache.
  find "$cache_dir/python" -mindepth 1 -maxdepth 1 -name '3.*' ! -path "$dest" -exec rm -rf {} +
  # The raw .debs' tree is not needed any more (apt_fetch extracts again if ever needed).
  rm -rf "$root"
  info "Python $PYTHON_VERSION laid out in .heroku/python$([ -e "$dest/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" ] && echo ", with $PYTHON_SUITE's C library and loader")"
}
