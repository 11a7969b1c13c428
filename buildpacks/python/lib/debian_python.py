"""Which Python an app asks for, and which Debian release of the mirror has it.

Run with the stack's python3 (never the app's), isolated (`python3 -I`):

    debian_python.py request BUILD_DIR PACKAGE_MANAGER CACHED_VERSION
        What the app asks for, from (first found) runtime.txt, .python-version, Pipfile.lock
        (`python_full_version`, then `python_version`), pyproject.toml `project.requires-python`,
        the last build's Python (CACHED_VERSION, its minor: "sticky"), else nothing. Prints one
        line `KIND|REQUEST|ORIGIN`: KIND is `version` (3.X or 3.X.Y), `specifier`
        (requires-python) or `default`; ORIGIN the file (or `cached`, `default`). Prints a
        warning line `warning|TEXT` before it when the app should change something.
    debian_python.py index SUITE < `apt-cache dumpavail` of that suite
        A JSON summary of the suite's CPython minors: {"suite", "libc6", "pythons": {"3.14":
        {"version": "3.14.8-1", "upstream": "3.14.8", "packages": [...], "packages_without_libc":
        [...], "versions": {package: version}}}}: the packages are python3.X-minimal, libpython3.X-minimal, libpython3.X-stdlib and
        the closure of their shared-library dependencies (packages of Section libs, following the
        first alternative that the suite has), once with the C library (libc6 and what only it
        needs) and once without. Pre-releases (a `~` in the version) are not offered.
    debian_python.py resolve KIND REQUEST STACK_VERSION STACK_SUITE "SUITE..." SUMMARY.json...
        The Python that satisfies the request (SUITE... is the order to name the releases in):
        prints `VERSION<TAB>SUITE` where SUITE is `stack`
        for the stack's own python3 (used for its minor, its exact version, or no request at all)
        or the Debian codename to install it from. When none does, prints one line naming what
        the platform offers and exits 2.

User errors (a malformed file, nothing that satisfies) are printed, one line each, on stdout with
exit status 2; bin/compile shows them as ` !     ` lines.
"""

import json
import os
import re
import sys
import tomllib

VERSION = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(?:\.(0|[1-9][0-9]*))?$")
EXAMPLE = "3.14"
MISSPELLED = re.compile(r"^\.?python[-_]?versions?(\.txt)?$", re.IGNORECASE)


class UserError(Exception):
    def __init__(self, *lines: str) -> None:
        super().__init__(lines[0])
        self.lines = lines


def main() -> None:
    command, *args = sys.argv[1:]
    try:
        if command == "request":
            request(*args)
        elif command == "index":
            index(*args)
        elif command == "resolve":
            resolve(*args)
        else:
            raise SystemExit(f"unknown command {command}")
    except UserError as e:
        for line in e.lines:
            print(line)
        sys.exit(2)


# --- request ---------------------------------------------------------------------------------


def request(build_dir: str, package_manager: str, cached: str) -> None:
    check_misspelled(build_dir)
    runtime_txt = os.path.join(build_dir, "runtime.txt")
    python_version = os.path.join(build_dir, ".python-version")
    if os.path.isfile(runtime_txt):
        if package_manager == "uv":
            raise UserError(
                "Error: runtime.txt is not supported for uv projects.",
                "uv reads the Python version from .python-version: move it there (e.g. `uv python pin "
                + EXAMPLE
                + "`) and delete runtime.txt.",
            )
        version = parse_runtime_txt(read_text(runtime_txt, "runtime.txt"))
        print(
            "warning|The runtime.txt file is deprecated: write the version in a .python-version file "
            f"instead (e.g. `echo {version_minor(version)} > .python-version`) and delete runtime.txt."
        )
        return emit("version", version, "runtime.txt")
    if os.path.isfile(python_version):
        return emit("version", parse_python_version(read_text(python_version, ".python-version")), ".python-version")
    if package_manager == "uv":
        raise UserError(
            "Error: No .python-version file was found.",
            "A uv project must say which Python it uses in a .python-version file, which uv reads too:",
            f"run `uv python pin {EXAMPLE}` (or `echo {EXAMPLE} > .python-version`) and commit the file.",
        )
    if package_manager == "pipenv":
        version = pipfile_lock_version(os.path.join(build_dir, "Pipfile.lock"))
        if version:
            return emit("version", version, "Pipfile.lock")
    specifier = requires_python(os.path.join(build_dir, "pyproject.toml"))
    if specifier:
        return emit("specifier", specifier, "pyproject.toml")
    if VERSION.match(cached or ""):
        return emit("version", version_minor(cached), "cached")
    return emit("default", "", "default")


def emit(kind: str, value: str, origin: str) -> None:
    print(f"{kind}|{value}|{origin}")


def check_misspelled(build_dir: str) -> None:
    try:
        names = os.listdir(build_dir)
    except OSError:
        return
    for name in sorted(names):
        if name != ".python-version" and MISSPELLED.match(name) and os.path.isfile(os.path.join(build_dir, name)):
            raise UserError(
                f"Error: Found a '{name}' file instead of '.python-version'.",
                f"The Python version must be in a file named exactly '.python-version': rename '{name}'.",
            )


