#!/usr/bin/env bash
# Installs everything this project needs on a fresh Debian/Ubuntu control machine:
# system packages (podman for the sandbox cluster, promtool/amtool for rule tests) and the project venv.
# Idempotent: a second run only checks.
#   TORCH_INDEX_URL  extra index holding the CPU torch build (e.g. PyTorch's CPU wheel index)
#   SKIP_APT=1       do not touch system packages (non-root users who installed them already)
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
APT_PACKAGES=(podman debootstrap runc uidmap iproute2 iptables openssh-client prometheus prometheus-alertmanager
              numactl openmpi-bin iperf3)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ] && [ "${SKIP_APT:-0}" != 1 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "bootstrap: missing system packages ${missing[*]} and no apt-get; install them, then rerun with SKIP_APT=1" >&2
    exit 1
  fi
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "bootstrap: installing ${missing[*]}"
  $SUDO apt-get update -qq
  # The Debian prometheus packages start their daemons on install; the project runs its own instances.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp="$VENV/.installed-$(cat pyproject.toml constraints/*.txt | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip_args=(-q --disable-pip-version-check -c constraints/torch-cpu.txt)
[ -n "${TORCH_INDEX_URL:-}" ] && pip_args+=(--extra-index-url "$TORCH_INDEX_URL")
"$VENV/bin/pip" install "${pip_args[@]}" -e '.[dev]'
rm -f "$VENV"/.installed-*
touch "$stamp"
echo "bootstrap: $VENV ready ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
