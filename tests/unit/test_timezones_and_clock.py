from __future__ import annotations

import pytest
from tzlocal import windows_tz

from chalicelib.clock import Deadline
from chalicelib.delivery import timezones
from chalicelib.errors import UpstreamTimeout
from scripts.windows_zones import cldr_table


def test_shipped_windows_zone_data_matches_cldr_from_tzlocal():
    shipped = timezones._table()

    assert shipped == cldr_table()
    assert timezones.windows_ids() == frozenset(windows_tz.win_tz)


@pytest.mark.parametrize(
    ("name", "windows_id", "iana"),
    [
        ("Eastern Standard Time", "Eastern Standard Time", None),
        ("America/New_York", "Eastern Standard Time", "America/New_York"),
        ("Australia/Sydney", "AUS Eastern Standard Time", "Australia/Sydney"),
        ("UTC", "UTC", None),
    ],
)
def test_resolve_maps_to_windows_ids(name: str, windows_id: str, iana: str | None):
    choice = timezones.resolve(name)

    assert (choice.windows_id, choice.iana_name) == (windows_id, iana)


def test_resolve_refuses_unknown_names():
    with pytest.raises(timezones.UnknownTimeZone):
        timezones.resolve("Atlantis/Capital")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_deadline_clips_timeouts_to_the_time_left():
    clock = FakeClock()
    deadline = Deadline(5.0, clock=clock, sleep=clock.sleep)
    clock.now += 3.5

    connect, read = deadline.timeout(3.05, 8.0)

    # together they fit the 1.5 s left: a slow connect cannot push the read past the deadline
    assert (connect, read) == (0.75, 0.75)
    assert deadline.timeout(0.2, 8.0) == (0.2, 1.3)


def test_deadline_raises_when_spent():
    clock = FakeClock()
    deadline = Deadline(1.0, clock=clock, sleep=clock.sleep)
    clock.now += 0.9

    with pytest.raises(UpstreamTimeout):
        deadline.timeout(3.0, 3.0)


def test_deadline_refuses_a_pause_that_leaves_no_room_for_an_attempt():
    clock = FakeClock()
    deadline = Deadline(2.0, clock=clock, sleep=clock.sleep)

    assert deadline.pause(0.5) is True
    assert deadline.pause(1.0) is False
    assert clock.slept == [0.5]
