# shellcheck shell=bash
# pip (sourced by bin/compile). Debian's Pythons have no ensurepip, so pip comes from PyPI as a
# wheel: the newest pip-*-py3-none-any.whl of the index, checked against the sha256 the index
# gives, kept in CACHE_DIR/pip-wheel and refreshed weekly. pip runs straight from the wheel
# (`python pip.whl/pip install ...`) to install itself into a venv, or the package managers.

# pip::wheel CACHE_DIR: sets PIP_WHEEL.
pip::wheel() {
  local cache_dir=$1 link name err
  mkdir -p "$cache_dir/pip-wheel"
  PIP_WHEEL=$(find "$cache_dir/pip-wheel" -maxdepth 1 -name 'pip-*-py3-none-any.whl' -printf '%T@ %p\n' 2>/dev/null |
    sort -rn | head -1 | cut -d' ' -f2-)
  if [ -n "$PIP_WHEEL" ] && [ -z "$(find "$PIP_WHEEL" -mtime +7)" ]; then
    info "Using cached $(basename "$PIP_WHEEL")"
    return 0
  fi
  err=$(mktemp)
  link=$(curl_fetch "$INDEX_URL/pip/" 2>"$err" | python3 -I -c '
import re, sys
links = re.findall(r"href=\"([^\"]*/(pip-([0-9.]+)-py3-none-any\.whl)#sha256=([0-9a-f]{64}))\"", sys.stdin.read())
links.sort(key=lambda l: tuple(int(x) for x in l[2].split(".")))
print(links[-1][0] if links else "")') || true
  if [ -n "$link" ]; then
    name=$(basename "${link%%#*}")
    curl_fetch "${link%%#*}" -o "$cache_dir/pip-wheel/$name.part" 2>"$err" || fail "$(cat "$err")"
    echo "${link##*sha256=}  $cache_dir/pip-wheel/$name.part" | sha256sum -c --quiet >/dev/null ||
      fail "pip's wheel does not match the sha256 that $INDEX_URL gives."
    mv "$cache_dir/pip-wheel/$name.part" "$cache_dir/pip-wheel/$name"
    find "$cache_dir/pip-wheel" -name 'pip-*.whl' ! -name "$name" -delete
    PIP_WHEEL="$cache_dir/pip-wheel/$name"
    info "Downloaded $name"
  elif [ -n "$PIP_WHEEL" ]; then
    warn "Could not look for a newer pip ($(cat "$err")); using the cached $(basename "$PIP_WHEEL")."
  else
    fail "Could not find pip on $INDEX_URL: $(cat "$err")"
  fi
  rm -f "$err"
}

# pip::network_error LOG: when pip's log shows that it could not reach the index (after its
# retries), a line naming the host and pip's last complaint; empty otherwise.
pip::network_error() {
  local line
  line=$(grep -E "Retrying \(Retry\(|Max retries exceeded|NewConnectionError|Read timed out|Could not fetch URL|ConnectTimeoutError" "$1" | tail -1)
  [ -n "$line" ] || return 0
  echo "Could not download from $(url_host "$INDEX_URL") (pip retried ${PIP_RETRIES:-5} times): $(sed -E 's/^ *(WARNING|ERROR): //' <<<"$line" | cut -c1-300)"
}

# pip::install_requirements BUILD_DIR CACHE_DIR VENV WHAT: `requirements` (requirements.txt) or
# `project` (`pip install .`). Wheels are kept in CACHE_DIR/wheels (a wheelhouse: pip's HTTP
# cache depends on the index's cache headers, this does not): `pip wheel` downloads or builds
# only what is not there yet, then `pip install --no-index` installs from it.
pip::install_requirements() {
  local build_dir=$1 cache_dir=$2 venv=$3 what=$4 status log pip_start downloaded cached
  local wheels="$cache_dir/wheels"
  mkdir -p "$wheels"
  log="$cache_dir/pip-install.log"
  pip_start=$(now)
  set +e
  if [ "$what" = requirements ]; then
    topic "Installing requirements with pip"
    (cd "$build_dir" && PYTHONDONTWRITEBYTECODE=1 "$venv/bin/pip" wheel --index-url "$INDEX_URL" --wheel-dir "$wheels" \
      --find-links "$wheels" -r requirements.txt && PYTHONDONTWRITEBYTECODE=1 "$venv/bin/pip" install --no-index --find-links "$wheels" -r requirements.txt) 2>&1 |
      grep -v '^Looking in links' | tee "$log" | indent
    status=${PIPESTATUS[0]}
  else
    topic "Installing the project with pip"
    (cd "$build_dir" && PYTHONDONTWRITEBYTECODE=1 "$venv/bin/pip" install --index-url "$INDEX_URL" --find-links "$wheels" .) 2>&1 |
      grep -v '^Looking in links' | tee "$log" | indent
    status=${PIPESTATUS[0]}
  fi
  set -e
  if [ "$status" -ne 0 ]; then
    local network
    network=$(pip::network_error "$log")
    fail "Push rejected, failed to install the requirements with pip (exit $status)." \
      "$(grep -E '^ERROR' "$log" | head -1 | sed 's/^ERROR: //')" ${network:+"$network"}
  fi
  downloaded=$(grep -c '^ *Downloading ' "$log" || true)
  cached=$(grep -cE '^ *(File was already downloaded|Using cached)' "$log" || true)
  info "pip: $cached from the build cache, $downloaded downloaded, in $(($(now) - pip_start))s"
  # Wheels no requirement used for 30 days leave the cache.
  find "$wheels" -name '*.whl' -atime +30 -delete 2>/dev/null || true
}
