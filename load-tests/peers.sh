#!/usr/bin/env bash
# Installs the two signaling servers `bare-bench.sh` sets beside Parley with
# PEERS=1 (issue 17), into a cache directory, and prints their paths:
#
#   matchbox_server 0.15.0   cargo install --locked --root $PEERS_DIR/matchbox
#   PeerJS server 1.0.2      npm install --prefix $PEERS_DIR/peerjs peer@1.0.2
#
#   load-tests/peers.sh
#
# Idempotent: whatever is already installed at that version is left alone.
# Needs cargo, and node (>= 14) with npm; fetches from crates.io and npm.
# Not part of CI.
#
# Environment:
#   PEERS_DIR=$HOME/.cache/parley-peers   where they go (bare-bench.sh reads the same)
#
# Prints two lines, `matchbox_server <path>` and `peerjs <path>` (the PeerJS
# CLI, run with node). Exit status: 0 when both are installed, 1 otherwise.
set -euo pipefail
export LC_ALL=C

MATCHBOX_VERSION=0.15.0
PEERJS_VERSION=1.0.2
PEERS_DIR=${PEERS_DIR:-$HOME/.cache/parley-peers}
case $PEERS_DIR in /*) ;; *) PEERS_DIR=$PWD/$PEERS_DIR ;; esac

die() { printf 'peers.sh: %s\n' "$*" >&2; exit 1; }
mkdir -p "$PEERS_DIR"

matchbox=$PEERS_DIR/matchbox/bin/matchbox_server
# cargo records what it installed under --root in .crates.toml.
if [ -x "$matchbox" ] && grep -qF "\"matchbox_server $MATCHBOX_VERSION " "$PEERS_DIR/matchbox/.crates.toml" 2>/dev/null; then
    echo "peers.sh: matchbox_server $MATCHBOX_VERSION already installed" >&2
else
    command -v cargo >/dev/null || die "cargo is needed to install matchbox_server"
    echo "peers.sh: installing matchbox_server $MATCHBOX_VERSION (a release build: a few minutes)" >&2
    cargo install matchbox_server --version "$MATCHBOX_VERSION" --locked --root "$PEERS_DIR/matchbox" >&2
fi
[ -x "$matchbox" ] || die "no $matchbox after cargo install"

peerjs=$PEERS_DIR/peerjs/node_modules/peer/dist/bin/peerjs.js
installed() { node -p "require('$PEERS_DIR/peerjs/node_modules/peer/package.json').version" 2>/dev/null || true; }
command -v node >/dev/null || die "node is needed for the PeerJS server"
if [ -f "$peerjs" ] && [ "$(installed)" = "$PEERJS_VERSION" ]; then
    echo "peers.sh: PeerJS server (peer) $PEERJS_VERSION already installed" >&2
else
    command -v npm >/dev/null || die "npm is needed to install the PeerJS server"
    echo "peers.sh: installing the PeerJS server (peer@$PEERJS_VERSION)" >&2
    npm install --prefix "$PEERS_DIR/peerjs" --no-audit --no-fund "peer@$PEERJS_VERSION" >&2
fi
[ -f "$peerjs" ] && [ "$(installed)" = "$PEERJS_VERSION" ] || die "no peer@$PEERJS_VERSION at $peerjs after npm install"

echo "matchbox_server $matchbox"
echo "peerjs $peerjs"
