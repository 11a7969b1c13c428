# shellcheck shell=bash
# The app's build hooks (sourced by bin/compile), as on Heroku: bin/pre_compile runs before the
# package manager is chosen, bin/post_compile after collectstatic; each from the app's root, with
# the config vars exported (and, for post_compile, the virtualenv first on PATH). A hook that
# exits non-zero fails the build.

# hooks::run NAME BUILD_DIR
hooks::run() {
  local build_dir=$2 script="bin/$1" status
  [ -f "$build_dir/$script" ] || return 0
  topic "Running $script hook"
  chmod +x "$build_dir/$script"
  set +e
  (cd "$build_dir" && "./$script") 2>&1 | indent
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -ne 0 ]; then
    fail "Error: Failed to run the $script script (exit $status)." \
      "It is run to customise the build: fix the errors it printed above, or remove or rename it."
  fi
  return 0
}
