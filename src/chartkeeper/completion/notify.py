"""Delivering reminders and escalations. Every notification is stored and shown in the web UI; a
sender also delivers it. The only sender shipped is e-mail through an SMTP server, switched on by
``CHARTKEEPER_SMTP_HOST`` (and ``CHARTKEEPER_SMTP_PORT``, ``CHARTKEEPER_SMTP_FROM``,
``CHARTKEEPER_SMTP_USER``/``CHARTKEEPER_SMTP_PASSWORD``, ``CHARTKEEPER_SMTP_STARTTLS=1``). Another
channel (pager, secure chat) is a class with the same ``send`` method.

Messages carry counts, rule names and ages, never patient names: e-mail is not a safe place for PHI.
The physician opens the inbox to see the charts.
"""

from __future__ import annotations

import os
import smtplib
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Protocol


class Sender(Protocol):
    def send(self, to: str, subject: str, body: str) -> str | None:
        """Deliver; return None on success or a sentence saying what went wrong."""


class SmtpSender:
    def __init__(self, host: str, port: int = 25, sender: str = "chartkeeper@localhost", user: str = "",
                 password: str = "", starttls: bool = False, timeout: float = 10.0) -> None:
        self.host, self.port, self.sender = host, port, sender
        self.user, self.password, self.starttls, self.timeout = user, password, starttls, timeout

    def send(self, to: str, subject: str, body: str) -> str | None:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg.set_content(body)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.user:
                    smtp.login(self.user, self.password)
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            return f"The mail server {self.host}:{self.port} did not accept the message: {exc}"
        return None


def configured_sender() -> Sender | None:
    host = os.environ.get("CHARTKEEPER_SMTP_HOST")
    if not host:
        return None
    return SmtpSender(host, int(os.environ.get("CHARTKEEPER_SMTP_PORT", "25")),
                      os.environ.get("CHARTKEEPER_SMTP_FROM", "chartkeeper@localhost"),
                      os.environ.get("CHARTKEEPER_SMTP_USER", ""), os.environ.get("CHARTKEEPER_SMTP_PASSWORD", ""),
                      os.environ.get("CHARTKEEPER_SMTP_STARTTLS", "") in ("1", "true", "yes"))


def reminder_body(name: str, items: Sequence[Any], overdue: int, now: datetime) -> str:
    kinds = Counter(d.rule_title for d in items)
    oldest = min(items, key=lambda d: d.due_at)
    lines = [f"Dear {name},", "",
             f"{len(items)} item{'s' if len(items) != 1 else ''} in your charts need{'s' if len(items) == 1 else ''} "
             f"your attention; {overdue} {'is' if overdue == 1 else 'are'} past due.", ""]
    lines += [f"  {n:>4}  {k}" for k, n in kinds.most_common()]
    lines += ["", f"The oldest was due {oldest.due_at:%Y-%m-%d}.",
              "Open your Chartkeeper inbox to sign documents or say why an item cannot be completed.", "",
              "Health Information Management"]
    return "\n".join(lines)


def escalation_body(by_physician: Counter[str], days: int, now: datetime) -> str:
    lines = [f"These charts passed the {days}-day completion limit on {now:%Y-%m-%d} and are now delinquent.",
             "", "Deficiencies by physician:"]
    lines += [f"  {n:>4}  {name}" for name, n in by_physician.most_common()]
    lines += ["", "The delinquency report in Chartkeeper has the details."]
    return "\n".join(lines)
