#!/bin/sh
# `redis-server --opt ...` (no configuration file): add --protected-mode no, as the official
# image does, so that the other containers of the compose network may connect.
set -eu
if [ "$1" = redis-server ]; then
    case "${2:-}" in
        *.conf) ;;
        *) shift; set -- redis-server --bind '* -::*' --protected-mode no "$@" ;;
    esac
fi
exec "$@"
