# shellcheck shell=bash
# Shared by scripts/test, scripts/demo and scripts/bench.

PRAFS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Build and test dependencies, all from Debian's packages.
PRAFS_DEPS=(build-essential meson ninja-build pkg-config libfuse3-dev fuse3 libcurl4-openssl-dev
            libzstd-dev libssl-dev libcmocka-dev libexpat1-dev acl attr python3 util-linux)

# Installs whatever of the given Debian packages is missing (apt-get update first, once).
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing: ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

# Configures (once) and builds the project in $1 with the remaining meson options.
build_project() {
    local dir=$1; shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$PRAFS_ROOT" "$@" >&2
    fi
    ninja -C "$dir" >&2
}
