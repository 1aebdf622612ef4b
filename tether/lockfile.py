"""Reads uv.lock: which packages, at which versions and hashes, an environment of this project installs.

uv installs from the lock itself (`uv sync --frozen`); this module answers the same question without uv, for
`./dev`'s pip fallback (pinned, hash-checked requirements), for the uv bootstrap (the lock's own uv and its
hashes), for the test that compares the installed environment with the lock, and for `deps.upgrade`'s summary
of what changed. Standard library only (tomllib), so the system Python can run it before `.venv` exists:
``python -m tether.lockfile requirements --extra dev`` or ``python -m tether.lockfile requirements --only uv``.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCK_FILE = "uv.lock"


class LockError(ValueError):
    """uv.lock is missing, unreadable, or does not hold what was asked for."""


def canonical_name(name: str) -> str:
    """PEP 503 normalized name: `PyYAML` and `pyyaml`, `psycopg_pool` and `psycopg-pool` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str
    source: Mapping[str, Any]
    hashes: tuple[str, ...] = ()  # every wheel's and the sdist's, as `sha256:<hex>`
    dependencies: tuple[Mapping[str, Any], ...] = ()
    optional: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)

    @property
    def is_project(self) -> bool:
        """The project itself (installed editable from the checkout, not from an index)."""
        return "editable" in self.source or "virtual" in self.source

    def requirement_line(self) -> str:
        """`name==version --hash=...` for `pip install --require-hashes`."""
        hashes = "".join(f" \\\n    --hash={digest}" for digest in self.hashes)
        return f"{self.name}=={self.version}{hashes}"


@dataclass(frozen=True)
class Lock:
    packages: tuple[LockedPackage, ...]

    def project(self) -> LockedPackage:
        projects = [package for package in self.packages if package.is_project]
        if len(projects) != 1:
            raise LockError(f"uv.lock should describe exactly one project, found {len(projects)}")
        return projects[0]

    def named(self, name: str, version: str | None = None) -> LockedPackage:
        wanted = canonical_name(name)
        found = [p for p in self.packages if canonical_name(p.name) == wanted and version in (None, p.version)]
        if len(found) != 1:
            what = f"{name} {version}" if version else name
            raise LockError(f"uv.lock has {len(found)} entries for {what}; expected one")
        return found[0]


def load_lock(path: Path) -> Lock:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise LockError(f"{path} does not exist: create it with `uv lock` (or `invoke deps.upgrade`)") from None
    except tomllib.TOMLDecodeError as error:
        raise LockError(f"{path} is not valid TOML ({error}): restore it with `git checkout {path.name}`") from None
    return Lock(tuple(_package(entry) for entry in data.get("package", [])))


def _package(entry: Mapping[str, Any]) -> LockedPackage:
    artifacts = [*entry.get("wheels", []), *([entry["sdist"]] if "sdist" in entry else [])]
    return LockedPackage(
        name=entry["name"], version=str(entry.get("version", "")), source=entry.get("source", {}),
        hashes=tuple(artifact["hash"] for artifact in artifacts if "hash" in artifact),
        dependencies=tuple(entry.get("dependencies", [])),
        optional={extra: tuple(edges) for extra, edges in entry.get("optional-dependencies", {}).items()},
    )


# --- which packages an environment installs -----------------------------------------------------------------

MarkerTest = Callable[[str], bool]


def marker_test(environment: Mapping[str, str] | None = None) -> MarkerTest:
    """Evaluates PEP 508 markers for this interpreter, or for ``environment`` (keys as in PEP 508)."""
    try:
        from packaging.markers import Marker, default_environment
    except ImportError:  # a bare system Python: pip carries its own copy of `packaging`
        from pip._vendor.packaging.markers import Marker, default_environment  # type: ignore[no-redef]
    values = {key: str(value) for key, value in default_environment().items()}
    values.update(environment or {})
    return lambda marker: Marker(marker).evaluate({**values, "extra": ""})


def installed_packages(lock: Lock, extras: Iterable[str] = (),
                       applies: MarkerTest | None = None) -> list[LockedPackage]:
    """The packages an environment of the project with ``extras`` holds (without the project itself), by name.

    Follows the lock's dependency edges from the project, as uv does: an edge counts when its marker holds,
    and `name[extra]` edges bring in that package's optional dependencies.
    """
    applies = applies or marker_test()
    project = lock.project()
    unknown = sorted(set(extras) - set(project.optional))
    if unknown:
        raise LockError(f"uv.lock knows no extra {', '.join(unknown)} (it has {', '.join(sorted(project.optional))})")
    seen: set[tuple[str, str, str]] = set()
    chosen: dict[str, LockedPackage] = {}
    todo: list[tuple[LockedPackage, frozenset[str]]] = [(project, frozenset(extras))]
    while todo:
        package, wanted = todo.pop()
        edges = [*package.dependencies, *(edge for extra in sorted(wanted) for edge in package.optional.get(extra, ()))]
        for edge in edges:
            if "marker" in edge and not applies(edge["marker"]):
                continue
            target = lock.named(edge["name"], edge.get("version"))
            edge_extras = frozenset(edge.get("extra", ()))
            for extra in edge_extras or {""}:
                key = (target.name, target.version, extra)
                if key in seen:
                    continue
                seen.add(key)
                todo.append((target, frozenset({extra}) - {""}))
            if not target.is_project:
                chosen[canonical_name(target.name)] = target
    return [chosen[name] for name in sorted(chosen)]


def pinned_versions(packages: Iterable[LockedPackage]) -> dict[str, str]:
    return {canonical_name(package.name): package.version for package in packages}


def version_changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[tuple[str, str | None, str | None]]:
    """(name, old, new) for every package added, removed or moved to another version, by name."""
    names = sorted(set(before) | set(after))
    return [(name, before.get(name), after.get(name)) for name in names if before.get(name) != after.get(name)]


def requirements_text(packages: Iterable[LockedPackage]) -> str:
    lines = ["# Generated from uv.lock by `python -m tether.lockfile`: pinned, hash-checked, no other source.",
             *(package.requirement_line() for package in packages)]
    return "\n".join(lines) + "\n"


# --- command line (used by ./dev before any environment exists) ------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tether.lockfile", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    requirements = commands.add_parser("requirements", help="print pinned, hash-checked requirements for pip")
    requirements.add_argument("--lock", type=Path, default=Path(LOCK_FILE))
    requirements.add_argument("--extra", action="append", default=[], help="an extra of the project (repeatable)")
    requirements.add_argument("--only", help="just this package (e.g. uv), whatever the project needs")
    version = commands.add_parser("version", help="print the locked version of one package")
    version.add_argument("name")
    version.add_argument("--lock", type=Path, default=Path(LOCK_FILE))
    args = parser.parse_args(argv)
    try:
        lock = load_lock(args.lock)
        if args.command == "version":
            print(lock.named(args.name).version)
        elif args.only:
            print(requirements_text([lock.named(args.only)]), end="")
        else:
            print(requirements_text(installed_packages(lock, args.extra)), end="")
    except LockError as error:
        print(f"tether.lockfile: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
