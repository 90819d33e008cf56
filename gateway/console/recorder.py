"""The console's dispatcher hooks (`gateway.engine.events.Hooks`): they fill the ring of finished
requests and the providers' windows, at an attempt's end and a request's end only."""

from __future__ import annotations

import time

from gateway.console.health import ProviderHealth
from gateway.console.ring import RequestRing, finished_of
from gateway.engine.events import Attempt, RequestRecord


class ConsoleRecorder:
    def __init__(self, ring: RequestRing, health: ProviderHealth) -> None:
        self.ring = ring
        self.health = health

    def attempt_started(self, record: RequestRecord, attempt: Attempt) -> None:
        pass

    def first_content(self, record: RequestRecord, attempt: Attempt) -> None:
        pass

    def attempt_ended(self, record: RequestRecord, attempt: Attempt) -> None:
        self.health.attempt_ended(attempt, time.time())

    def request_ended(self, record: RequestRecord) -> None:
        now = time.time()
        self.ring.add(finished_of(record, now))
        self.health.request_ended(record, now)
