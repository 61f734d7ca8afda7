# Sourced by scripts/test: S3Proxy, an S3-compatible server (Java, from Maven Central), for the
# object storage tests, fetched once with Maven like the Kafka broker. Each test starts servers
# of its own (on 127.0.0.1, objects in a temporary directory) so it can kill and restart them;
# this exports where the jars are: SABOT_S3PROXY_LIB (and SABOT_S3PROXY_LOGBACK, its logging
# configuration). Chosen over SeaweedFS (a Go module of a few hundred dependencies to build) and
# MinIO (the same): 132 jars, 43 MB, fetched in about 10 s; a server answers in about 2 s.
. "$(dirname "${BASH_SOURCE[0]}")/maven.sh"

sabot_s3_fetch() {
    local home
    home="$(sabot_maven_fetch s3proxy tests/s3proxy/pom.xml s3proxy.version S3Proxy)" || return 1
    SABOT_S3PROXY_LIB="$home/lib"
    SABOT_S3PROXY_LOGBACK="$PWD/tests/s3proxy/logback.xml"
    export SABOT_S3PROXY_LIB SABOT_S3PROXY_LOGBACK
}
