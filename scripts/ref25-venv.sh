#!/usr/bin/env bash
# The ASAP 2.x reference's virtualenv (asap-protocol 2.5.10): scripts/ref-venv.sh 2.5.10.
exec "$(dirname "${BASH_SOURCE[0]}")/ref-venv.sh" 2.5.10 "$@"
