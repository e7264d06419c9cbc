"""Checks that a folder of wheels installs on the device machine with no index: every requirement of every
wheel, and of eval-anything itself (setup.cfg's install_requires), is met by another wheel in the folder, by
the device image's packages (image.txt) or is one that wheels.txt names as not carried. Also checks that each
wheel runs on the target Python, that every pin of wheels.txt has its wheel and that no name has two.

    python benchmarks/device/check_closure.py --wheels .whl [--python 3.12] [--image benchmarks/device/image.txt]

`--image`: what the target interpreter already has (for the 3.11 simulation: its venv's `pip list --format=freeze`
before the wheels). Prints the requirements it took on trust (the image's package, its version not known) and
the not-carried ones it met; exits 1 with the unmet ones.
"""
from __future__ import annotations

import argparse
import configparser
import sys
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
NOT_CARRIED = "# not carried:"


@dataclass(frozen=True)
class Wheel:
    name: str
    """The distribution name, normalised (PEP 503)."""
    version: Version
    tags: frozenset[Tag]
    """The interpreter, ABI and platform tags of its file name."""
    requires: tuple[str, ...]
    """Its METADATA's Requires-Dist lines, markers and extras included."""
    filename: str


def read_wheel(path: Path) -> Wheel:
    name, version, _, tags = parse_wheel_filename(path.name)
    with zipfile.ZipFile(path) as archive:
        (metadata,) = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        fields = Parser().parsestr(archive.read(metadata).decode())
    return Wheel(canonicalize_name(name), version, frozenset(tags), tuple(fields.get_all("Requires-Dist") or ()),
                 path.name)


def target_tags(python: str) -> frozenset[Tag]:
    """What pip accepts on Linux x86_64 CPython `python` (e.g. '3.12') with glibc 2.28 or later."""
    version = tuple(int(part) for part in python.split("."))
    platforms = [f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)]
    platforms += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]
    return frozenset([*cpython_tags(version, platforms=platforms), *compatible_tags(version, platforms=platforms)])


def read_pins(path: Path) -> tuple[dict[str, Version], set[str]]:
    """wheels.txt: its `name==version` lines, and the names its `# not carried:` lines give."""
    pins, absent = {}, set()
    for line in path.read_text().splitlines():
        if line.startswith(NOT_CARRIED):
            absent |= {canonicalize_name(n) for n in line[len(NOT_CARRIED):].split("--")[0].split()}
        elif (text := line.split("#")[0].strip()):
            requirement = Requirement(text)
            (spec,) = requirement.specifier
            pins[canonicalize_name(requirement.name)] = Version(spec.version)
    return pins, absent


def read_image(path: Path) -> dict[str, Version | None]:
    """image.txt, or any `pip list --format=freeze` output: `name==version` or a bare name (version unknown)."""
    image = {}
    for line in path.read_text().splitlines():
        if (text := line.split("#")[0].strip()) and not text.startswith("-e "):
            name, _, version = text.split(" @ ")[0].partition("==")
            image[canonicalize_name(name)] = Version(version) if version else None
    return image


def project_requirements() -> list[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return [line for line in config["options"]["install_requires"].splitlines() if line.strip()]


def target_environment(python: str) -> dict[str, str]:
    environment = default_environment()
    environment.update(python_version=python, python_full_version=f"{python}.0", sys_platform="linux",
                       platform_system="Linux", platform_machine="x86_64", os_name="posix",
                       implementation_name="cpython", platform_python_implementation="CPython", extra="")
    return environment


def check(wheels: list[Wheel], pins: dict[str, Version], absent: set[str], image: dict[str, Version | None],
          python: str) -> tuple[list[str], list[str], list[str]]:
    """(problems, assumed, left out): the unmet, the image versions taken on trust, the not-carried ones met."""
    problems, assumed, left_out = [], {}, {}
    by_name: dict[str, list[Wheel]] = {}
    accepted = target_tags(python)
    for wheel in wheels:
        by_name.setdefault(wheel.name, []).append(wheel)
        if not wheel.tags & accepted:
            problems.append(f"{wheel.filename}: not installable on CPython {python}, linux x86_64")
    problems += [f"{name}: {len(found)} versions ({', '.join(w.filename for w in found)}): keep one"
                 for name, found in by_name.items() if len(found) > 1]
    problems += [f"wheels.txt pins {name}=={version}, the folder has "
                 f"{', '.join(str(w.version) for w in by_name.get(name, [])) or 'no wheel of it'}"
                 for name, version in pins.items() if version not in [w.version for w in by_name.get(name, [])]]
    environment = target_environment(python)
    needs = [(wheel.name, text) for wheel in wheels for text in wheel.requires]
    needs += [("eval-anything", text) for text in project_requirements()]
    for owner, text in needs:
        requirement = Requirement(text)
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        wanted = requirement.specifier
        if any(wanted.contains(w.version, prereleases=True) for w in by_name.get(name, [])):
            continue
        if name in by_name:
            problems.append(f"{owner} needs {text}; the folder has {by_name[name][0].version}")
        elif name in image:
            if image[name] is None:
                assumed.setdefault(name, set()).add(f"{wanted or 'any'} ({owner})")
            elif not wanted.contains(image[name], prereleases=True):
                problems.append(f"{owner} needs {text}; the image has {image[name]}")
        elif name in absent:
            left_out.setdefault(name, set()).add(owner)
        else:
            problems.append(f"{owner} needs {text}: neither a wheel nor in the image")
    return (problems, [f"{name}: {', '.join(sorted(wants))}" for name, wants in sorted(assumed.items())],
            [f"{name} (needed by {', '.join(sorted(owners))})" for name, owners in sorted(left_out.items())])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels", type=Path)
    parser.add_argument("--list-project-requirements", action="store_true",
                        help="print eval-anything's requirements less the not-carried ones, and stop")
    parser.add_argument("--python", default="3.12")
    parser.add_argument("--image", type=Path, default=HERE / "image.txt",
                        help="the packages the target interpreter already has (pip list --format=freeze)")
    parser.add_argument("--pins", type=Path, default=HERE / "wheels.txt")
    args = parser.parse_args()
    pins, absent = read_pins(args.pins)
    if args.list_project_requirements:
        print("\n".join(t for t in project_requirements() if canonicalize_name(Requirement(t).name) not in absent))
        return
    if args.wheels is None:
        parser.error("--wheels is required")
    wheels = [read_wheel(path) for path in sorted(args.wheels.glob("*.whl"))]
    problems, assumed, left_out = check(wheels, pins, absent, read_image(args.image), args.python)
    print(f"{len(wheels)} wheels in {args.wheels} for CPython {args.python}")
    for line in assumed:
        print(f"  from the image, its version not known: {line}")
    for line in left_out:
        print(f"  not carried, as wheels.txt says: {line}")
    for line in problems:
        print(f"  UNMET: {line}")
    if problems:
        sys.exit(1)
    print("closure complete")


if __name__ == "__main__":
    main()
