# shellcheck shell=bash
# Django's static files (sourced by bin/compile), as on Heroku: `python manage.py collectstatic
# --noinput` runs at build time when Django is installed and the app has a manage.py (at most
# three directories deep), unless the config var DISABLE_COLLECTSTATIC is set to anything but 0
# (or the app has .heroku/collectstatic_disabled, deprecated). Django itself needs STATIC_ROOT:
# without it collectstatic fails, and so does the build. It runs with the config vars exported
# and PYTHONPATH defaulting to the app's root.

# collectstatic::run BUILD_DIR VENV
collectstatic::run() {
  local build_dir=$1 venv=$2 manage log status
  if [ -f "$build_dir/.heroku/collectstatic_disabled" ]; then
    topic "Skipping Django collectstatic since the file '.heroku/collectstatic_disabled' exists."
    warn "The .heroku/collectstatic_disabled file is deprecated: delete it and set the config var DISABLE_COLLECTSTATIC=1 instead."
    return 0
  fi
  if [ "${DISABLE_COLLECTSTATIC:-0}" != 0 ]; then
    topic "Skipping Django collectstatic since the env var DISABLE_COLLECTSTATIC is set."
    return 0
  fi
  "$venv/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("django") is None)' 2>/dev/null ||
    return 0
  manage=$(cd "$build_dir" && find . -maxdepth 3 -type f -name manage.py -not -path './.venv/*' -not -path './.heroku/*' \
    -printf '%d\t%P\n' | sort -n -k1 | cut -f2 | head -1)
  if [ -z "$manage" ]; then
    topic "Skipping Django collectstatic since no manage.py file found."
    return 0
  fi
  topic "\$ python $manage collectstatic --noinput"
  log=$(mktemp)
  set +e
  (cd "$build_dir" && PYTHONPATH=${PYTHONPATH:-.} "$venv/bin/python" "$manage" collectstatic --noinput --traceback) 2>&1 |
    tee "$log" | sed -u '/^Post-processed/d;/^Copying/d;/^$/d' | indent
  status=${PIPESTATUS[0]}
  set -e
  rm -f "$log"
  if [ "$status" -ne 0 ]; then
    fail "Error: Unable to generate Django static files." \
      "'python $manage collectstatic --noinput' failed (exit $status): see its output above." \
      "Fix the app (STATIC_ROOT must be set), or skip it: ouro config:set DISABLE_COLLECTSTATIC=1"
  fi
  return 0
}
