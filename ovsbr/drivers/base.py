"""The Driver contract every datapath implements (os-vif style: small, clear).

A driver says what *is* on the datapath (:meth:`Driver.observe`), reports
device changes as events, and performs idempotent operations the reconciler
asks for. It never decides what *should* be: that is the store's and the
reconciler's job, so both datapaths behave the same.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from oslo_config import cfg

from ovsbr.model import Network, Port, Topology
from ovsbr.secgroups.policy import PortPolicy


@dataclasses.dataclass(slots=True)
class Device:
    """A candidate VM port seen on the datapath.

    ``network`` is the ovsbr network the datapath says it is wired into (from
    ovsbr's own marks), or None when it is not wired by ovsbr.
    """

    name: str
    mac: str | None = None
    iface_id: str | None = None
    network: str | None = None


@dataclasses.dataclass(frozen=True)
class NetworkState:
    """An ovsbr-owned network on the datapath, as the driver observed it.

    ``fingerprint`` encodes the settings the datapath was built with; the
    reconciler rebuilds the network when it differs from the desired one.
    """

    name: str
    fingerprint: str


@dataclasses.dataclass(frozen=True)
class NotReady:
    """A plugged port the datapath cannot forward for yet, and why.

    ``failed`` means waiting will not help (the datapath refused the device).
    """

    reason: str
    failed: bool = False


@dataclasses.dataclass
class Observed:
    networks: dict[str, NetworkState] = dataclasses.field(default_factory=dict)
    devices: dict[str, Device] = dataclasses.field(default_factory=dict)
    # Device name -> network of ports held ready for a device not present
    # yet (see Driver.prepare); the network is None when ovsbr did not mark it.
    prepared: dict[str, str | None] = dataclasses.field(default_factory=dict)
    # iface-id -> the names of the devices carrying it, sorted, when the
    # driver keeps it; None: the planner builds it.
    iface_ids: dict[str, tuple[str, ...]] | None = None


@dataclasses.dataclass(frozen=True)
class Overlay:
    """One overlay network as this host must program it (l2population style)."""

    type: str  # vxlan | geneve
    vni: int
    vteps: frozenset[str]  # remote tunnel endpoints with ports on the network
    macs: tuple[tuple[str, str], ...]  # (MAC, endpoint) of remote declared ports


@dataclasses.dataclass(frozen=True)
class LearnedMac:
    network: str
    mac: str
    port: str | int  # the device name, or the OpenFlow port number if unknown
    age: float  # seconds since learned


@dataclasses.dataclass(frozen=True)
class BridgeReport:
    """A bridge's runtime state for ``ovsbr status`` and ``ovsbr mac-table``.

    ``macs`` is None unless asked for (:meth:`Driver.introspect`): the
    status every few seconds carries ``mac_count`` alone.
    """

    connected: bool
    counters: Mapping[str, int]
    macs: tuple[LearnedMac, ...] | None = None
    flows: Mapping[int, int] = dataclasses.field(default_factory=dict)  # table -> static flows
    mac_count: int = 0  # MACs in the table now

    def to_dict(self) -> dict[str, Any]:
        doc = {"connected": self.connected, "counters": dict(self.counters),
               "flows": {str(t): n for t, n in sorted(self.flows.items())},
               "mac_count": self.mac_count}
        if self.macs is not None:
            # By hand: asdict deep-copies each field (thousands of MACs).
            doc["macs"] = [{"network": m.network, "mac": m.mac, "port": m.port, "age": m.age}
                           for m in self.macs]
        return doc


EventCallback = Callable[[str], None]


class Driver(abc.ABC):
    """One instance per agent. Every call is idempotent."""

    name = "base"
    # The datapath can hold a port for a device that does not exist yet and
    # take the device the moment the kernel announces it (see prepare()).
    prepares = False

    def __init__(self, conf: cfg.ConfigOpts):
        self.conf = conf

    @abc.abstractmethod
    def check_config(self) -> None:
        """Raise ConfigError for a bad option before anything is touched."""

    @abc.abstractmethod
    def start(self, on_event: EventCallback) -> None:
        """Connect and start reporting device changes (``on_event(reason)``)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop watching; leave the datapath exactly as it is."""

    @abc.abstractmethod
    def observe(self) -> Observed:
        """What ovsbr-owned networks and candidate VM devices exist now."""

    def observe_change(self) -> tuple[Observed, frozenset[str] | None]:
        """:meth:`observe`, and the names of the devices that changed since
        the last call (None: unknown, the planner then reads every port). A
        driver that can tell lets a device event cost what it touches."""
        return self.observe(), None

    @abc.abstractmethod
    def fingerprint(self, net: Network) -> str:
        """The fingerprint ``observe`` reports once ``net`` is built as desired."""

    @abc.abstractmethod
    def ensure_network(self, net: Network) -> None:
        """Create or repair the network's datapath (bridge, uplink, MTU)."""

    @abc.abstractmethod
    def delete_network(self, name: str) -> None:
        """Remove what ovsbr created for the network, and nothing else."""

    @abc.abstractmethod
    def plug(self, port: Port, net: Network, device: Device,
             policy: PortPolicy | None = None) -> None:
        """Wire ``device`` into ``net`` as ``port``.

        ``policy`` is what port security and the port's security groups
        enforce, from the whole topology (remote groups span hosts); a
        datapath that forwards before :meth:`sync` must enforce it here.
        """

    @abc.abstractmethod
    def unplug(self, device: Device) -> None:
        """Detach ``device`` from the ovsbr network it is wired into.

        Also called for a prepared device name whose port went away.
        """

    def prepare(self, port: Port, net: Network) -> None:
        """Make ready for ``port.device`` before it exists, when ``prepares``.

        The port is normally declared before its VM starts (Nova binds the
        port, then boots the guest): a datapath that can take a device
        without a round trip through the agent wires it as soon as it
        appears, instead of after the agent has seen it.
        """
        raise NotImplementedError(f"{self.name} cannot prepare ports")

    def batch(self) -> contextlib.AbstractContextManager:
        """Group the calls made inside into one datapath transaction, if any."""
        return contextlib.nullcontext()

    def sync(self, desired: Topology, bound: Mapping[str, Device],
             changed: frozenset[str] | None = None) -> dict[str, NotReady]:
        """After a reconcile: push derived state (e.g. flows) for bound ports.

        ``changed``: when ``desired`` is the one of the last call, the only
        ports whose binding may differ from then (None: any). Returns the
        ports (by name) that are plugged but cannot forward yet.
        """
        return {}

    def set_overlay(self, overlays: Mapping[str, Overlay]) -> None:  # noqa: B027
        """Program overlay networks' remote endpoints and MACs.

        ``overlays`` maps network name -> :class:`Overlay`: the hosts to
        replicate broadcast and unknown unicast to, and the remote MACs to
        install ahead of traffic. Everything not listed goes.
        """

    def resync(self) -> None:  # noqa: B027
        """Before a periodic full reconcile: drop caches, re-read the datapath.

        The next :meth:`observe` must see the datapath as it is, whatever
        events were missed, and the next :meth:`sync` must rewrite derived
        state (flows, filters) even if nothing seems to have changed.
        """

    def introspect(self, macs: bool = False) -> Mapping[str, BridgeReport]:
        """Runtime state per bridge for ``ovsbr status``: counters and sizes,
        cheap enough for every few seconds; with ``macs``, each bridge's
        learned MACs too (O(MACs): asked for by ``ovsbr mac-table`` only)."""
        return {}

    def cleanup(self) -> None:  # noqa: B027
        """After every network is gone: remove the driver's own scaffolding."""

    def health(self) -> list[str]:
        """Connections the datapath needs that are down now (empty: all up).

        For readiness: each entry one line naming what is down.
        """
        return []

    def capabilities(self) -> dict[str, Any]:
        """What this host can serve, published in the store's host registry.

        Read by whoever binds ports to hosts (the Neutron mechanism driver):
        ``physical_networks`` mapped here and the ``network_types`` this
        datapath and kernel can build, plus what a VIF plug needs (the
        openvswitch driver adds its ``bridge`` and ``datapath_type``).
        """
        return {}

    def describe(self) -> str:
        """One line for the agent's startup log: what this driver manages."""
        return self.name
