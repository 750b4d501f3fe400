"""The Store contract: desired state with a revision, atomic writes, a watch.

Agents read and watch; the CLI writes with :meth:`Store.update`, which runs
the caller's change on a fresh copy under the store's own exclusion and
validates the result whole, so a refused change writes nothing.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ovsbr.model import Topology


class Store(abc.ABC):
    @abc.abstractmethod
    def load(self) -> Topology:
        """The current desired state; raises StoreError when unreadable."""

    @abc.abstractmethod
    def update(self, change: Callable[[Topology], None],
               scope: Iterable[str] | None = None) -> tuple[Topology, Topology]:
        """Apply ``change`` to a copy of the current state atomically.

        Returns (before, after). When ``change`` raises, or the result does
        not validate, nothing is written. A write that changes nothing keeps
        the revision.

        ``scope``: the names of the only ports ``change`` reads or writes
        (it sees every network and group, and of the ports only these). A
        store may then read and write those alone, as the etcd store does,
        and hand back topologies holding only them; it may also ignore it.
        """

    @abc.abstractmethod
    def watch(self, stop: threading.Event, host: str | None = None
              ) -> Iterator[Topology | Exception]:
        """Yield the state now and after each change until ``stop`` is set.

        An unreadable state is yielded as the exception, so the agent can keep
        its last good state and report the error once. ``host``: the agent's;
        a store may then yield only what that host's agent uses (its ports,
        the ports of its overlay networks, the members of its remote groups,
        every network, group and live host), as the etcd store does.
        """

    @abc.abstractmethod
    def write_status(self, host: str, status: dict[str, Any],
                     changed: Iterable[str] | None = None) -> None:
        """Publish what the agent on ``host`` has wired (ports and networks).

        ``changed``: the only ports whose entries may differ from the last
        call (their dicts are new objects; the others are the same objects
        as then); None: any. A store may write just those."""

    @abc.abstractmethod
    def read_status(self) -> dict[str, dict[str, Any]]:
        """Every host's last published status, keyed by host."""

    def register(self, host: str, info: dict[str, Any]) -> None:  # noqa: B027
        """Announce a live agent (tunnel endpoint, driver) to the other hosts.

        Shared stores keep it under a lease the agent renews; the file store
        serves one host and has no one to tell.
        """

    def stats(self) -> Mapping[str, float]:
        """Counters for metrics (requests, their seconds, errors, watch
        restarts, lease renewals); a store without a server has none."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default store holds none."""
