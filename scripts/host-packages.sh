# Sourced by scripts/up, scripts/test and .ci/run: installs Debian packages on this host when
# they are missing, retrying transient mirror failures, and says in one line what to do when it
# cannot (not root, no apt-get, the mirror unreachable).

# need_packages WHAT PKG...: installs the PKGs (with apt-get, as root) unless WHAT, a command
# that is true when they are there, already is. Exits 1 with one line when they cannot be had.
need_packages() {
  local check=$1
  shift
  eval "$check" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "missing: $* (install them: sudo apt-get install -y $*)" >&2
    exit 1
  fi
  printf '==> installing %s from Debian'"'"'s packages\n' "$*"
  local opts=(-o Acquire::Retries=5 -o Acquire::http::Timeout=30 -q)
  local log
  log=$(mktemp)
  if ! { apt-get "${opts[@]}" update && DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" install -y --no-install-recommends "$@"; } >"$log" 2>&1; then
    # apt names the host it could not reach in its W:/E: lines.
    echo "could not install $*: $(grep -E '^(E|W):' "$log" | tail -1)" >&2
    echo "(the whole apt output: $log)" >&2
    exit 1
  fi
  rm -f "$log"
}
