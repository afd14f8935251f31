#!/usr/bin/env bash
# Installs everything the project needs on a Debian machine, idempotently:
#   system packages (Open3D's libraries, Chromium for browser tests, PostgreSQL for the scale path,
#   podman + runc + debootstrap to build and run the Docker image: tests/test_container.py),
#   the project's virtual environment (the project installed editable, with its dev extra) and
#   Label Studio's own virtual environment.
# Prints the two interpreters' paths as shell assignments (POSE6D_PYTHON=..., LS_BIN=...).
# Environment: POSE6D_HOME (default ~/.cache/pose6d) holds the environments.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
home="${POSE6D_HOME:-$HOME/.cache/pose6d}"
mkdir -p "$home"
log="$home/setup.log"
# One setup at a time: a second run (another shell, a parallel test session) waits here instead
# of deleting a venv the first one is installing into.
exec 9>"$home/.setup.lock"
flock 9

apt_packages=(libusb-1.0-0 libgl1 libegl1 libgomp1 libx11-6 chromium chromium-driver postgresql fonts-dejavu-core
              podman runc debootstrap debian-archive-keyring)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${missing[*]}" >&2
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq >>"$log" 2>&1
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >>"$log" 2>&1 \
    || { echo "setup: apt-get install failed, see $log" >&2; exit 1; }
fi

make_venv() {  # make_venv DIR "PIP ARGS" [FILES THE STAMP COVERS...]
  local dir="$1" args="$2" stamp
  shift 2
  stamp="$(cat "$@" | sha256sum | cut -c1-16)"
  if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ]; then return 0; fi
  echo "setup: installing $args into $dir (first time only, a few minutes)" >&2
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install -q --upgrade pip >>"$log" 2>&1 || true
  # shellcheck disable=SC2086
  "$dir/bin/pip" install -q $args >>"$log" 2>&1 \
    || { echo "setup: pip install $args failed, see $log" >&2; exit 1; }
  echo "$stamp" > "$dir/.stamp"
}
# The project's dependencies (the service's and the dev extra's), then the project itself,
# editable, from this checkout: a venv made for another checkout is pointed here again.
make_venv "$home/venv" "-r $repo/requirements-backend.txt -r $repo/requirements-dev.txt" \
  "$repo/requirements-backend.txt" "$repo/requirements-dev.txt"
# (Asked from / so that the current folder's pose6d cannot answer for the installed one.)
if [ "$(cd / && "$home/venv/bin/python" -c 'import pose6d, pathlib; print(pathlib.Path(pose6d.__file__).resolve().parents[1])' 2>/dev/null)" != "$repo" ] \
   || ! cmp -s "$repo/pyproject.toml" "$home/venv/.pyproject"; then
  "$home/venv/bin/pip" install -q "setuptools>=68" wheel >>"$log" 2>&1 \
    && "$home/venv/bin/pip" install -q --no-deps --no-build-isolation -e "$repo" >>"$log" 2>&1 \
    || { echo "setup: pip install -e $repo failed, see $log" >&2; exit 1; }
  cp "$repo/pyproject.toml" "$home/venv/.pyproject"
fi
make_venv "$home/label-studio" "-r $repo/requirements-label-studio.txt" "$repo/requirements-label-studio.txt"
echo "POSE6D_PYTHON=$home/venv/bin/python"
echo "LS_BIN=$home/label-studio/bin/label-studio"
