"""Every option ovsbr reads, in neutron-like groups.

``list_opts`` is the oslo-config-generator hook (entry point
``oslo.config.opts = ovsbr``): the sample file and the README's option table
are generated from these definitions, so they cannot drift.
"""

from __future__ import annotations

import socket

from oslo_config import cfg

DEFAULT_OPTS = [
    cfg.StrOpt("driver", default="linuxbridge",
               help="Datapath driver: the name of an entry point in the "
                    "'ovsbr.drivers' namespace (linuxbridge, openvswitch)."),
    cfg.StrOpt("store", default="file",
               help="Desired-state store: the name of an entry point in the "
                    "'ovsbr.stores' namespace (file: one host; etcd: several "
                    "hosts share one desired state)."),
    cfg.StrOpt("state_path", default="/var/lib/ovsbr",
               help="Directory for ovsbr's own state: the file store's "
                    "topology.json and the agent's status (status.json, the "
                    "head, and one file per port under status.d/)."),
    cfg.StrOpt("control_socket", default="$state_path/agent.ctl",
               help="Unix socket where the agent answers what is asked, not "
                    "published (ovsbr mac-table on this host). Mode 0660: "
                    "whoever may read the state directory may ask."),
    cfg.StrOpt("host", default=socket.gethostname(), sample_default="<hostname>",
               help="Name of this host: the agent wires the ports declared "
                    "for it, registers under it in a shared store, and the CLI "
                    "gives it to ports declared without --host."),
    cfg.IntOpt("resync_interval", default=30, min=1, max=3600,
               help="Seconds between full resyncs that repair drift the "
                    "event streams did not report."),
]

LINUX_BRIDGE_OPTS = [
    cfg.ListOpt("physical_interface_mappings", default=[],
                help="PHYSNET:INTERFACE pairs: the host NIC that carries each "
                     "physical network, e.g. physnet1:eth0."),
    cfg.StrOpt("bridge_prefix", default="brq-",
               help="Prefix of the Linux bridges ovsbr creates, one per "
                    "network (1-6 characters of letters, digits, '-', '_')."),
]

VXLAN_OPTS = [
    cfg.IPOpt("local_ip", version=4,
              help="IPv4 address of this host's tunnel endpoint (both "
                   "drivers): the source of its VXLAN/Geneve packets and "
                   "the address other hosts tunnel to."),
    cfg.PortOpt("udp_port", default=4789,
                help="UDP destination port of VXLAN (IANA: 4789)."),
]

OVS_OPTS = [
    cfg.StrOpt("ovsdb_connection", default="unix:/var/run/openvswitch/db.sock",
               help="OVSDB server the openvswitch driver talks to: "
                    "unix:PATH, tcp:IP:PORT or ssl:IP:PORT."),
    cfg.StrOpt("integration_bridge", default="br-int",
               help="The OVS bridge that VM ports are plugged into."),
    cfg.StrOpt("datapath_type", default="system", choices=["system", "netdev"],
               help="Datapath type of the bridges ovsbr creates: system "
                    "(kernel module) or netdev (userspace)."),
    cfg.ListOpt("bridge_mappings", default=[],
                help="PHYSNET:BRIDGE pairs: the OVS bridge holding the NIC of "
                     "each physical network, e.g. physnet1:br-ex."),
    cfg.StrOpt("of_listen_address", default="127.0.0.1",
               help="Address the agent's OpenFlow controller listens on. A "
                    "non-loopback address needs the three of_ssl_* options: "
                    "any switch that reaches the port could otherwise connect."),
    cfg.PortOpt("of_listen_port", default=6653,
                help="TCP port the agent's OpenFlow controller listens on."),
    cfg.IntOpt("ovsdb_timeout", default=10, min=1, max=600,
               help="Seconds to wait for an OVSDB transaction; one that "
                    "writes many ports at once (a bulk of new ports) waits "
                    "this long for every 1,000 ports it writes."),
    cfg.StrOpt("of_ssl_key_file",
               help="PEM private key of the OpenFlow controller. With "
                    "of_ssl_cert_file and of_ssl_ca_cert_file set, the "
                    "controller speaks TLS (target ssl:ADDR:PORT) and admits "
                    "only switches whose certificate the CA signed; OVS needs "
                    "its own key and certificate (ovs-vsctl set-ssl)."),
    cfg.StrOpt("of_ssl_cert_file",
               help="PEM certificate of the OpenFlow controller."),
    cfg.StrOpt("of_ssl_ca_cert_file",
               help="PEM CA certificate that signed the switches' certificates."),
]

