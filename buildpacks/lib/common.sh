# shellcheck shell=bash
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

# The host of a URL, for messages that say which server failed ("deb.debian.org").
url_host() { sed -E 's#^[a-z+]+://([^/@]*@)?([^/:]+).*#\2#' <<<"$1"; }

# Downloads a URL with curl, retrying transient failures (refused or reset connections, DNS,
# timeouts, HTTP 5xx: 5 tries, backing off up to 2 minutes in all).
#   curl_fetch URL [CURL-ARGS...]     body on stdout (or where -o says)
# On failure prints "Could not download URL from HOST: <curl's error>" on stderr and returns
# curl's exit code.
curl_fetch() {
  local url=$1 err status
  shift
  err=$(mktemp)
  curl -fsSL --retry "${CURL_RETRIES:-5}" --retry-all-errors --retry-max-time 120 --connect-timeout 15 \
    --max-time "${CURL_TIMEOUT:-300}" "$@" "$url" 2>"$err" && status=0 || status=$?
  if [ "$status" -ne 0 ]; then
    echo "Could not download $url from $(url_host "$url"): $(grep -v '^$' "$err" | tail -1)" >&2
  fi
  rm -f "$err"
  return "$status"
}

# Debian packages from the stack's own mirror, verified by apt against the archive's signed
# Release file, with apt's lists and the downloaded .debs kept in a cache directory so that a
# second build downloads nothing.
#   apt_fetch CACHE DEST PKG...   downloads PKG... (exact names) into CACHE/apt/archives unless
#                                 there, and extracts them into DEST (dpkg-deb -x) unless DEST
#                                 already holds exactly these .debs (DEST/.debs lists them)
# By default from the stack's /etc/apt/sources.list (Debian 13 trixie), in CACHE/apt. With
# APT_SUITE=<codename> (bookworm, forky, ...) from that suite of the same mirror instead, in
# CACHE/apt-<codename>: its own sources list, no installed packages seen (an empty dpkg status,
# so apt picks that suite's versions, never the stack's), lists kept compressed and no binary
# caches (they would be ~100 MB a suite). APT_MIRROR overrides the mirror's URL.
# Every fetch retries transient failures (Acquire::Retries, APT_RETRIES, default 5, with apt's
# backoff: ~30 s in all) with a 30 s timeout; when it still fails, the last line printed is
# "Could not download <what> from <host>: <apt's E: line>" (the lists of a day before are used,
# with a warning, when only their refresh fails).
apt_mirror() {
  local url=${APT_MIRROR:-}
  if [ -z "$url" ]; then
    url=$(sed -nE 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p' /etc/apt/sources.list 2>/dev/null | head -1)
  fi
  echo "${url:-http://deb.debian.org/debian}"
}
apt_state() {
  if [ -n "${APT_SUITE:-}" ]; then echo "$1/apt-$APT_SUITE"; else echo "$1/apt"; fi
}
apt_opts() {
  local state
  state=$(apt_state "$1")
  printf '%s ' -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state" -o "Dir::Cache::archives=$state/archives" \
    -o APT::Sandbox::User=root -o Debug::NoLocking=1 -o Acquire::Languages=none \
    -o "Acquire::Retries=${APT_RETRIES:-5}" -o Acquire::http::Timeout=30 -o Acquire::https::Timeout=30
  if [ -n "${APT_SUITE:-}" ]; then
    printf '%s ' -o "Dir::Etc::SourceList=$state/sources.list" -o Dir::Etc::SourceParts=/nonexistent \
      -o Dir::State::status=/dev/null -o Acquire::GzipIndexes=true -o Dir::Cache::pkgcache= \
      -o Dir::Cache::srcpkgcache=
  elif [ -n "${APT_MIRROR:-}" ]; then
    printf '%s ' -o "Dir::Etc::SourceList=$state/sources.list" -o Dir::Etc::SourceParts=/nonexistent
  fi
  echo
}
# Refreshes the package lists at most once a day (apt_fetch does it; call it alone to read
# the lists, e.g. with apt_version). Returns 1 when there are no lists to use.
apt_update() {
  local cache=$1 state opts suite mirror log
  state=$(apt_state "$cache")
  mkdir -p "$state/lists/partial" "$state/archives/partial"
  read -r -a opts <<<"$(apt_opts "$cache")"
  mirror=$(apt_mirror)
  if [ -n "${APT_SUITE:-}${APT_MIRROR:-}" ]; then
    suite=${APT_SUITE:-$(sed -nE 's/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?[^[:space:]]+[[:space:]]+([^[:space:]]+).*/\2/p' /etc/apt/sources.list 2>/dev/null | head -1)}
    # check-valid-until=no: a testing suite's Release expires within days and the mirror may be
    # a snapshot; the signature is still checked, so an old index can only offer older packages.
    echo "deb [check-valid-until=no] $mirror ${suite:-trixie} main" >"$state/sources.list.new"
    if ! cmp -s "$state/sources.list.new" "$state/sources.list"; then
      mv "$state/sources.list.new" "$state/sources.list"
      rm -rf "${state:?}/lists"/*_*
    fi
    rm -f "$state/sources.list.new"
  fi
  if [ -n "$(find "$state/lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    return 0
  fi
  echo "Updating the package lists of ${APT_SUITE:-the stack} from $(url_host "$mirror")"
  rm -f "$state"/*.bin
  log=$(mktemp)
  if apt-get "${opts[@]}" -q update --error-on=any >"$log" 2>&1; then
    rm -f "$log"
    return 0
  fi
  # Ign: a try that failed and was retried; Err: the last one.
  grep -E '^(Ign|Err|W|E):|^  ' "$log" | grep -v '^E: Some index files failed' | tail -8
  local reason
  reason=$(grep -E '^E: ' "$log" | grep -v 'Some index files failed' | head -1)
  rm -f "$log"
  if [ -n "$(find "$state/lists" -maxdepth 1 -name '*_Packages*' 2>/dev/null | head -1)" ]; then
    echo "Warning: could not refresh the package lists of ${APT_SUITE:-the stack} from $(url_host "$mirror"); using the previous ones (${reason:-apt failed})"
    return 0
  fi
  echo "Could not download the package lists of ${APT_SUITE:-the stack} from $(url_host "$mirror"): ${reason:-apt-get update failed}"
  return 1
}
apt_fetch() {
  local cache=$1 dest=$2
  shift 2
  local state opts
  state=$(apt_state "$cache")
  apt_update "$cache" || return 1
  read -r -a opts <<<"$(apt_opts "$cache")"
  local files
  files=$(apt-cache "${opts[@]}" show --no-all-versions "$@" 2>/dev/null | sed -n 's/^Filename: //p' | xargs -r -n1 basename | sort)
  if [ "$(echo "$files" | grep -c .)" -ne $# ]; then
    echo "Could not download $* from $(url_host "$(apt_mirror)"): some of them are not in ${APT_SUITE:-the suite of the stack}"
    return 1
  fi
  local f missing=()
  for f in $files; do [ -f "$state/archives/$f" ] || missing+=("${f%%_*}"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Downloading ${missing[*]}"
    local log
    log=$(mktemp)
    if ! (cd "$state/archives" && apt-get "${opts[@]}" -q download "${missing[@]}") >"$log" 2>&1; then
      grep -E '^(Ign|Err|W|E):|^  ' "$log" | tail -8
      echo "Could not download ${missing[*]} from $(url_host "$(apt_mirror)"): $(grep -E '^E: ' "$log" | head -1)"
      rm -f "$log"
      return 1
    fi
    rm -f "$log"
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
