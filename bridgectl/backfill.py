"""Backfill for brands switching from Rokt's own Braze push: put every existing subscription through
the sync flow once.

Each subscription id becomes a ``SubscriptionDetailsUpdated`` webhook on the sync queue, so the
deployed consumer reads its state from Rokt and writes Braze with every guarantee of the live flow
(batching, Braze's rate limit, the ledger, retries, the DLQ with reasons) and no custom event
(a backfill is not a subscribe). The account comes from the command line (Rokt's subscription read
does not name it); ``--account-id``/``--account-name`` are optional: without them the consumer keeps
the values the live flow wrote (its ledger), it never reads their absence as a removal. Event ids are
derived from the run name and the subscription id:
running the same backfill again writes nothing twice. Progress is saved after every 10 ids in a
state file, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from pathlib import Path

    from mypy_boto3_sqs.client import SQSClient

    from chalicelib.sync.envelope import Account

_NAMESPACE = uuid.UUID("3b0f2f57-0f1c-4a61-9d9e-5b2a3c7e9a10")
BATCH = 10  # SendMessageBatch's limit


def read_ids(lines: Iterable[str]) -> list[str]:
    """Subscription ids, one per line (blank lines and ``#`` comments ignored), duplicates dropped."""
    seen: dict[str, None] = {}
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if text:
            seen.setdefault(text, None)
    return list(seen)


def envelope(subscription_id: str, account: Account, run: str) -> dict[str, Any]:
    details: dict[str, Any] = {
        "actionType": "Backfill",
        "accountCode": account.code,
        "subscription": {"calendarSubscriptionId": subscription_id},
    }
    if account.id:
        details["accountId"] = account.id
    if account.name:
        details["accountName"] = account.name
    return {
        "eventId": str(uuid.uuid5(_NAMESPACE, f"{run}/{subscription_id}")),
        "eventType": "SubscriptionDetailsUpdated",
        "eventDetails": details,
    }


def backfill(
    sqs: SQSClient,
    queue_url: str,
    ids: Sequence[str],
    account: Account,
    *,
    run: str,
    state_file: Path,
    show_progress: bool = True,
) -> int:
    """Queue every id not queued by an earlier attempt of ``run``; returns how many were queued now."""
    state = _load(state_file, run)
    start = int(state.get("queued", 0))
    queued = 0
    with tqdm(total=len(ids), initial=start, unit="sub", desc=f"backfill {run}", disable=not show_progress) as bar:
        for offset in range(start, len(ids), BATCH):
            chunk = ids[offset : offset + BATCH]
            entries = [
                {
                    "Id": str(i),
                    "MessageBody": json.dumps({"webhook": envelope(sub, account, run), "backfill": run}),
                    "MessageAttributes": {"eventType": {"DataType": "String", "StringValue": "backfill"}},
                }
                for i, sub in enumerate(chunk)
            ]
            answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)  # type: ignore[arg-type]
            if answer.get("Failed"):
                raise RuntimeError(f"SQS refused {len(answer['Failed'])} message(s); run again to continue")
            queued += len(chunk)
            bar.update(len(chunk))
            _save(state_file, run, offset + len(chunk), len(ids))
    return queued


def _load(path: Path, run: str) -> dict[str, Any]:
    if not path.exists():
        return {}
    state: dict[str, Any] = json.loads(path.read_text())
    return state if state.get("run") == run else {}


def _save(path: Path, run: str, queued: int, total: int) -> None:
    path.write_text(json.dumps({"run": run, "queued": queued, "total": total}) + "\n")
