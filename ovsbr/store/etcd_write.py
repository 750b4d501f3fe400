"""The etcd store's writes: whole-topology and per-port (see :mod:`.etcd`).

Every write is an optimistic transaction compared against
``topology/revision``, the key where all writers meet. Two roads:

* whole: read every topology key, run the change, validate the result
  whole, write the objects that differ (in valid steps when they exceed
  one transaction, :mod:`.steps`), keeping the ports' claim keys
  (:mod:`.claims`) current, or rebuilding them when another writer left
  them behind;
* ports: when the caller names the only ports its change touches and the
  claim keys are current, read those ports, the networks and groups, then
  the claims the change takes, and write one transaction. A CLI's or
  Neutron's port write costs the same at 100 ports as at 100,000. A change
  that does more (deletes a network or group, touches another port) takes
  the whole road.

Both keep each port's copies in the folders agents watch (:mod:`.copies`)
beside its claims and under the same rule: written with the port while
their marker says the topology's revision, rebuilt by the whole road when
a writer that does not keep them has left the marker behind.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ovsbr.claims import claim_conflict
from ovsbr.exceptions import StoreError
from ovsbr.model import Port, Topology
from ovsbr.store import claims as claims_mod
from ovsbr.store import copies as copies_mod
from ovsbr.store import keys as keys_mod
from ovsbr.store import steps as steps_mod
from ovsbr.store.keys import b64, unb64

if TYPE_CHECKING:
    from ovsbr.store.etcd import EtcdStore

LOG = logging.getLogger(__name__)
MAX_ATTEMPTS = 20  # optimistic retries of one update under contention
# Operations per transaction: etcd's default --max-txn-ops is 128; the
# revision keys take three more. A larger change goes in steps (see .steps).
TXN_OPS = 120
Change = Callable[[Topology], None]


def _cost(before: Topology, claims: bool) -> Callable[[steps_mod.Change], int]:
    """Operations one change takes: its key, and a port's claim keys and
    copies when they are kept."""
    def cost(c: steps_mod.Change) -> int:
        if c[0] != "ports" or not claims:
            return 1
        old = before.ports.get(c[1])
        return (1 + len(claims_mod.of(old)) + len(claims_mod.of(c[2]))
                + len(copies_mod.keys(old)) + len(copies_mod.keys(c[2])))
    return cost


class IndexOps:
    """What a transaction writes beside changed ports while the index is
    current: the claims released and taken, the copies deleted and put."""

    def __init__(self, changed: list[tuple[str, Port | None]], old: Mapping[str, Port],
                 revision: int):
        self.released, self.taken = claims_mod.ops(changed, old)
        self.gone, self.put = copies_mod.ops(changed, old, revision)

    def __len__(self) -> int:
        return len(self.released) + len(self.taken) + len(self.gone) + len(self.put)


class Writer:
    def __init__(self, store: EtcdStore):
        self.store = store
        self.base = store.prefix + "topology/"
        self.rev_key = self.base + "revision"
        self.index_key = store.prefix + "index/revision"
        self.claims_base = store.prefix + "index/claims/"
        self.copies_base = store.prefix + copies_mod.FOLDER
        self.copies_key = store.prefix + copies_mod.MARKER

    def update(self, change: Change, scope: Iterable[str] | None = None
               ) -> tuple[Topology, Topology]:
        if scope is not None:
            done = self._ports(change, frozenset(scope))
            if done is not None:
                return done
        return self._whole(change)

    # -- the whole road --------------------------------------------------------
    def _whole(self, change: Change) -> tuple[Topology, Topology]:
        for attempt in range(MAX_ATTEMPTS):
            resp = self.store._txn({"success": [self.store._range(self.base),
                                                keys_mod.get(self.index_key),
                                                keys_mod.get(self.copies_key)]})
            kvs = resp["responses"][0]["response_range"].get("kvs", [])
            keys = keys_mod.decode(kvs)
            seen = {unb64(kv["key"]): kv.get("mod_revision") for kv in kvs}.get(self.rev_key)
            current = self._current(resp, 1, keys.get(self.rev_key, "0"))
            before = self.store._topology(keys)
            after = before.copy()
            change(after)
            after.validate()
            todo = steps_mod.changes(before, after)
            revision = before.revision
            ports = dict(before.ports)
            for step in steps_mod.steps(before, todo, TXN_OPS, _cost(before, current)):
                revision += 1
                index_ops = None
                if current:
                    index_ops = IndexOps([(n, o) for k, n, o in step if k == "ports"],
                                         ports, revision)
                seen = self._commit(step, index_ops, seen, revision, len(todo))
                if seen is None:
                    break  # another writer came first: read again, redo what is left
                for kind, name, obj in step:
                    if kind == "ports":
                        ports.pop(name, None)
                        if obj is not None:
                            ports[name] = obj
            else:
                after.revision = revision
                if not current:
                    self._rebuild(after, seen)
                return before, after
            time.sleep(0.005 * (attempt + 1))
        raise StoreError(f"etcd: {MAX_ATTEMPTS} concurrent writers won in a row; try again")

    def _rebuild(self, topo: Topology, seen: str | None) -> None:
        """Make the claim keys and the copies describe ``topo`` (what was
        just written at mod revision ``seen``), then mark them current,
        unless another writer has written since (it will find them behind
        and rebuild them)."""
        resp = self.store._txn({"success": [self.store._range(self.claims_base),
                                            self.store._range(self.copies_base)]})
        have = {}
        for r in resp.get("responses", []):
            have.update(keys_mod.decode(r.get("response_range", {}).get("kvs", [])))
        want = {self.claims_base + claims_mod.key(c): p.name
                for p in topo.ports.values() for c in claims_mod.of(p)}
        same = set()  # copies that say the same port (whatever revision wrote them)
        for port in topo.ports.values():
            text = copies_mod.value(port, topo.revision)
            for rel in copies_mod.keys(port):
                key = self.copies_base + rel
                want[key] = text
                if key in have and copies_mod.unwrap(have[key]) == copies_mod.unwrap(text):
                    same.add(key)
        ops = [{"request_delete_range": {"key": b64(k)}} for k in sorted(set(have) - set(want))]
        ops += [{"request_put": {"key": b64(k), "value": b64(v)}}
                for k, v in sorted(want.items()) if have.get(k) != v and k not in same]
        # Every step compared too: once another writer has moved the topology,
        # writing claims computed from ours could undo what its own rebuild
        # (which it does, finding them behind) has written.
        ops += [{"request_put": {"key": b64(key), "value": b64(str(topo.revision))}}
                for key in (self.index_key, self.copies_key)]
        for i in range(0, len(ops), TXN_OPS):
            done = self.store._txn({"compare": [self._unmoved(seen)],
                                    "success": ops[i:i + TXN_OPS]})
            if not done.get("succeeded"):
                return
        if len(ops) > 2:
            LOG.info("etcd: port claim keys and copies rebuilt (%d changed) at revision %d",
                     len(ops) - 2, topo.revision)

    # -- the per-port road -----------------------------------------------------
    def _ports(self, change: Change, scope: frozenset[str]) -> tuple[Topology, Topology] | None:
        """The change read and written through its ports' keys alone; None
        when it needs the whole road."""
        names = sorted(scope)
        for attempt in range(MAX_ATTEMPTS):
            resp = self.store._txn({"success": [
                self.store._range(self.base + "networks/"),
                self.store._range(self.base + "security_groups/"),
                *(keys_mod.get(k) for k in (self.rev_key, self.index_key, self.copies_key)),
                *(keys_mod.get(f"{self.base}ports/{n}") for n in names)]})
            keys, seen = {}, None
            for r in resp.get("responses", []):
                for kv in r.get("response_range", {}).get("kvs", []):
                    keys[unb64(kv["key"])] = unb64(kv.get("value", ""))
                    if unb64(kv["key"]) == self.rev_key:
                        seen = kv.get("mod_revision")
            if not self._current(resp, 3, keys.get(self.rev_key, "0")):
                return None  # index behind: the whole road rebuilds it
            before, _ = keys_mod.topology(self.base, keys, self.store._parsed)
            after = before.copy()
            change(after)
            after.validate()
            todo = steps_mod.changes(before, after)
            if any((obj is None and kind != "ports") or (kind == "ports" and name not in scope)
                   for kind, name, obj in todo):
                return None
            if not todo:
                return before, before
            after.revision = before.revision + 1
            index_ops = IndexOps([(n, o) for k, n, o in todo if k == "ports"], before.ports,
                                 after.revision)
            if len(todo) + len(index_ops) > TXN_OPS:
                return None  # more than one transaction: the whole road cuts it in steps
            taken = index_ops.taken
            # The claims a port takes are nearly always free: the commit
            # itself compares them absent, and they are read (to name the
            # holder, or to let a port in ``scope`` hand one over) only when
            # that compare fails. One round trip fewer per CLI port write.
            free = [self._absent(self.claims_base + claims_mod.key(c)) for c in sorted(taken)]
            if self._commit(todo, index_ops, seen, after.revision, len(todo), free):
                return before, after
            if free:
                self._check_claims(taken, after, scope)
                if self._commit(todo, index_ops, seen, after.revision, len(todo)):
                    return before, after
            time.sleep(0.005 * (attempt + 1))
        raise StoreError(f"etcd: {MAX_ATTEMPTS} concurrent writers won in a row; try again")

    def _check_claims(self, taken: dict[tuple, str], after: Topology,
                      scope: frozenset[str]) -> None:
        """Refuse, as Topology.validate would, a claim another port holds
        (one of ``scope`` may hand it over within the change)."""
        if not taken:
            return
        order = sorted(taken)
        resp = self.store._txn({"success": [
            keys_mod.get(self.claims_base + claims_mod.key(c)) for c in order]})
        for i, claim in enumerate(order):
            holder = keys_mod.single(resp, i)
            if holder is None or holder == taken[claim]:
                continue
            if holder in scope and claim not in claims_mod.of(after.ports.get(holder)):
                continue
            raise claim_conflict(after.ports[taken[claim]], claim, holder)

    # -- one transaction ---------------------------------------------------------
    def _commit(self, step: list[steps_mod.Change],
                index_ops: IndexOps | None,
                seen: str | None, revision: int, total: int,
                also: list[dict[str, Any]] = ()) -> str | None:
        """Write one step if the revision key is still at ``seen`` (mod
        revision; None: never written) and the ``also`` compares hold.
        Returns the new mod revision, or None when a compare failed.
        ``index_ops``: the claim keys and copies to write with it, and then
        the index marked current; None leaves the index behind."""
        ops = []
        for kind, name, obj in step:
            key = b64(f"{self.base}{kind}/{name}")
            if obj is None:
                ops.append({"request_delete_range": {"key": key}})
            else:
                value = json.dumps(obj.to_dict(), sort_keys=True)
                ops.append({"request_put": {"key": key, "value": b64(value)}})
        ops.append({"request_put": {"key": b64(self.rev_key), "value": b64(str(revision))}})
        if index_ops is not None:
            ops += [{"request_delete_range": {"key": b64(self.claims_base + claims_mod.key(c))}}
                    for c in sorted(index_ops.released)]
            ops += [{"request_put": {"key": b64(self.claims_base + claims_mod.key(c)),
                                     "value": b64(owner)}}
                    for c, owner in sorted(index_ops.taken.items())]
            ops += [{"request_delete_range": {"key": b64(self.copies_base + rel)}}
                    for rel in sorted(index_ops.gone)]
            ops += [{"request_put": {"key": b64(self.copies_base + rel), "value": b64(text)}}
                    for rel, text in sorted(index_ops.put.items())]
            ops += [{"request_put": {"key": b64(key), "value": b64(str(revision))}}
                    for key in (self.index_key, self.copies_key)]
        try:
            result = self.store._txn({"compare": [self._unmoved(seen), *also],
                                      "success": ops})
        except StoreError as e:
            if "too many operations" not in str(e):
                raise
            raise StoreError(
                f"etcd refused a transaction of {len(ops)} operations ({total} objects "
                f"change, and they cannot be written in steps that each leave a valid "
                f"state): start etcd with --max-txn-ops {len(ops)} or more (default 128), "
                f"or make the change in smaller parts") from e
        if not result.get("succeeded"):
            return None
        return result["header"]["revision"]

    def _unmoved(self, seen: str | None) -> dict[str, Any]:
        """The compare: the revision key unchanged since it was read."""
        if seen is not None:
            return {"key": b64(self.rev_key), "target": "MOD", "result": "EQUAL",
                    "mod_revision": seen}
        return {"key": b64(self.rev_key), "target": "CREATE", "result": "EQUAL",
                "create_revision": "0"}

    @staticmethod
    def _absent(key: str) -> dict[str, Any]:
        """The compare: no such key."""
        return {"key": b64(key), "target": "VERSION", "result": "EQUAL", "version": "0"}

    def _current(self, resp: dict, i: int, revision: str) -> bool:
        """Whether the index (claims, read by the ``i``-th request, and
        copies, by the next) describes topology revision ``revision``."""
        return keys_mod.single(resp, i) == revision and keys_mod.single(resp, i + 1) == revision
