"""A city of N regions, like the taxi example: cars in each region, one edge server per region, a cloud.

    cars-1 xC --(edge-net-1)-- mec-1 --+
    cars-2 xC --(edge-net-2)-- mec-2 --+--(internet)-- cloud
    ...                                |
    cars-N xC --(edge-net-N)-- mec-N --+
    (the cars reach the cloud over the internet directly too, as in the taxi example)

A plain Fogify model built in Python (no fogify-net extension: it deploys on a Swarm as well).
Every car pings its region's edge server and the cloud once a second and writes both RTTs to
/fogify/metrics (rtt_edge_ms, rtt_cloud_ms); edge servers and the cloud serve HTTP on 8080.

Parameters (fogify-net deploy topologies/city --param regions=4 --param cars=3 ...):
  regions        number of regions (default 3)
  cars           cars per region (default 2)
  edge_bandwidth a region network's bandwidth, each way (default 100Mbps)
  edge_delay     a region network's delay, car to edge server (default 5ms)
  wan_uplink     what an instance sends over the internet (default 10Mbps)
  wan_downlink   what it receives (default 20Mbps)
  wan_delay      one way over the internet, sender to receiver (default 40ms)

Scenario `rush-hour`: two more cars join region 1, and region 1's network slows to a fifth.
"""

from __future__ import annotations

from fogify_net.model import ModelBuilder

IMAGE = "fogify-net/base:latest"
PROBE = """mkdir -p /fogify
while :; do
  e=$(ping -n -c1 -W2 "$EDGE" | sed -n 's/.*time=\\([0-9.]*\\) ms.*/\\1/p')
  c=$(ping -n -c1 -W2 cloud | sed -n 's/.*time=\\([0-9.]*\\) ms.*/\\1/p')
  echo "{\\"rtt_edge_ms\\": ${e:-0}, \\"rtt_cloud_ms\\": ${c:-0}}" > /fogify/m.new && mv /fogify/m.new /fogify/metrics
  sleep 1
done"""


def build(params: dict) -> ModelBuilder:
    regions = int(params.get("regions", 3))
    cars = int(params.get("cars", 2))
    edge = {"bandwidth": str(params.get("edge_bandwidth", "100Mbps")),
            "latency": {"delay": str(params.get("edge_delay", "5ms"))}}
    half = f"{_ms(params.get('wan_delay', '40ms')) / 2:g}ms"  # a path crosses an uplink and a downlink
    m = ModelBuilder()
    m.service("server", image=IMAGE, command=["python3", "-m", "http.server", "8080"])
    m.node("cloud-node", cores=2, clock_speed=2000, memory="1G")
    m.node("edge-node", cores=1, clock_speed=1400, memory="512M")
    m.node("car-node", cores=1, clock_speed=500, memory="128M")
    m.network("internet", uplink={"bandwidth": str(params.get("wan_uplink", "10Mbps")), "latency": {"delay": half}},
              downlink={"bandwidth": str(params.get("wan_downlink", "20Mbps")), "latency": {"delay": half}})
    m.blueprint("cloud", node="cloud-node", service="server", networks=["internet"])
    for region in range(1, regions + 1):
        m.service(f"car-{region}", image=IMAGE, environment={"EDGE": f"mec-{region}"}, command=["sh", "-c", PROBE])
        m.network(f"edge-net-{region}", bidirectional=edge)
        m.blueprint(f"mec-{region}", node="edge-node", service="server",
                    networks=[f"edge-net-{region}", "internet"])
        m.blueprint(f"cars-{region}", node="car-node", service=f"car-{region}", replicas=cars,
                    networks=[f"edge-net-{region}", "internet"])
    m.scenario("rush-hour", [
        {"time": 10, "instance_type": "cars-1", "instances": 2, "action": {"type": "horizontal_scaling",
                                                                           "parameters": {"type": "up"}}},
        {"time": 5, "instance_type": "mec-1", "action": {"type": "network", "parameters": {
            "network": "edge-net-1", "bidirectional": {"bandwidth": "20Mbps"}}}},
    ])
    return m


def _ms(value) -> float:
    text = str(value).strip()
    if text.endswith("ms"):
        return float(text[:-2])
    if text.endswith("s"):
        return float(text[:-1]) * 1000
    return float(text)
