"""Notifications of new images: webhooks and commands, through the state outbox.

A sync calls :func:`tag_event` for every tag that moved and
:meth:`Notifier.publish`, which queues the event once per configured receiver
in the store's outbox (a durable queue: a crash, a reboot or a receiver that is
down loses nothing). :meth:`Notifier.deliver_due` then sends what is due, in
parallel, and records each outcome: delivered, failed (retried later with
exponential backoff and jitter) or given up after ``max_attempts`` (a dead
letter, listed by :meth:`~mirrord.state.Store.failed_events`).

The event is a CNCF distribution notification event; a webhook receives the
envelope ``{"events": [event]}`` as
``application/vnd.docker.distribution.events.v1+json``, signed with
``X-Mirrord-Signature: sha256=<hex HMAC-SHA256 of the body>`` when the receiver
has a ``secret_file``. A command receives the same envelope on stdin; exit
status 0 is success.

Receivers are ``webhook:NAME`` / ``command:NAME``, NAME being the configured
``name`` or else the URL's host or the program's name: stable when receivers are
added, reordered or get a new token. Neither the URL (it may hold a token) nor the secret ever
reaches the store, a log line or an error message.
Sending one event (the POST or the command) is :mod:`._send`'s job.
"""

from __future__ import annotations

from mirrord.notify._outbox import (
    CLUSTER_RESOURCES_CHANGED,
    INSTANCE_ID,
    DeliveryCounts,
    DeliveryReport,
    Notifier,
    cluster_resources_event,
    envelope_bytes,
    receiver_ids,
    status_document,
    tag_event,
)
from mirrord.notify._send import EVENTS_MEDIA_TYPE, SIGNATURE_HEADER, sign

__all__ = [
    "CLUSTER_RESOURCES_CHANGED",
    "EVENTS_MEDIA_TYPE",
    "INSTANCE_ID",
    "SIGNATURE_HEADER",
    "DeliveryCounts",
    "DeliveryReport",
    "Notifier",
    "cluster_resources_event",
    "envelope_bytes",
    "receiver_ids",
    "sign",
    "status_document",
    "tag_event",
]
