# OpenStack Swift all-in-one (the swift location of docker/compose.yaml, profile "swift"):
# memcached, account/container/object servers over one folder with single-replica rings, and
# the proxy with tempauth (test:tester / testing) on port 8080.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends memcached \
 && rm -rf /var/lib/apt/lists/*
RUN pip install --no-cache-dir --disable-pip-version-check swift
COPY swift/ /etc/swift/
RUN python /etc/swift/build_rings.py \
 && useradd --system --uid 10005 swift \
 && mkdir -p /srv/node/d1 /var/cache/swift \
 && chown -R swift:swift /srv/node /var/cache/swift /etc/swift \
 && chmod 755 /etc/swift/start.sh
USER swift
EXPOSE 8080
# On SIGTERM the servers wait for open keep-alive connections (seconds each); a playground
# holds nothing worth flushing.
STOPSIGNAL SIGKILL
CMD ["/etc/swift/start.sh"]
