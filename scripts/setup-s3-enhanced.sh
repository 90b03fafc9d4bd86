#!/usr/bin/env bash
# The guide's command line, kept working: ./scripts/setup-s3-enhanced.sh <dev|prod> [profile] [setup flags...]
# Everything happens in `echoes-storage setup`; this only maps the positional profile.
set -euo pipefail

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
  echo "usage: $0 <dev|prod> [aws-profile] [--region R] [--endpoint URL] [--write-env [file]] [--json]" >&2
  exit 2
fi
env_name="$1"
shift
profile_args=()
if [[ $# -gt 0 && "$1" != -* ]]; then
  profile_args=(--profile "$1")
  shift
fi
exec node "$(dirname "$0")/../dist/entry/cli.js" setup "$env_name" "${profile_args[@]}" "$@"
