#!/usr/bin/env bash
# Install Debian's headless browser for the browser tests (tests/web): `chromium` and the
# matching `chromium-driver` (/usr/bin/chromedriver). Nothing is downloaded outside apt: no
# browser can be fetched from the internet here, and Selenium Manager is kept offline.
# Safe to run again: it changes nothing when both are installed. Exits non-zero, with the
# reason on stderr, when they cannot be installed.
set -euo pipefail
exec bash "$(dirname "$0")/apt_install.sh" "chromium chromedriver" chromium chromium-driver
