# shellcheck shell=bash
# The app's package manager (sourced by bin/compile), as Heroku decides it: exactly one of
# Pipfile.lock (Pipenv), requirements.txt (pip), poetry.lock (Poetry), uv.lock (uv); none of them
# but pyproject.toml, setup.py or a bare Pipfile: pip installs the project itself (`pip install .`),
# or Pipenv without a lock file. The tools come from PyPI at pinned versions into CACHE_DIR/tools
# (one per tool and version: a venv of the stack's python3 for Poetry and Pipenv, uv's static
# binary from its wheel), reused by later builds; they install the app's locked dependencies
# into /app/.venv, made with the chosen Python.

POETRY_VERSION=2.5.1
UV_VERSION=0.13.9
PIPENV_VERSION=2026.10.3

# package_manager::detect BUILD_DIR: sets PM to pip, project, poetry, uv or pipenv.
package_manager::detect() {
  local build_dir=$1 found=()
  PM=
  [ -f "$build_dir/Pipfile.lock" ] && found+=(pipenv)
  [ -f "$build_dir/requirements.txt" ] && found+=(pip)
  [ -f "$build_dir/poetry.lock" ] && found+=(poetry)
  [ -f "$build_dir/uv.lock" ] && found+=(uv)
  case ${#found[@]} in
    1) PM=${found[0]} ;;
    0)
      if [ -f "$build_dir/Pipfile" ]; then
        PM=pipenv
      elif [ -f "$build_dir/pyproject.toml" ] || [ -f "$build_dir/setup.py" ]; then
        PM=project
      else
        fail "Error: Couldn't find any supported Python package manager files." \
          "A Python app must have a 'requirements.txt', 'Pipfile.lock', 'poetry.lock' or 'uv.lock'" \
          "(or a pyproject.toml/setup.py that pip installs) in the root directory of its source code."
      fi
      ;;
    *)
      local files=() pm
      for pm in "${found[@]}"; do
        case $pm in
          pipenv) files+=(Pipfile.lock) ;; pip) files+=(requirements.txt) ;;
          poetry) files+=(poetry.lock) ;; uv) files+=(uv.lock) ;;
        esac
      done
      fail "Error: Multiple Python package manager files were found: $(printf '%s\n' "${files[@]}" | paste -sd, | sed 's/,/, /g')." \
        "Exactly one package manager must be used; delete the files of the others" \
        "(a requirements.txt exported from poetry.lock or uv.lock included)."
      ;;
  esac
}

# package_manager::label PM BUILD_DIR: how the build log names what the venv is made from.
package_manager::label() {
  case $1 in
    pip) echo requirements ;; project) echo project ;; poetry) echo poetry.lock ;; uv) echo uv.lock ;;
    pipenv) if [ -f "$2/Pipfile.lock" ]; then echo Pipfile.lock; else echo Pipfile; fi ;;
  esac
}

# package_manager::tool_version PM: the pinned version of the tool (pip's is its wheel's).
package_manager::tool_version() {
  case $1 in
    poetry) echo "$POETRY_VERSION" ;; uv) echo "$UV_VERSION" ;; pipenv) echo "$PIPENV_VERSION" ;;
    *) basename "$PIP_WHEEL" | cut -d- -f2 ;;
  esac
}

# package_manager::tool CACHE_DIR NAME VERSION: makes sure CACHE_DIR/tools/NAME-VERSION holds a
# working NAME (a venv of the stack's python3, or uv's binary); prints its path.
package_manager::tool() {
  local cache_dir=$1 name=$2 version=$3 label dir log
  case $name in poetry) label=Poetry ;; pipenv) label=Pipenv ;; *) label=$name ;; esac
  dir="$cache_dir/tools/$name-$version"
  TOOL="$dir/bin/$name"
  if "$TOOL" --version >/dev/null 2>&1; then
    topic "Using cached $label $version"
    return 0
  fi
  topic "Installing $label $version"
  rm -rf "$dir"
  mkdir -p "$dir/bin"
  log=$(mktemp)
  set +e
  if [ "$name" = uv ]; then
    # uv is one static binary, in its wheel's scripts: no venv needed.
    (python3 -I "$PIP_WHEEL/pip" download --quiet --no-deps --only-binary :all: --index-url "$INDEX_URL" \
      --dest "$dir/wheel" "uv==$version" &&
      python3 -I -c '
import glob, os, sys, zipfile
wheel = zipfile.ZipFile(glob.glob(os.path.join(sys.argv[1], "uv-*.whl"))[0])
member = next(n for n in wheel.namelist() if n.endswith(".data/scripts/uv"))
with wheel.open(member) as src, open(sys.argv[2], "wb") as dst:
    dst.write(src.read())
os.chmod(sys.argv[2], 0o755)' "$dir/wheel" "$TOOL" && rm -rf "$dir/wheel") 2>&1 | tee "$log" | indent
  else
    (python3 -m venv --without-pip "$dir/venv" &&
      "$dir/venv/bin/python" "$PIP_WHEEL/pip" install --quiet --index-url "$INDEX_URL" "$name==$version" &&
      ln -sfn "$dir/venv/bin/$name" "$TOOL") 2>&1 | tee "$log" | indent
  fi
  local status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -ne 0 ] || ! "$TOOL" --version >/dev/null 2>&1; then
    local network
    network=$(pip::network_error "$log")
    rm -rf "$dir"
    fail "Error: Unable to install $label $version from $(url_host "$INDEX_URL")." \
      "${network:-$(grep -E '^ERROR' "$log" | head -1 | sed 's/^ERROR: //')}"
  fi
  rm -f "$log"
  info "$("$TOOL" --version 2>&1 | head -1)"
  # Other versions of the tool leave the cache.
  find "$cache_dir/tools" -mindepth 1 -maxdepth 1 -name "$name-*" ! -name "$name-$version" -exec rm -rf {} +
}

