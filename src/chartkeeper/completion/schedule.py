"""Reminders on a schedule inside the web server: a daemon thread that runs
``CompletionService.send_reminders`` every ``Settings.reminder_minutes`` (0 switches it off; then run
``chartkeeper completion remind`` from cron). Each run only reminds physicians whose last reminder is
older than the rule file's interval, so running it often sends nothing twice."""

from __future__ import annotations

import logging
import threading
from typing import Any

from chartkeeper.security.principal import Principal

log = logging.getLogger("chartkeeper.completion")
SCHEDULER = Principal.system("completion-scheduler")


class ReminderLoop:
    def __init__(self, service: Any, minutes: float) -> None:
        self.service = service
        self.seconds = minutes * 60
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.seconds <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="completion-reminders", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def run_once(self) -> int:
        made = self.service.send_reminders(SCHEDULER)
        failed = sum(1 for m in made if m.get("error"))
        log.info("completion reminders: %d notifications, %d not delivered", len(made), failed)
        return len(made)

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - a bad run must not end the loop; it is logged
                log.exception("completion reminders failed; will try again at the next interval")
