#!/bin/sh
# Starts S3Proxy on port 9000 with the filesystem backend under /data.
set -eu
: "${S3_ACCESS_KEY:?set S3_ACCESS_KEY}" "${S3_SECRET_KEY:?set S3_SECRET_KEY}"
mkdir -p "/data/${S3_BUCKET:-sabot}"
cat > /tmp/s3proxy.conf <<CONF
s3proxy.endpoint=http://0.0.0.0:${S3_PORT:-9000}
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$S3_ACCESS_KEY
s3proxy.credential=$S3_SECRET_KEY
jclouds.provider=filesystem
jclouds.filesystem.basedir=/data
CONF
exec java -Dlogback.configurationFile=/opt/s3proxy/logback.xml -Xmx256m \
    -cp '/opt/s3proxy/lib/*' org.gaul.s3proxy.Main --properties /tmp/s3proxy.conf
