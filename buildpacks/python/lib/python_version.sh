# shellcheck shell=bash
# Which Python the app gets (sourced by bin/compile). The request comes from, first found:
# runtime.txt (deprecated), .python-version, Pipfile.lock, pyproject.toml's requires-python, the
# last build's minor ("sticky"), else the default: the stack's own python3 (lib/debian_python.py
# reads them). The stack's python3 serves the default, its minor (a bare `3.13`) and its exact
# version without any download; any other request is looked up in the package indexes of the
# Debian releases in PYTHON_SUITES (their lists cached in CACHE_DIR/apt-<suite>, refreshed
# daily), so whatever CPython minor the mirror ships is offered without a change here.

# The Debian releases whose CPython can be installed, oldest first (the stack's is among them).
PYTHON_SUITES=${PYTHON_SUITES:-bookworm trixie forky}

# python_version::choose BUILD_DIR CACHE_DIR PACKAGE_MANAGER
# Sets PYTHON_VERSION (3.X.Y), PYTHON_MINOR (3.X) and PYTHON_SUITE (`stack` or a codename) and
# PYTHON_SUMMARY (that suite's lib/debian_python.py index); prints the steps; fails the build
# with one line naming what is on offer when nothing satisfies the request.
python_version::choose() {
  local build_dir=$1 cache_dir=$2 package_manager=$3
  local cached out kind request origin line lines
  cached=$(cat "$cache_dir/python-version" 2>/dev/null || true)
  out=$(python3 -I "$BP_DIR/lib/debian_python.py" request "$build_dir" "$package_manager" "$cached") || {
    mapfile -t lines <<<"$out"
    fail "${lines[@]}"
  }
  while IFS='|' read -r kind request origin; do
    if [ "$kind" = warning ]; then
      warn "$request"
    else
      break
    fi
  done <<<"$out"
  STACK_PYTHON_VERSION=$(python3 -I -c 'import platform; print(platform.python_version())')
  STACK_SUITE=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release)
  case "$origin" in
    default) topic "No Python version was specified. Using the buildpack default: Python ${STACK_PYTHON_VERSION%.*}" ;;
    cached) topic "No Python version was specified. Using the same version as the last build: Python $request" ;;
    pyproject.toml) topic "Using the newest Python that satisfies requires-python '$request' in pyproject.toml" ;;
    *) topic "Using Python $request specified in $origin" ;;
  esac
  [ "$origin" = default ] && info "To use another version, name it in a .python-version file, e.g. 3.14."

  PYTHON_SUMMARY=
  if [ "$kind" = default ] || { [ "$kind" = version ] &&
    { [ "$request" = "${STACK_PYTHON_VERSION%.*}" ] || [ "$request" = "$STACK_PYTHON_VERSION" ]; }; }; then
    python_version::set "$STACK_PYTHON_VERSION" stack
    return 0
  fi
  local suite summaries=() log
  log=$(mktemp)
  for suite in $PYTHON_SUITES; do
    [ "$suite" = "$STACK_SUITE" ] && continue
    python_version::summary "$cache_dir" "$suite" 2>&1 | tee "$log" | indent || fail "$(tail -1 "$log")"
    summaries+=("$(APT_SUITE=$suite apt_state "$cache_dir")/pythons.json")
  done
  rm -f "$log"
  if ! out=$(python3 -I "$BP_DIR/lib/debian_python.py" resolve "$kind" "$request" "$STACK_PYTHON_VERSION" \
    "$STACK_SUITE" "$PYTHON_SUITES" "${summaries[@]}"); then
    if [ "$origin" = cached ]; then
      warn "$out"
      info "Using the buildpack default, Python ${STACK_PYTHON_VERSION%.*}, instead."
      python_version::set "$STACK_PYTHON_VERSION" stack
      return 0
    fi
    mapfile -t lines <<<"$out"
    fail "${lines[@]}"
  fi
  IFS=$'\t' read -r line suite <<<"$out"
  python_version::set "$line" "$suite"
  [ "$suite" = stack ] || PYTHON_SUMMARY="$(APT_SUITE=$suite apt_state "$cache_dir")/pythons.json"
}

python_version::set() {
  PYTHON_VERSION=$1
  PYTHON_SUITE=$2
  PYTHON_MINOR=${1%.*}
}

# python_version::summary CACHE_DIR SUITE: refreshes the suite's package lists (daily) and, when
# they changed, the summary of its Pythons (CACHE_DIR/apt-SUITE/pythons.json). Its last line
# says why when it fails.
python_version::summary() {
  local cache_dir=$1 suite=$2 state opts
  state=$(APT_SUITE=$suite apt_state "$cache_dir")
  APT_SUITE=$suite apt_update "$cache_dir" || return 1
  if [ -s "$state/pythons.json" ] && [ -z "$(find "$state/lists" -maxdepth 1 -name '*_Packages*' -newer "$state/pythons.json")" ]; then
    return 0
  fi
  read -r -a opts <<<"$(APT_SUITE=$suite apt_opts "$cache_dir")"
  if ! apt-cache "${opts[@]}" dumpavail | python3 -I "$BP_DIR/lib/debian_python.py" index "$suite" >"$state/pythons.json.new"; then
    echo "Could not read the package lists of $suite (apt-cache dumpavail failed)."
    return 1
  fi
  mv "$state/pythons.json.new" "$state/pythons.json"
}
