"""Wave plans, from tables."""

import pytest

from baton.fleet.waves import node_order, parse_waves, wave_sizes


@pytest.mark.parametrize(
    ("spec", "fleet", "sizes"),
    [
        ("1,50%,100%", 3, (1, 2, 3)),
        ("1,50%,100%", 10, (1, 5, 10)),
        ("1,50%,100%", 1, (1,)),  # waves that add no node are dropped
        ("1,50%,100%", 2, (1, 2)),
        ("100%", 5, (5,)),
        ("2,3,100%", 20, (2, 3, 20)),
        ("10%,100%", 3, (1, 3)),  # a percentage wave holds at least one node
        ("5,100%", 3, (3,)),
    ],
)
def test_wave_sizes(spec, fleet, sizes):
    assert wave_sizes(parse_waves(spec), fleet) == sizes


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("1,50%", "the last wave must be 100%"),
        ("0,100%", "is not a wave size"),
        ("x,100%", "is not a wave size"),
        ("150%", "is not a wave size"),
        ("", "is not a wave size"),
    ],
)
def test_bad_wave_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_waves(spec)


def test_node_order_spreads_every_prefix_across_zones():
    zones = {"a1": "a", "a2": "a", "a3": "a", "b1": "b", "c1": "c", "c2": "c"}
    assert node_order(zones) == ("a1", "b1", "c1", "a2", "c2", "a3")
    assert node_order({"n2": None, "n1": None}) == ("n1", "n2")
