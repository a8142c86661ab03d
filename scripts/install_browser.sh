#!/usr/bin/env bash
# Installs Debian's Chromium (and its driver) for the browser test when it is missing; `make test` runs this.
# --no-install-recommends keeps it to about 20 packages instead of about 110 (no printing, audio-daemon or desktop
# extras); fonts-dejavu-core is named so the page always has a font for its text and the screenshot test.
# If it cannot be installed the script says so and exits 0: tests/test_web_browser.py then fails (never skips).
set -uo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/lib/chromium/chromium ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
if ! { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q \
    && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      chromium chromium-driver fonts-dejavu-core; }; then
  echo "warning: could not install chromium; tests/test_web_browser.py will fail" >&2
fi
exit 0
