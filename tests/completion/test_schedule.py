"""The web server sends reminders on a schedule: the loop runs the same service call as
`chartkeeper completion remind`, and running it again within the interval sends nothing twice."""

from __future__ import annotations

import time

from completion_fhir import encounter
from sqlalchemy import func, select

from chartkeeper.completion.models import NotificationRow
from chartkeeper.completion.schedule import ReminderLoop


class _Counting:
    def __init__(self, service):
        self.service = service
        self.calls = 0

    def send_reminders(self, principal):
        self.calls += 1
        return self.service.send_reminders(principal)


def test_loop_runs_reminders_on_its_interval_and_stops(db, svc, people, put):
    put(people.tech, encounter("enc-1", "pat-1"))  # a stay with no H&P and no discharge summary
    counting = _Counting(svc)
    loop = ReminderLoop(counting, minutes=0.002)  # 0.12 s
    loop.start()
    deadline = time.monotonic() + 20
    while counting.calls < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    loop.stop()
    assert counting.calls >= 2
    with db.read() as c:
        reminders = c.execute(select(func.count()).select_from(NotificationRow)
                              .where(NotificationRow.kind == "reminder")).scalar_one()
    assert reminders == 1  # the second run found nothing due within the interval


def test_zero_minutes_means_off(svc):
    loop = ReminderLoop(svc, minutes=0)
    loop.start()
    assert loop._thread is None
