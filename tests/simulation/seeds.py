"""The seeds ``make test`` replays (one history each, ``python -m tests.simulation --seed N`` shows it).

``REVIEW_DEFECTS``: a seed for each defect an independent review reproduced by hand, found by the
simulator on the code before its fix, with the promise it broke there (the rule of its violation).
"""

from __future__ import annotations

REVIEW_DEFECTS: dict[str, tuple[int, str]] = {
    "1 copies of an update racing once the event has a record reach Rokt twice": (629, "applied-twice"),
    "2a an unknown field nested ~950 deep answers 500 (direct)": (237, "internal-error"),
    "2b the same, queued: a poison message holds its event's later intents back": (130, "rokt-state"),
    "3a an accountCode that is an e-mail address reaches the log": (192, "log-leak"),
    "3b an unknown field named like an e-mail address reaches the log": (24, "log-leak"),
    "4 DynamoDB slow but successful: the answer leaves after the request budget": (448, "answer-over-budget"),
    "5 sync with DynamoDB slow: a killed invocation's records send their custom events twice": (
        486,
        "custom-event-doubled",
    ),
    "6 a subscriber moved twice around a failure keeps the values on the middle one": (521, "profile-differs"),
    "7 one transient Rokt 4xx on a subscription read dead-letters the webhook": (94, "dead-letter-without-cause"),
    "8 a lone surrogate in a Rokt eventId answers 503": (82, "5xx-for-client-input"),
    "9 a record not read in time on its last allowed receive is moved without a reason": (
        360,
        "dead-letter-without-reason",
    ),
}

# Replayed by every ``make test`` (about a minute on one core): the first seeds, which draw every
# family, mode and fault kind, and seeds a long run found failing once their bug was fixed.
FIXED_SEEDS: tuple[int, ...] = (
    *range(1, 41),
    # found by long runs, each failing before its fix (see the commit that names it)
    119,  # Rokt down 26 h: an older copy of a maybe-applied intent is sent again, not superseded
    214,  # a Rokt webhook nested ~1000 deep (500 before), a crowd on a redrive limit of 5
    289,  # Rokt 429 for 2 h: a rate-limited delivery supersedes nothing
    296,  # DynamoDB at ~2 s a call: the delivery consumer ends before Lambda kills it
    319,  # Rokt 429 for 2 h, queued: backoff grows, SQS's 1000 receives are not spent
    2053,  # webhooks missed: a subscriber id Rokt gives an anonymous subscription, healed by reconciliation
    2246,  # DynamoDB down 2 h, spilled: the 404 grace counts from Rokt's first 404, not the first receive
    2539,  # DynamoDB and SSM at 1.6 s a call: a failed flight past the deadline expires, the answer in budget
    6112,  # DynamoDB calls timing out (~4 s each): no waiting-list bookkeeping after the batch's deadline
)
