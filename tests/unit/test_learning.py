from ovsbr.openflow.learning import DAMPED, FLAP, KNOWN, LIMITED, MOVED, NEW, MacTable


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_new_known_move_expire():
    t = MacTable()
    assert t.learn(1, "m1", 5) == (NEW, None)
    assert t.learn(1, "m1", 5) == (KNOWN, None)
    assert t.learn(2, "m1", 6) == (NEW, None)  # same MAC, other network: separate
    assert t.learn(1, "m1", 7) == (MOVED, 5)
    assert t.per_port[5] == 0 and t.per_port[7] == 1
    assert not t.expire(1, "m1", 5)  # stale removal of the old port is ignored
    assert t.expire(1, "m1", 7)
    assert t.counters.to_dict()["moved"] == 1 and t.counters.expired == 1


def test_per_port_limit_does_not_touch_other_ports():
    t = MacTable(max_macs_per_port=3)
    for i in range(3):
        assert t.learn(1, f"a{i}", 1)[0] == NEW
    assert t.learn(1, "a9", 1) == (LIMITED, None)
    assert t.learn(1, "b0", 2) == (NEW, None)
    assert t.counters.limited == 1
    t.expire(1, "a0", 1)
    assert t.learn(1, "a9", 1) == (NEW, None)


def test_flapping_mac_is_damped_then_learned_again():
    clock = Clock()
    t = MacTable(flap_moves=3, flap_window=10, damp_time=30, clock=clock)
    t.learn(1, "m", 1)
    verdicts = []
    for port in (2, 1, 2, 2):
        clock.t += 1
        verdicts.append(t.learn(1, "m", port)[0])
    assert verdicts == [MOVED, MOVED, FLAP, DAMPED]
    assert t.counters.flaps == 1
    clock.t += 31
    assert t.learn(1, "m", 2)[0] == MOVED


def test_slow_moves_are_not_flaps():
    clock = Clock()
    t = MacTable(flap_moves=3, flap_window=10, clock=clock)
    t.learn(1, "m", 1)
    for i in range(6):
        clock.t += 11
        assert t.learn(1, "m", 2 if i % 2 == 0 else 1)[0] == MOVED


def test_forget_port_and_network():
    t = MacTable()
    t.learn(1, "a", 1)
    t.learn(1, "b", 2)
    t.learn(2, "c", 2)
    assert t.forget_port(2) == [(1, "b"), (2, "c")]
    t.forget_network(1)
    assert t.entries == {}
