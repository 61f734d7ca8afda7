# Sourced by scripts/setup and scripts/test: installs the Debian packages Sabot builds with, when
# they are missing (C/C++ toolchain for wasmtime, libclang for RocksDB's bindings, Debian's
# RocksDB (librocksdb-dev, linked statically: see sabot_rocksdb_env), cmake and libcurl/libssl
# headers for librdkafka,
# Maven for fetching the Kafka broker the tests run, kcat for the Kafka interop tests, Chromium for the dashboard's headless browser test).
# SABOT_SKIP_APT=1 skips this step.
sabot_packages() {
    sabot_packages_install
    sabot_rocksdb_env
}

# RocksDB from Debian's librocksdb-dev (7.8) instead of compiling the 300-odd C++ files of the
# one bundled with the rocksdb crate, which takes most of a cold build's half hour on two
# cores. Linked statically (with Debian's static snappy; zstd, zlib and bzip2 through their
# crates), so the binary needs no RocksDB at run time. Without these variables (any other
# system) the crate builds its bundled RocksDB from source.
sabot_rocksdb_env() {
    local lib
    lib="/usr/lib/$(gcc -print-multiarch 2>/dev/null)"
    [ -f "$lib/librocksdb.a" ] && [ -f "$lib/libsnappy.a" ] || return 0
    export ROCKSDB_LIB_DIR="$lib" ROCKSDB_STATIC=1 ROCKSDB_INCLUDE_DIR=/usr/include
    export SNAPPY_LIB_DIR="$lib" SNAPPY_STATIC=1
}

sabot_packages_install() {
    [ -n "${SABOT_SKIP_APT:-}" ] && return 0
    command -v apt-get >/dev/null || return 0
    local missing=()
    for pkg in build-essential pkg-config ca-certificates libclang-dev librocksdb-dev cmake libcurl4-openssl-dev libssl-dev kcat maven chromium; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    echo "==> installing system packages: ${missing[*]}" >&2
    local sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
}
