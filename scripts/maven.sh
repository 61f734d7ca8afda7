# Sourced by scripts/kafka.sh and scripts/s3.sh: the Java programs the tests run, fetched once
# from Maven Central with Maven into ~/.cache/sabot/NAME/VERSION/lib.
#
#   home="$(sabot_maven_fetch kafka tests/kafka/pom.xml kafka.version "Apache Kafka")"
sabot_maven_fetch() {
    local name="$1" pom="$2" property="$3" label="$4" version home
    version="$(sed -n "s:.*<$property>\(.*\)</$property>.*:\1:p" "$pom")"
    home="$HOME/.cache/sabot/$name/$version"
    if [ ! -f "$home/lib/.complete" ]; then
        echo "==> fetching $label $version from Maven Central (once)" >&2
        mvn -q -B -f "$pom" dependency:copy-dependencies -DoutputDirectory="$home/lib" >&2 || return 1
        touch "$home/lib/.complete"
    fi
    echo "$home"
}
