#!/usr/bin/env bash
# Prepares what the GPU machine needs and cannot fetch (it has no network): the wheels of wheels.txt for
# its Python, checked to install with no index over its image, and the embedded model's tokenizer. Run
# here, where PyPI is reachable, from anywhere in the repository:
#
#   bash benchmarks/device/fetch_wheels.sh [--python 3.12] [--dest .whl] [--image benchmarks/device/image.txt]
#                                          [--resolve-in VENV]
#
# --python      the target's CPython (default 3.12, the device's); wheels for manylinux x86_64, glibc <= 2.28
# --dest        the wheel folder, emptied first (default .whl, which session.sh installs from)
# --image       what the target interpreter already has, as `pip list --format=freeze` (default image.txt)
# --resolve-in  a venv of the target Python: also fetch, at the versions its pip resolves, every package
#               wheels.txt needs that the venv lacks (the 3.11 simulation: the venv holds torch alone, so
#               the image's packages come from the folder too)
# PYTHON        an interpreter with eval-anything importable, for the tokenizer (default .venv/bin/python,
#               else python3)
#
# Writes .device/tokenizer and prints the sizes; fails if what travels (the working tree, .whl and
# .device) reaches 64 MiB.
set -euo pipefail
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
here=benchmarks/device
python_version=3.12 dest=.whl image=$here/image.txt resolve_in=
while (($#)); do
  case $1 in
    --python) python_version=$2; shift 2 ;;
    --dest) dest=$2; shift 2 ;;
    --image) image=$2; shift 2 ;;
    --resolve-in) resolve_in=$2; shift 2 ;;
    *) echo "fetch_wheels.sh: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
abi=cp${python_version/./}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

grep -v '^\s*#' $here/wheels.txt | sed 's/#.*//; /^\s*$/d' > "$work/specs"
if [ -n "$resolve_in" ]; then
  python3 $here/check_closure.py --list-project-requirements > "$work/project"
  "$resolve_in/bin/pip" install --dry-run --quiet --report "$work/report.json" -r $here/wheels.txt -r "$work/project"
  python3 -c 'import json, re, sys
name = lambda text: re.sub(r"[-_.]+", "-", text).lower()
pinned = {name(line.split("==")[0]) for line in open(sys.argv[2])}
for item in json.load(open(sys.argv[1]))["install"]:
    if name(item["metadata"]["name"]) not in pinned:
        print("%s==%s" % (item["metadata"]["name"], item["metadata"]["version"]))' \
    "$work/report.json" "$work/specs" > "$work/resolved"
  cat "$work/resolved" >> "$work/specs"
fi

rm -rf "$dest" && mkdir -p "$dest" "$work/sdist"
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64
           --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64 --platform manylinux_2_5_x86_64
           --platform manylinux1_x86_64)
while read -r spec; do
  if ! python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$python_version" \
      --implementation cp --abi "$abi" --abi abi3 --abi none "${platforms[@]}" -d "$dest" "$spec" 2>"$work/err"; then
    # no wheel on PyPI (rouge-score, sqlitedict, word2number): build one from the sdist; they are pure
    # Python, and check_closure.py refuses a wheel the target cannot install
    python3 -m pip download --quiet --no-deps --no-binary=:all: -d "$work/sdist" "$spec" 2>>"$work/err" \
      || { cat "$work/err" >&2; echo "fetch_wheels.sh: no wheel or sdist for $spec" >&2; exit 1; }
    python3 -m pip wheel --quiet --no-deps -w "$dest" "$work/sdist/"* 2>>"$work/err" \
      || { cat "$work/err" >&2; echo "fetch_wheels.sh: building $spec failed" >&2; exit 1; }
    rm -rf "$work/sdist/"*
    echo "built $spec from its sdist"
  fi
done < "$work/specs"

python3 $here/check_closure.py --wheels "$dest" --python "$python_version" --image "$image"

mkdir -p .device
PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} "$PYTHON" -c 'import sys; from pathlib import Path
sys.path.insert(0, "benchmarks")
from random_model import copy_tokenizer, embedded_tokenizer_dir
copy_tokenizer(embedded_tokenizer_dir(), Path(".device/tokenizer"))'

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
tree=$( { git ls-files -z; git ls-files -z -o --exclude-standard; } | xargs -0 -r du -cb 2>/dev/null | awk '/\ttotal$/ { s += $1 } END { print s + 0 }')
wheels=$(du -sb "$dest" | cut -f1) device=$(du -sb .device | cut -f1)
total=$((tree + wheels + device))
echo "wheels $(mib "$wheels") ($(ls "$dest" | wc -l) files in $dest), .device $(mib "$device"), working tree $(mib "$tree"): $(mib "$total") of the 64 MiB that travel"
if [ "$dest" = .whl ] && ((total >= 64 * 1048576)); then  # another --dest is not what travels
  echo "fetch_wheels.sh: over the 64 MiB a device call carries; drop wheels the image already has (refresh image.txt)" >&2
  exit 1
fi
