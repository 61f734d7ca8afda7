# Sourced by scripts/setup and scripts/test: the toolchains of agents in JavaScript, Python and Go,
# installed where they are missing (all from the package registries this machine reaches).
#
# - guest-sdk/js: its npm dependencies (ComponentizeJS, apache-arrow, esbuild), from the lock file;
# - guest-sdk/python: a virtual environment at $SABOT_VENV (default ~/.cache/sabot/venv) with
#   componentize-py, the SDK (editable) and its test dependencies;
# - Go modules of the Go SDK and example, into Go's module cache.
sabot_languages() {
    local venv="${SABOT_VENV:-$HOME/.cache/sabot/venv}"
    for tool in node npm python3 go; do
        if ! command -v "$tool" >/dev/null; then
            echo "scripts: $tool not found: agents in other languages need Node.js 20, Python 3.11 and Go 1.24 or later" >&2
            return 1
        fi
    done
    echo "==> JavaScript SDK: npm install (guest-sdk/js)" >&2
    # npm ci trips over the lock file's optional platform packages (npm 11): install from it.
    (cd guest-sdk/js && npm install --no-audit --no-fund --loglevel=error >/dev/null)
    echo "==> Python SDK: $venv" >&2
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -e "guest-sdk/python[test]"
    # fastavro: the Avro implementation that is not Sabot, for the Kafka Avro interop test.
    "$venv/bin/pip" install --quiet --disable-pip-version-check "fastavro==1.12.1"
    echo "==> Go SDK: go mod download" >&2
    (cd guest-sdk/go && go mod download)
    (cd examples/fraud-detection/agents/go && go mod download)
    (cd tests/guests/languages/go && go mod download)
    (cd examples/sql/functions/go && go mod download)
    export SABOT_VENV="$venv"
}
