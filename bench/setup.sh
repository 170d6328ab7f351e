#!/usr/bin/env bash
# Installs the benchmarks' load tool, wrk (Debian package), when it is missing.
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" != 0 ]; then echo "wrk is missing: run 'sudo apt-get install wrk'" >&2; exit 1; fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
