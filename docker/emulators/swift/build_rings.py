"""Single-replica rings, one device (/srv/node/d1) each, for the all-in-one container: what
`swift-ring-builder X create 8 1 1; add r1z1-127.0.0.1:PORT/d1 100; rebalance` makes."""

from swift.common.ring import RingBuilder

for name, port in (("account", 6202), ("container", 6201), ("object", 6200)):
    builder = RingBuilder(8, 1, 1)
    builder.add_dev({"region": 1, "zone": 1, "ip": "127.0.0.1", "port": port, "device": "d1",
                     "weight": 100})
    builder.rebalance()
    builder.save(f"/etc/swift/{name}.builder")
    builder.get_ring().save(f"/etc/swift/{name}.ring.gz")
