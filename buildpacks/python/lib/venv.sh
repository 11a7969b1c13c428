# shellcheck shell=bash
# The app's virtualenv, /app/.venv, and its copy in the build cache (sourced by bin/compile).
# CACHE_DIR/venv holds the last successful build's venv as venv.tar (uncompressed: one file to
# write in the cache, and extracting it beats `cp -a` of hundreds of files), `packages` (how
# many, pip aside) and `inputs`: what decided its content (lib/venv_inputs.py: the Python, the
# package manager and its version, the requirement and lock files, the config vars of the tools,
# the buildpack's scripts, the app's files when it installs itself). A build with the same inputs
# extracts it and runs no package manager.

# venv::inputs BUILD_DIR PM: prints the inputs (lib/venv_inputs.py, run by the chosen Python).
venv::inputs() {
  local build_dir=$1 pm=$2 own
  own=("$BP_DIR/bin/compile" "$BP_DIR"/lib/*.sh "$BP_DIR/lib/venv_inputs.py")
  "$PYTHON" -I "$BP_DIR/lib/venv_inputs.py" "$build_dir" "$pm" "$(package_manager::tool_version "$pm")" \
    "$PIP_WHEEL" "${own[@]}"
}

# venv::restore BUILD_DIR CACHE_DIR INPUTS LABEL TOOL: extracts the cached venv when its inputs
# are INPUTS; returns 1 (nothing restored) otherwise.
venv::restore() {
  local build_dir=$1 cache_dir=$2 inputs=$3 label=$4 tool=$5 cached="$2/venv" venv="$1/.venv"
  [ -f "$cached/inputs" ] && [ -f "$cached/venv.tar" ] && [ "$(cat "$cached/inputs")" = "$inputs" ] || return 1
  topic "Restoring the virtualenv from the build cache ($label unchanged)"
  rm -rf "$venv"
  if tar -C "$build_dir" --no-same-owner -xf "$cached/venv.tar" 2>&1 | indent && "$venv/bin/python" -c '' 2>/dev/null; then
    info "$tool: $(cat "$cached/packages" 2>/dev/null || echo 0) from the build cache, 0 downloaded ($tool not run: the cached virtualenv has them)"
    return 0
  fi
  warn "Could not restore the virtualenv from the build cache; building it again."
  rm -rf "$venv" "$cached"
  return 1
}

# venv::why_rebuilt CACHE_DIR INPUTS: says why the cached venv is not used.
venv::why_rebuilt() {
  local cached="$1/venv" inputs=$2 changed
  if [ -f "$cached/inputs" ]; then
    changed=$({ diff <(cat "$cached/inputs") <(echo "$inputs") || true; } | sed -n 's/^[<>] //p' |
      awk '{ print ($1 == "file" || $1 == "env" || $1 == "buildpack") ? $2 : ($1 == "app" ? "the app'"'"'s files" : $1) }' |
      sort -u | paste -sd, | sed 's/,/, /g')
    info "The build cache's virtualenv is out of date (changed: ${changed:-its format})"
  else
    info "No virtualenv in the build cache yet"
  fi
}

# venv::save BUILD_DIR CACHE_DIR INPUTS: keeps BUILD_DIR/.venv for the next build, written aside
# then swapped in (a copy cut short is never used). Never fails the build.
venv::save() {
  local build_dir=$1 inputs=$3 started cached="$2/venv"
  started=$(now)
  if venv::write "$build_dir" "$cached" "$inputs"; then
    info "Saved the virtualenv in the build cache in $(($(now) - started))s"
  else
    rm -rf "$cached.new"
    warn "Could not save the virtualenv in the build cache; the next build installs it again."
  fi
}

venv::write() {
  local build_dir=$1 cached=$2 inputs=$3
  rm -rf "$cached.new" "$cached.old" || return 1
  mkdir -p "$cached.new" && tar -C "$build_dir" -cf "$cached.new/venv.tar" .venv || return 1
  package_manager::count "$build_dir/.venv" >"$cached.new/packages" || return 1
  echo "$inputs" >"$cached.new/inputs" || return 1
  if [ -e "$cached" ]; then mv "$cached" "$cached.old" || return 1; fi
  mv "$cached.new" "$cached" || return 1
  rm -rf "$cached.old"
}
