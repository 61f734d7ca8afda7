# Sourced by scripts/test: what the container tests need on a machine without a Docker engine or
# an image registry — Podman with runc, podman-compose (Debian's), a Debian bookworm base image
# made locally with debootstrap (from Debian's mirror), and no default ulimits (they fail in
# nested containers).
# SABOT_SKIP_CONTAINER=1 skips this step (the container test then says what is missing).
SABOT_BASE_IMAGE="${SABOT_BASE_IMAGE:-localhost/debian:bookworm-slim}"
export SABOT_BASE_IMAGE

sabot_container() {
    [ -n "${SABOT_SKIP_CONTAINER:-}" ] && return 0
    local sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    local missing=()
    for pkg in podman podman-compose runc debootstrap; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "==> installing ${missing[*]} (the container test)" >&2
        $sudo_cmd apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ! grep -qs '^default_ulimits *= *\[\]' /etc/containers/containers.conf; then
        echo "==> /etc/containers/containers.conf: default_ulimits = []" >&2
        $sudo_cmd mkdir -p /etc/containers
        printf '[containers]\ndefault_ulimits = []\n' | $sudo_cmd tee /etc/containers/containers.conf >/dev/null
    fi
    if ! $sudo_cmd podman image exists "$SABOT_BASE_IMAGE"; then
        echo "==> making the base image $SABOT_BASE_IMAGE with debootstrap (once)" >&2
        local root
        root="$(mktemp -d)"
        $sudo_cmd debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
        # What a slim image leaves out: documentation, manuals, locales, package caches.
        $sudo_cmd rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
            "$root"/usr/share/locale/* "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/*
        $sudo_cmd tar -C "$root" -c . | $sudo_cmd podman import - "$SABOT_BASE_IMAGE" >/dev/null
        $sudo_cmd rm -rf "$root"
    fi
}
