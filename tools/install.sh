#!/bin/sh
# Builds the ferrofs tools in release mode and installs them under their real
# names (cargo cannot name a binary "mkfs.ferrofs" itself).
# usage: tools/install.sh [DIR]     DIR defaults to /usr/local/sbin
set -eu
cd "$(dirname "$0")"
dir=${1:-/usr/local/sbin}
cargo build --release
install -D -m 0755 target/release/mkfs-ferrofs "$dir/mkfs.ferrofs"
echo "installed $dir/mkfs.ferrofs"
install -D -m 0755 target/release/fsck-ferrofs "$dir/fsck.ferrofs"
echo "installed $dir/fsck.ferrofs"
