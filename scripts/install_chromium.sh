#!/usr/bin/env bash
# Install Debian's headless browser for the browser tests (tests/web): `chromium` and the
# matching `chromium-driver` (/usr/bin/chromedriver). Nothing is downloaded outside apt: no
# browser can be fetched from the internet here, and Selenium Manager is kept offline.
# Safe to run again: it changes nothing when both are installed. Exits non-zero, with the
# reason on stderr, when they cannot be installed.
set -euo pipefail

log() { printf '[chromium] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  log "chromium and chromium-driver are missing and there is no apt-get to install them"
  exit 1
fi
if [ "$(id -u)" -ne 0 ] && ! sudo -n true 2>/dev/null; then
  log "chromium and chromium-driver are missing; installing them needs root (or sudo)"
  exit 1
fi
log "installing chromium and chromium-driver with apt-get (a few minutes the first time)"
# Other apt users (a parallel install) hold the dpkg lock for a while: wait for it.
apt_get() { as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"; }
apt_get update -qq
apt_get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
command -v chromium >/dev/null && command -v chromedriver >/dev/null
log "installed: $(chromium --version 2>/dev/null || echo chromium)"