ETCD_OPTS = [
    cfg.ListOpt("endpoints", default=["127.0.0.1:2379"],
                help="HOST:PORT of the etcd members (client URLs), tried in "
                     "order; a failed member is skipped until the next error."),
    cfg.StrOpt("prefix", default="/ovsbr",
               help="Key prefix of everything ovsbr keeps in etcd; several "
                    "ovsbr deployments can share a cluster under different "
                    "prefixes."),
    cfg.FloatOpt("timeout", default=5.0, min=0.1, max=120,
                 help="Seconds to wait for one etcd request."),
    cfg.IntOpt("lease_ttl", default=10, min=2, max=3600,
               help="Seconds a host stays registered after its agent stops "
                    "renewing its lease: then its tunnels and MACs are removed "
                    "on every other host."),
    cfg.StrOpt("watch", default="host",
               choices=[("host", "the networks, groups and live hosts, and the ports "
                                 "this host wires, of its overlay networks and of its "
                                 "remote groups: a write reaches the agents that use it"),
                        ("all", "the whole topology: every write reaches every agent")],
               help="What the agent watches in etcd. 'host' needs writers that "
                    "keep the port copies (this ovsbr); while they are behind, the "
                    "agent watches everything."),
    cfg.StrOpt("ca_cert", help="PEM CA certificate of the etcd servers; set it "
                               "to talk HTTPS."),
    cfg.StrOpt("cert_file", help="PEM client certificate for etcd (with key_file)."),
    cfg.StrOpt("key_file", help="PEM client key for etcd (with cert_file)."),
]

OPENFLOW_OPTS = [
    cfg.IntOpt("mac_aging_time", default=300, min=10, max=86400,
               help="Seconds of silence after which a learned MAC expires."),
    cfg.IntOpt("max_macs_per_port", default=1024, min=1, max=65536,
               help="Most MACs learned on one port; further sources are not "
                    "learned (a MAC-flooding VM cannot fill the table)."),
    cfg.IntOpt("packet_in_rate", default=2000, min=10, max=1000000,
               help="Packet-ins per second a bridge may send the controller "
                    "(OVS controller_rate_limit)."),
    cfg.IntOpt("packet_in_queue", default=512, min=1, max=512,
               help="Packet-ins ovs-vswitchd holds for the controller while "
                    "it is busy (OVS controller_queue_size; OVS's own default "
                    "is 100): beyond it, a new MAC's first frame is dropped "
                    "unlearned. 512 is 50 ms of 10,000 new MACs a second."),
]

METRICS_OPTS = [
    cfg.BoolOpt("enabled", default=False,
                help="Serve Prometheus metrics (/metrics), liveness (/healthz) "
                     "and readiness (/readyz) over HTTP."),
    cfg.HostAddressOpt("bind_host", default="127.0.0.1",
                       help="Address the metrics endpoint listens on; anything "
                            "but loopback exposes it to the network (no TLS)."),
    cfg.PortOpt("bind_port", default=9477,
                help="TCP port of the metrics endpoint."),
]

GROUPS = {
    "DEFAULT": DEFAULT_OPTS,
    "linux_bridge": LINUX_BRIDGE_OPTS,
    "vxlan": VXLAN_OPTS,
    "ovs": OVS_OPTS,
    "openflow": OPENFLOW_OPTS,
    "etcd": ETCD_OPTS,
    "metrics": METRICS_OPTS,
}


def register(conf: cfg.ConfigOpts) -> None:
    for group, options in GROUPS.items():
        conf.register_opts(options, group=None if group == "DEFAULT" else group)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [(group, list(options)) for group, options in GROUPS.items()]
