# Shared helpers of Ouro's buildpacks (sourced by bin/compile; never run on its own).
# Output follows Heroku: steps "-----> ", details indented 7 spaces, errors " !     ".

topic() { echo "-----> $*"; }
info() { echo "       $*"; }
# Indents a command's output: `cmd 2>&1 | indent`.
indent() { sed -u 's/^/       /'; }
warn() { echo " !     Warning: $*"; }
# Prints an error in Heroku's style (to stdout, the build log) and exits 1.
fail() {
  local line
  for line in "$@"; do echo " !     $line"; done
  exit 1
}

# Exports the config vars of ENV_DIR (one file per variable, its content the value) into this
# process, except those that would break the build tools. Names are checked; files are read,
# never sourced.
export_env_dir() {
  local env_dir=$1 path name
  [ -d "$env_dir" ] || return 0
  for path in "$env_dir"/*; do
    [ -f "$path" ] || continue
    name=$(basename "$path")
    [[ "$name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
    case "$name" in
      PATH | GIT_DIR | CPATH | CPPATH | LD_PRELOAD | LIBRARY_PATH | LD_LIBRARY_PATH | PYTHONHOME | BUILD_DIR | CACHE_DIR | ENV_DIR) continue ;;
    esac
    export "$name=$(cat "$path")"
  done
}

# Seconds since the epoch, for timings.
now() { date +%s; }

# Debian packages from the stack's own mirror (/etc/apt/sources.list), verified by apt against
# the archive's signed Release file, with apt's lists and the downloaded .debs kept in a cache
# directory so that a second build downloads nothing.
#   apt_fetch CACHE DEST PKG...   downloads PKG... (exact names) into CACHE/apt/archives unless
#                                 there, and extracts them into DEST (dpkg-deb -x) unless DEST
#                                 already holds exactly these .debs (DEST/.debs lists them)
apt_opts() {
  local state="$1/apt"
  echo "-o Dir::State::Lists=$state/lists -o Dir::Cache=$state -o Dir::Cache::archives=$state/archives -o APT::Sandbox::User=root -o Debug::NoLocking=1 -o Acquire::Languages=none"
}
apt_fetch() {
  local cache=$1 dest=$2
  shift 2
  local state="$cache/apt" opts
  mkdir -p "$state/lists/partial" "$state/archives/partial"
  read -r -a opts <<<"$(apt_opts "$cache")"
  # Refresh the package lists at most once a day.
  if [ -z "$(find "$state/lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    echo "Updating the package lists from the Debian mirror"
    rm -f "$state"/*.bin
    apt-get "${opts[@]}" -qq update || return 1
  fi
  local files
  files=$(apt-cache "${opts[@]}" show --no-all-versions "$@" | sed -n 's/^Filename: //p' | xargs -r -n1 basename | sort)
  [ "$(echo "$files" | grep -c .)" -eq $# ] || { echo "some of $* are not on the mirror"; return 1; }
  local f missing=()
  for f in $files; do [ -f "$state/archives/$f" ] || missing+=("${f%%_*}"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Downloading ${missing[*]}"
    (cd "$state/archives" && apt-get "${opts[@]}" -qq download "${missing[@]}") || return 1
    # apt names a version with an epoch "1%3a2.0"; the pool's file name has no epoch.
    for f in "$state/archives"/*%3a*.deb; do
      [ -e "$f" ] && mv "$f" "$(dirname "$f")/$(basename "$f" | sed 's/_[0-9]*%3a/_/')"
    done
  fi
  if [ "$(cat "$dest/.debs" 2>/dev/null)" != "$files" ]; then
    rm -rf "$dest"
    mkdir -p "$dest"
    for f in $files; do dpkg-deb -x "$state/archives/$f" "$dest" || return 1; done
    echo "$files" >"$dest/.debs"
  fi
  # Old versions leave the cache.
  for f in "$state/archives"/*.deb; do
    [ -e "$f" ] && ! grep -qxF "$(basename "$f")" <<<"$files" && [ -n "$(find "$f" -mtime +30)" ] && rm -f "$f"
  done
  return 0
}

# The Version of a Debian package on the mirror (after apt_fetch has refreshed the lists).
apt_version() {
  local opts
  read -r -a opts <<<"$(apt_opts "$1")"
  apt-cache "${opts[@]}" show --no-all-versions "$2" 2>/dev/null | sed -n 's/^Version: //p' | head -1
}
