"""Applying a plan's typed actions to a driver: each one becomes an Outcome.

The loop (:mod:`.service`) decides when to apply and what to do with the
outcomes; here is only how one action reaches the driver, and how a
failure is caught, logged once and returned instead of raised, so one bad
port never stops the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from ovsbr.agent import reconciler
from ovsbr.agent.reconciler import Outcome
from ovsbr.drivers.base import Device, Driver
from ovsbr.exceptions import PartialFailure
from ovsbr.model import Topology
from ovsbr.secgroups.policy import port_policy

LOG = logging.getLogger(__name__)
# Longest failure reason kept (status and log): a library's message can
# quote a whole request (ovsdbapp's timeout listed 15,000 commands, 4.6 MB,
# which went into each of 5,002 ports' status and the log).
REASON_LIMIT = 500


def reason_of(error: Exception) -> str:
    """An exception as a failure reason an operator can read, at most
    REASON_LIMIT characters and saying how much was cut."""
    text = str(error) or error.__class__.__name__
    if len(text) <= REASON_LIMIT:
        return text
    return f"{text[:REASON_LIMIT]}... ({len(text) - REASON_LIMIT} more characters)"


class SayOnce:
    """Log a repeated failure once until the next full resync, not every reconcile."""

    def __init__(self):
        self._said: set[str] = set()

    def first(self, key: str) -> bool:
        if key in self._said:
            return False
        self._said.add(key)
        return True

    def reset(self) -> None:
        self._said.clear()


class Applier:
    """One driver call per action, with the devices the plan was made from.

    ``devices``: the observation the plan came from (a device's MAC and
    iface-id as seen), read when an action names a device.
    """

    def __init__(self, driver: Driver, say: SayOnce):
        self.driver = driver
        self.say = say
        self.devices: Mapping[str, Device] = {}
        self._one: dict[type, Callable[[Any, Topology], str]] = {
            reconciler.EnsureNetwork: self._ensure_network,
            reconciler.DeleteNetwork: self._delete_network,
            reconciler.Unplug: self._unplug,
            reconciler.Plug: self._plug,
            reconciler.Prepare: self._prepare,
        }

    def apply(self, action: reconciler.Action, desired: Topology) -> Outcome:
        """Apply one action; a failure becomes its outcome, never an exception."""
        try:
            LOG.info(self._one[type(action)](action, desired))
            return Outcome(action)
        except Exception as e:  # one failed call must not stop the agent
            return self._failed(action, reason_of(e))

    def apply_ports(self, actions: list[reconciler.Action],
                    desired: Topology) -> list[Outcome]:
        """Plugs and prepares in one driver batch; failures per device."""
        if not actions:
            return []
        outcomes: list[Outcome] = []
        try:
            with self.driver.batch():
                outcomes = [self.apply(a, desired) for a in actions]
        except PartialFailure as e:
            outcomes = [o for o in outcomes if o.action.device not in e.errors]
            for a in actions:
                if a.device in e.errors:
                    LOG.error("plug %s failed: %s", a.port, e.errors[a.device])
                    outcomes.append(Outcome(a, e.errors[a.device]))
        except Exception as e:
            reason = reason_of(e)
            LOG.error("wiring %d port(s) failed: %s", len(actions), reason)
            outcomes = [Outcome(a, reason) for a in actions]
        return outcomes

    def _failed(self, action: reconciler.Action, reason: str) -> Outcome:
        if self.say.first(f"{action}:{reason}"):
            LOG.error("%s %s failed: %s", action.kind,
                      getattr(action, "port", None) or action.network, reason)
        return Outcome(action, reason)

    def _device(self, name: str) -> Device:
        dev = self.devices.get(name)
        return dev if dev is not None else Device(name)

    def _ensure_network(self, a: reconciler.EnsureNetwork, desired: Topology) -> str:
        self.driver.ensure_network(desired.networks[a.network])
        return f"network {a.network} ready"

    def _delete_network(self, a: reconciler.DeleteNetwork, _desired: Topology) -> str:
        self.driver.delete_network(a.network)
        return f"network {a.network} removed"

    def _unplug(self, a: reconciler.Unplug, _desired: Topology) -> str:
        self.driver.unplug(self._device(a.device))
        return f"device {a.device} unplugged from {a.network}"

    def _plug(self, a: reconciler.Plug, desired: Topology) -> str:
        port = desired.ports[a.port]
        self.driver.plug(port, desired.networks[port.network], self._device(a.device),
                         policy=port_policy(port, desired))
        return f"port {port.name}: wiring {a.device} into network {port.network}"

    def _prepare(self, a: reconciler.Prepare, desired: Topology) -> str:
        port = desired.ports[a.port]
        self.driver.prepare(port, desired.networks[port.network])
        return f"port {port.name}: {a.device} prepared in network {port.network} for " \
               "when it appears"