# package_manager::install PM BUILD_DIR CACHE_DIR VENV: installs the app's dependencies into
# VENV (made by bin/compile with the chosen Python, without pip for Poetry, uv and Pipenv).
package_manager::install() {
  local pm=$1 build_dir=$2 cache_dir=$3 venv=$4 log status started
  # The stack's CA store is the one to trust (pip and uv use it; Poetry's and Pipenv's requests
  # would use certifi's bundle instead), unless the app says otherwise.
  local CA_BUNDLE=${REQUESTS_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
  log="$cache_dir/$pm-install.log"
  started=$(now)
  case $pm in
    pip) pip::install_requirements "$build_dir" "$cache_dir" "$venv" requirements && return 0 ;;
    project) pip::install_requirements "$build_dir" "$cache_dir" "$venv" project && return 0 ;;
  esac
  package_manager::tool "$cache_dir" "$pm" "$(package_manager::tool_version "$pm")"
  set +e
  case $pm in
    poetry)
      topic "Installing dependencies using 'poetry sync --only main'"
      # The venv is active (VIRTUAL_ENV), so Poetry installs into it; it never makes its own.
      (cd "$build_dir" && VIRTUAL_ENV=$venv PATH="$venv/bin:$PATH" POETRY_VIRTUALENVS_CREATE=false REQUESTS_CA_BUNDLE=$CA_BUNDLE \
        POETRY_CACHE_DIR="$cache_dir/poetry-cache" POETRY_NO_INTERACTION=1 \
        POETRY_REQUESTS_MAX_RETRIES=${POETRY_REQUESTS_MAX_RETRIES:-5} POETRY_REQUESTS_TIMEOUT=${POETRY_REQUESTS_TIMEOUT:-30} \
        "$TOOL" sync --only main --compile --no-ansi) 2>&1 | tee "$log" | sed -u '/Skipping virtualenv creation/d' | indent
      status=${PIPESTATUS[0]}
      ;;
    uv)
      topic "Installing dependencies using 'uv sync --locked --no-default-groups'"
      # UV_PYTHON: exactly the chosen Python; uv never downloads one of its own.
      (cd "$build_dir" && UV_PROJECT_ENVIRONMENT=$venv UV_PYTHON=$PYTHON UV_PYTHON_DOWNLOADS=never \
        UV_NO_MANAGED_PYTHON=1 UV_CACHE_DIR="$cache_dir/uv-cache" UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 \
        UV_NO_PROGRESS=1 UV_SYSTEM_CERTS=${UV_SYSTEM_CERTS:-1} UV_HTTP_RETRIES=${UV_HTTP_RETRIES:-5} UV_HTTP_TIMEOUT=${UV_HTTP_TIMEOUT:-30} \
        "$TOOL" sync --locked --no-default-groups --color never) 2>&1 | tee "$log" | indent
      status=${PIPESTATUS[0]}
      ;;
    pipenv)
      local command=(install --deploy)
      [ -f "$build_dir/Pipfile.lock" ] || {
        warn "No 'Pipfile.lock' found: commit it (pipenv lock), so that every build installs the same versions."
        command=(install --skip-lock)
      }
      topic "Installing dependencies using 'pipenv ${command[*]}'"
      # The venv is active (VIRTUAL_ENV), so Pipenv installs into it with its own pip.
      (cd "$build_dir" && VIRTUAL_ENV=$venv PATH="$venv/bin:$PATH" PIPENV_NOSPIN=1 \
        PIPENV_YES=1 REQUESTS_CA_BUNDLE=$CA_BUNDLE PIPENV_CACHE_DIR="$cache_dir/pipenv-cache" PIP_CACHE_DIR="$cache_dir/pipenv-cache" \
        PIP_SRC="$venv/src" "$TOOL" "${command[@]}") 2>&1 | tee "$log" |
        sed -u '/^Courtesy Notice/,/PIPENV_VERBOSITY=-1 to suppress/d' | indent
      status=${PIPESTATUS[0]}
      ;;
  esac
  set -e
  if [ "$status" -ne 0 ]; then
    local network label
    network=$(pip::network_error "$log")
    case $pm in poetry) label=Poetry ;; pipenv) label=Pipenv ;; *) label=$pm ;; esac
    fail "Error: Unable to install dependencies using $label (exit $status)." \
      "$(grep -E '^(error|ERROR|Error)' "$log" | head -1 | cut -c1-300)" ${network:+"$network"}
  fi
  info "$pm: $(package_manager::count "$venv") packages in the virtualenv, in $(($(now) - started))s"
}

# package_manager::count VENV: how many distributions the venv holds (pip aside).
package_manager::count() {
  find "$1"/lib/python*/site-packages -maxdepth 1 -name '*.dist-info' ! -name 'pip-*' 2>/dev/null | wc -l
}
