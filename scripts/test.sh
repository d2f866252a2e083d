#!/usr/bin/env bash
# README command 2: set up (first run only) and run the test suite.
source "$(dirname "$0")/env.sh"
exec python -m pytest tests "$@"
