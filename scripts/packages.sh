# Sourced by scripts/setup and scripts/test: installs the Debian packages Sabot builds with, when
# they are missing (C/C++ toolchain for RocksDB and wasmtime, libclang for RocksDB's bindings,
# cmake and libcurl/libssl headers for librdkafka,
# Maven for fetching the Kafka broker the tests run, kcat for the Kafka interop tests, Chromium for the dashboard's headless browser test).
# SABOT_SKIP_APT=1 skips this step.
sabot_packages() {
    [ -n "${SABOT_SKIP_APT:-}" ] && return 0
    command -v apt-get >/dev/null || return 0
    local missing=()
    for pkg in build-essential pkg-config ca-certificates libclang-dev cmake libcurl4-openssl-dev libssl-dev kcat maven chromium; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    echo "==> installing system packages: ${missing[*]}" >&2
    local sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
}
