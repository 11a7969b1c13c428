# shellcheck shell=bash
# The dyno's runtime environment (sourced by bin/compile): .profile.d/python.sh, sourced at dyno
# start after the config vars are set. Heroku's where it fits a venv: the venv first on PATH,
# PYTHONUNBUFFERED, LANG, PYTHONPATH, FORWARDED_ALLOW_IPS and GUNICORN_CMD_ARGS defaults, and
# WEB_CONCURRENCY from the dyno's memory limit and CPUs unless set. No PYTHONHOME (a venv does not
# need it, and it would break every other Python of the dyno, such as the stack's python3) and
# no LD_LIBRARY_PATH (a vendored Python finds its libraries through its RPATH).

# profile::write BUILD_DIR
profile::write() {
  local build_dir=$1
  topic "Writing .profile.d/python.sh"
  mkdir -p "$build_dir/.profile.d"
  cat >"$build_dir/.profile.d/python.sh" <<'PROFILE'
# Written by Ouro's Python buildpack; sourced at dyno start, after the config vars are set.
export VIRTUAL_ENV=/app/.venv
export PATH="/app/.venv/bin:$PATH"
export PYTHONUNBUFFERED="${PYTHONUNBUFFERED:-true}"
# Heroku's default is en_US.UTF-8; the Debian stack has C.UTF-8 (no locales package).
export LANG="${LANG:-C.UTF-8}"
export PYTHONPATH="${PYTHONPATH:-/app}"
# gunicorn: trust the router's X-Forwarded-* headers, log requests to stdout.
export FORWARDED_ALLOW_IPS="${FORWARDED_ALLOW_IPS:-*}"
export GUNICORN_CMD_ARGS="${GUNICORN_CMD_ARGS:---access-logfile -}"

# WEB_CONCURRENCY (gunicorn's and uvicorn's default worker count), unless set: the lower of
# 2 x CPUs + 1 and the memory limit / 256 MB (at least 1). Skipped when the dyno has no memory
# limit (cgroup v2 memory.max "max", or v1's huge number).
if [ -z "${WEB_CONCURRENCY:-}" ]; then
  _py_mem=
  if [ -r /sys/fs/cgroup/memory.max ]; then
    _py_mem=$(cat /sys/fs/cgroup/memory.max 2>/dev/null)
  elif [ -r /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
    _py_mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null)
  fi
  case "$_py_mem" in
    '' | max | *[!0-9]*) _py_mem= ;;
    *) _py_mem=$((_py_mem / 1048576)); [ "$_py_mem" -le 1048576 ] || _py_mem= ;;
  esac
  if [ -n "$_py_mem" ]; then
    _py_cpus=$(nproc 2>/dev/null || echo 1)
    # A CPU quota (docker --cpus) counts too, rounded up.
    _py_quota=
    if [ -r /sys/fs/cgroup/cpu.max ]; then
      read -r _py_quota _py_period </sys/fs/cgroup/cpu.max 2>/dev/null
    elif [ -r /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
      _py_quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null)
      _py_period=$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us 2>/dev/null)
    fi
    case "$_py_quota/$_py_period" in
      */ | max/* | -*/* | */*[!0-9]* | *[!0-9]*/*) ;;
      *) if [ "$_py_period" -gt 0 ]; then
        _py_quota=$(((_py_quota + _py_period - 1) / _py_period))
        [ "$_py_quota" -ge 1 ] && [ "$_py_quota" -lt "$_py_cpus" ] && _py_cpus=$_py_quota
      fi ;;
    esac
    export DYNO_RAM="$_py_mem"
    _py_by_mem=$((_py_mem / 256))
    [ "$_py_by_mem" -ge 1 ] || _py_by_mem=1
    _py_by_cpu=$((_py_cpus * 2 + 1))
    if [ "$_py_by_mem" -lt "$_py_by_cpu" ]; then
      export WEB_CONCURRENCY="$_py_by_mem"
    else
      export WEB_CONCURRENCY="$_py_by_cpu"
    fi
  fi
  unset _py_mem _py_cpus _py_quota _py_period _py_by_mem _py_by_cpu
fi
PROFILE
  info "PATH starts with /app/.venv/bin at dyno start; WEB_CONCURRENCY follows the dyno's memory and CPUs"
}
