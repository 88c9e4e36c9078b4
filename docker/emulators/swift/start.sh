#!/bin/sh
# memcached (tempauth's tokens) and the account, container and object servers in the background,
# the proxy in the foreground as PID 1's child via exec: stopping the container stops it.
set -eu
memcached -l 127.0.0.1 -p 11211 -U 0 -m 16 &
for server in account container object; do
  swift-$server-server /etc/swift/$server-server.conf &
done
exec swift-proxy-server /etc/swift/proxy-server.conf
