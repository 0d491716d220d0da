#!/usr/bin/env bash
# Install Debian packages some tests need, when what they provide is missing:
#   scripts/apt_install.sh "COMMAND [COMMAND...]" PACKAGE [PACKAGE...]
# e.g. scripts/apt_install.sh "chromium chromedriver" chromium chromium-driver
# Nothing is downloaded outside apt. Safe to run again: it changes nothing when every COMMAND
# (a name on PATH or an absolute path) is there. Exits non-zero, with the reason on stderr,
# when they cannot be installed.
set -euo pipefail

commands=$1
shift
log() { printf '[apt] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }
present() {
  local c
  for c in $commands; do
    command -v "$c" >/dev/null || [ -x "$c" ] || return 1
  done
}

if present; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  log "$* missing and there is no apt-get to install them"
  exit 1
fi
if [ "$(id -u)" -ne 0 ] && ! sudo -n true 2>/dev/null; then
  log "$* missing; installing them needs root (or sudo)"
  exit 1
fi
log "installing $* with apt-get"
# Other apt users (a parallel install) hold the dpkg lock for a while: wait for it.
apt_get() { as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"; }
apt_get update -qq
apt_get install -y -qq --no-install-recommends "$@" >/dev/null
present
log "installed: $*"
