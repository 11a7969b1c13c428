"""What decides the content of the python buildpack's virtualenv, one input a line.

    python -I venv_inputs.py BUILD_DIR PACKAGE_MANAGER TOOL_VERSION PIP_WHEEL FILE...

Run with the chosen Python (the venv's). Prints `<what> <value>` lines: a format number, the
FILEs (the buildpack's own scripts) by sha256, the Python (version, executable, platform, libc),
the package manager (pip, project, poetry, uv, pipenv) and its version, the pip wheel's name (pip
and project), BUILD_DIR, every variable that configures that package manager (PIP_*, POETRY_*,
UV_*, PIPENV_*; by sha256: a value may hold index credentials), its files (sha256 or `missing`):
requirements.txt and the files it names with -r/-c (recursively); poetry.lock, uv.lock, Pipfile,
Pipfile.lock; setup.py, setup.cfg and pyproject.toml; and `app <sha256 of every file>` when the
app's own files go into the venv: `pip install .` (no requirements.txt), a requirement that is a
local path (`.`, `./pkg`, `-e .`, `file:`, a local archive), or a lock file's path dependency.
bin/compile keeps the venv in the build cache with these lines and reuses it only when all of
them are the same. Never fails on an unreadable file: it prints `unreadable` for it, which
differs from any digest.
"""

import hashlib
import os
import platform
import re
import sys
import sysconfig

FORMAT = 2
# Written by the buildpack, or not part of the app's source.
SKIP_DIRS = {".venv", ".git", ".profile.d", ".heroku", "__pycache__"}
# Options whose argument is another requirements file.
FILE_OPTION = re.compile(r"^(?:-r|-c|--requirement|--constraint)(?:\s*=\s*|\s+)?(\S+)$")
ARCHIVES = (".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")


# The configuration variables of each package manager, and the lock files it installs from with
# what in them names a local path (the app's files then go into the venv).
SETTINGS = {
    "pip": ("PIP_",),
    "project": ("PIP_",),
    "poetry": ("POETRY_",),
    "uv": ("UV_",),
    "pipenv": ("PIPENV_", "PIP_"),
}
LOCKS = {
    "poetry": {"poetry.lock": re.compile(r'^type = "(directory|file)"', re.M)},
    "uv": {"uv.lock": re.compile(r"\{ (path|directory) = ")},
    "pipenv": {"Pipfile": None, "Pipfile.lock": re.compile(r'"path":')},
}


def main() -> None:
    build_dir, manager, tool_version, pip_wheel, *own_files = sys.argv[1:]
    print(f"format {FORMAT}")
    for path in own_files:
        print(f"buildpack {os.path.basename(path)} {digest(path)}")
    libc = "-".join(platform.libc_ver()) or "unknown"
    version = " ".join(sys.version.split())
    print(f"python {version} {sys.executable} {sysconfig.get_platform()} {libc}")
    print(f"manager {manager} {tool_version}")
    if manager in ("pip", "project"):
        print(f"pip {os.path.basename(pip_wheel)}")
    print(f"build-dir {build_dir}")
    prefixes = SETTINGS.get(manager, ("PIP_",))
    for name in sorted(k for k in os.environ if k.startswith(prefixes)):
        print(f"env {name} {hashlib.sha256(os.environ[name].encode()).hexdigest()}")
    whole_app = False
    if manager == "pip":
        whole_app = requirement_files(build_dir, os.path.join(build_dir, "requirements.txt"), set())
    elif manager == "project":
        whole_app = True  # `pip install .`
    for name, local in LOCKS.get(manager, {}).items():
        path = os.path.join(build_dir, name)
        print(f"file {name} {digest(path) if os.path.isfile(path) else 'missing'}")
        if local and os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                whole_app |= bool(local.search(f.read()))
    for name in ("setup.py", "setup.cfg", "pyproject.toml"):
        path = os.path.join(build_dir, name)
        print(f"file {name} {digest(path) if os.path.isfile(path) else 'missing'}")
    if whole_app:
        print(f"app {tree_digest(build_dir)}")


def requirement_files(build_dir: str, path: str, seen: set) -> bool:
    """Prints `file <name> <sha256>` for `path` and the files it names; True when a requirement
    is a local path (the venv then depends on the app's files)."""
    real = os.path.realpath(path)
    name = os.path.relpath(path, build_dir)
    if real in seen:
        return False
    seen.add(real)
    if not os.path.isfile(path):
        print(f"file {name} missing")
        return False
    print(f"file {name} {digest(path)}")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return True
    local = False
    for line in text.replace("\\\n", " ").splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        if not line:
            continue
        option = FILE_OPTION.match(line)
        if option:
            target = option.group(1)
            if "://" in target:
                local = True  # a remote requirements file can change at any time: key on everything
                continue
            local |= requirement_files(build_dir, os.path.join(os.path.dirname(path), target), seen)
        elif looks_local(line):
            local = True
    return local


def looks_local(line: str) -> bool:
    """Whether a requirement line installs something from the app's own files."""
    if re.match(r"^(-e|--editable)(\s|=|$)", line):
        return True
    for token in re.split(r"[\s=]+", line):
        token = token.strip("'\"")
        if token.startswith("file:"):
            return True
        if "://" in token or token.startswith("-"):
            continue
        if token.startswith((".", "/", "~")) or "/" in token or token.endswith(ARCHIVES):
            return True
    return False


def tree_digest(build_dir: str) -> str:
    """sha256 over the relative path and content (or link target) of every file of the app."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(build_dir):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            path = os.path.join(root, name)
            h.update(os.path.relpath(path, build_dir).encode() + b"\0")
            if os.path.islink(path):
                h.update(b"link " + os.readlink(path).encode())
            else:
                h.update(digest(path).encode())
            h.update(b"\n")
    return h.hexdigest()


def digest(path: str) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return "unreadable"
    return h.hexdigest()


if __name__ == "__main__":
    main()
