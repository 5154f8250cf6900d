"""A Braze stand-in for reliability tests: ``localworld.braze_sender`` with one secret, time compressed."""

from __future__ import annotations

from localworld.braze_sender import RETRIED, Attempt, BrazeSender, Webhook

__all__ = ["RETRIED", "Attempt", "BrazeSimulator", "Webhook", "accounting"]


class BrazeSimulator(BrazeSender):
    def __init__(
        self,
        base_url: str,
        secret: str,
        *,
        concurrency: int = 8,
        first_backoff: float = 60.0,
        time_scale: float = 0.002,
        max_wait: float = 2.0,
        retry_after_scale: float | None = None,
        waiting: int = 0,
    ) -> None:
        super().__init__(
            base_url,
            headers={"Authorization": f"Bearer {secret}"},
            concurrency=concurrency,
            first_backoff=first_backoff,
            time_scale=time_scale,
            max_wait=max_wait,
            retry_after_scale=retry_after_scale,
            waiting=waiting,
        )


def accounting(webhooks: list[Webhook], deliveries: dict[str, int]) -> dict[str, int]:
    """delivered / refused / lost / doubled over unique event ids, from Braze's and Rokt's sides."""
    by_event: dict[str, list[Webhook]] = {}
    for webhook in webhooks:
        by_event.setdefault(webhook.event_id, []).append(webhook)
    counts = {"events": len(by_event), "delivered": 0, "refused": 0, "lost": 0, "doubled": 0}
    for event_id, sends in by_event.items():
        times = deliveries.get(event_id, 0)
        if times > 1:
            counts["doubled"] += 1
        if times >= 1:
            counts["delivered"] += 1
        elif all(s.final not in RETRIED and s.final >= 400 for s in sends):
            counts["refused"] += 1
        else:
            counts["lost"] += 1
    counts["retried"] = sum(len(w.attempts) - 1 for w in webhooks)
    counts["duplicates_suppressed"] = sum(1 for w in webhooks if w.attempts and w.attempts[-1].duplicate)
    counts["slowest_answer_ms"] = int(max((a.seconds for w in webhooks for a in w.attempts), default=0) * 1000)
    return counts
