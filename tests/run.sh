#!/usr/bin/env bash
# The one test command (README, .ci/run): install, lint, format check, tests.
# Works on a fresh machine as root; exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install --quiet --root-user-action=ignore -r requirements.txt -r requirements-dev.txt

# The browser test drives Debian's Chromium (Playwright's own browser download is not used).
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    else
        sudo apt-get update -qq
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
    fi
fi

ruff check .
ruff format --check .
python -m pytest -q "$@"