def read_text(path: str, name: str) -> str:
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
        raise UserError(
            f"Error: Invalid Python version in {name}.",
            f"The file is UTF-16 encoded: save it as plain UTF-8 text (e.g. `echo {EXAMPLE} > {name}`).",
        )
    if data.startswith(b"\xef\xbb\xbf"):
        raise UserError(
            f"Error: Invalid Python version in {name}.",
            f"The file starts with a byte order mark (BOM): save it as UTF-8 without one "
            f"(e.g. `echo {EXAMPLE} > {name}`).",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"Error: Invalid Python version in {name}.", "The file is not UTF-8 text.") from None


def parse_runtime_txt(text: str) -> str:
    match = re.match(r"^\s*python-(\S+)\s*$", text)
    if match and VERSION.match(match.group(1)):
        return match.group(1)
    raise UserError(
        "Error: Invalid Python version in runtime.txt.",
        f"It must say 'python-3.X' or 'python-3.X.Y', e.g. 'python-{EXAMPLE}'; found: {text.strip()[:60]!r}.",
    )


def parse_python_version(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if not lines:
        raise UserError(
            "Error: Invalid Python version in .python-version.",
            f"No Python version was found in it: write one such as '{EXAMPLE}' (lines starting with '#' are comments).",
        )
    if len(lines) > 1:
        raise UserError(
            "Error: Invalid Python version in .python-version.",
            f"It names several versions ({', '.join(lines[:5])}): keep only one, comments start with '#'.",
        )
    if not VERSION.match(lines[0]):
        raise UserError(
            "Error: Invalid Python version in .python-version.",
            f"Found {lines[0][:60]!r}; it must be '3.X' (recommended: the newest patch) or '3.X.Y' "
            f"(exactly that one), e.g. '{EXAMPLE}', without quotes or a 'python-' prefix.",
        )
    return lines[0]


def pipfile_lock_version(path: str) -> str:
    if not os.path.isfile(path):
        return ""
    try:
        with open(path, encoding="utf-8") as f:
            lock = json.load(f)
        requires = lock.get("_meta", {}).get("requires", {})
    except (OSError, ValueError, AttributeError) as e:
        raise UserError("Error: Can't parse Pipfile.lock.", f"{e}; run `pipenv lock` to write it again.") from None
    version = requires.get("python_full_version") or requires.get("python_version") or ""
    if version and not VERSION.match(str(version)):
        raise UserError(
            "Error: Invalid Python version in Pipfile.lock.",
            f"Found {version!r} in python_full_version/python_version; it must be '3.X' or '3.X.Y'.",
        )
    return str(version)


def requires_python(path: str) -> str:
    if not os.path.isfile(path):
        return ""
    try:
        with open(path, "rb") as f:
            project = tomllib.load(f).get("project", {})
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UserError("Error: Can't parse pyproject.toml.", str(e)) from None
    specifier = project.get("requires-python", "") if isinstance(project, dict) else ""
    if not specifier:
        return ""
    try:
        parse_specifier(str(specifier))
    except ValueError as e:
        raise UserError("Error: Invalid requires-python in pyproject.toml.", str(e)) from None
    return " ".join(str(specifier).split())


def version_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


# --- index ---------------------------------------------------------------------------------


def index(suite: str) -> None:
    packages = parse_packages(sys.stdin)
    pythons = {}
    for name in packages:
        match = re.match(r"^python3\.(\d+)-minimal$", name)
        if not match:
            continue
        minor = f"3.{match.group(1)}"
        roots = [f"python{minor}-minimal", f"libpython{minor}-minimal", f"libpython{minor}-stdlib"]
        if not all(root in packages for root in roots):
            continue
        version = packages[name]["Version"]
        upstream = re.sub(r"^\d+:", "", version).rsplit("-", 1)[0]
        if not VERSION.match(upstream):  # a pre-release (3.15.0~rc1) or something unexpected
            continue
        with_libc = closure(packages, roots, with_libc=True)
        pythons[minor] = {
            "version": version,
            "upstream": upstream,
            "packages": with_libc,
            "packages_without_libc": closure(packages, roots, with_libc=False),
            "versions": {name: packages[name]["Version"] for name in with_libc},
        }
    libc6 = packages.get("libc6", {}).get("Version", "")
    json.dump({"suite": suite, "libc6": libc6, "pythons": pythons}, sys.stdout, indent=1, sort_keys=True)
    print()


FIELDS = ("Package", "Version", "Section", "Depends", "Pre-Depends")
# Libraries that Python does not need (gconv modules of rare charsets; gcc's docs).
NOT_NEEDED = re.compile(r"^(libc-gconv-modules-extra|gcc-\d+-base)$")


def parse_packages(stream) -> dict:
    packages, current = {}, {}
    for line in stream:
        line = line.rstrip("\n")
        if not line:
            if "Package" in current:
                packages.setdefault(current["Package"], current)
            current = {}
            continue
        if line[0] in " \t":
            continue
        key, _, value = line.partition(":")
        if key in FIELDS:
            current[key] = value.strip()
    if "Package" in current:
        packages.setdefault(current["Package"], current)
    return packages


def closure(packages: dict, roots: list, with_libc: bool) -> list:
    """The roots and, breadth first, every shared-library package they depend on."""
    seen, order, todo = set(), [], list(roots)
    while todo:
        name = todo.pop(0)
        if name in seen:
            continue
        seen.add(name)
        order.append(name)
        for field in ("Pre-Depends", "Depends"):
            for dependency in filter(None, (d.strip() for d in packages[name].get(field, "").split(","))):
                alternatives = [re.split(r"[\s(:]", a.strip(), maxsplit=1)[0] for a in dependency.split("|")]
                found = next((a for a in alternatives if a in packages), None)
                if found is None or found in seen or NOT_NEEDED.match(found):
                    continue
                if packages[found].get("Section", "").split("/")[-1] not in ("libs", "oldlibs"):
                    continue  # data (tzdata, media-types, netbase) or tools: the stack has its own
                if found == "libc6" and not with_libc:
                    continue
                todo.append(found)
    return order


# --- resolve -------------------------------------------------------------------------------


def resolve(kind: str, wanted: str, stack_version: str, stack_suite: str, order: str, *summaries: str) -> None:
    # (version tuple, suite) of every Python on offer; the stack's first.
    offers = [(numbers(stack_version), "stack")]
    suites = [stack_suite]
    for path in summaries:
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
        suites.append(summary["suite"])
        for python in summary["pythons"].values():
            offers.append((numbers(python["upstream"]), summary["suite"]))
    stack = offers[0][0]
    choice = None
    if kind == "default":
        choice = offers[0]
    elif kind == "version" and wanted.count(".") == 1:
        minor = numbers(wanted)
        if stack[:2] == minor:
            choice = offers[0]
        else:
            same = [o for o in offers if o[0][:2] == minor]
            choice = max(same, key=lambda o: o[0]) if same else None
    elif kind == "version":
        exact = [o for o in offers if o[0] == numbers(wanted)]
        choice = exact[0] if exact else None
    elif kind == "specifier":
        clauses = parse_specifier(wanted)
        matching = [o for o in offers if all(matches(o[0], op, v, wild) for op, v, wild in clauses)]
        if matching:
            newest = max(o[0][:2] for o in matching)
            same = [o for o in matching if o[0][:2] == newest]
            choice = next((o for o in same if o[1] == "stack"), None) or max(same, key=lambda o: o[0])
    if choice is None:
        exact = kind == "version" and wanted.count(".") == 2
        listed = sorted({o[0] if exact else o[0][:2] for o in offers})
        rank = order.split()
        names = sorted(dict.fromkeys(suites), key=lambda s: rank.index(s) if s in rank else len(rank))
        suites_text = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
        offered = f"this platform offers {', '.join('.'.join(map(str, v)) for v in listed)} (from Debian {suites_text})."
        if kind == "specifier":
            raise UserError(f"No Python satisfies requires-python '{wanted}' of pyproject.toml: {offered}")
        raise UserError(f"Python {wanted} is not available: {offered}")
    print(f"{'.'.join(map(str, choice[0]))}\t{choice[1]}")


def numbers(version: str) -> tuple:
    return tuple(int(x) for x in version.split("."))


def parse_specifier(text: str) -> list:
    """PEP 440 version specifiers, as far as Python versions need them: `(op, numbers, wildcard)`."""
    clauses = []
    for clause in text.split(","):
        clause = clause.strip()
        match = re.match(r"^(===|==|!=|~=|>=|<=|>|<)\s*([0-9]+(?:\.[0-9]+)*)(\.\*)?$", clause)
        if not match or (match.group(3) and match.group(1) not in ("==", "!=")):
            raise ValueError(f"{text!r} is not a version specifier such as '>={EXAMPLE}'.")
        if match.group(1) == "~=" and "." not in match.group(2):
            raise ValueError(f"{clause!r}: '~=' needs at least two version numbers.")
        clauses.append((match.group(1), numbers(match.group(2)), bool(match.group(3))))
    return clauses


def matches(version: tuple, op: str, spec: tuple, wildcard: bool) -> bool:
    if wildcard:
        equal = version[: len(spec)] == spec
        return equal if op == "==" else not equal
    if op == "~=":
        return matches(version, ">=", spec, False) and version[: len(spec) - 1] == spec[:-1]
    width = max(len(version), len(spec))
    a = version + (0,) * (width - len(version))
    b = spec + (0,) * (width - len(spec))
    return {
        "===": a == b,
        "==": a == b,
        "!=": a != b,
        ">=": a >= b,
        "<=": a <= b,
        ">": a > b,
        "<": a < b,
    }[op]


if __name__ == "__main__":
    main()
