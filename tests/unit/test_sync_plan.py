"""The sync flush's plan, without IO: a record's writes from its subscription's read, one group per
subscription (attribute objects, the ledger ahead of Braze and after it), and the /users/track calls."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chalicelib.braze.client import MAX_OBJECTS_PER_KIND
from chalicelib.sync import mapping, plan
from chalicelib.sync.envelope import Account, RoktWebhook
from chalicelib.sync.records import LedgerEntry

SUBSCRIPTION = "06423672-b6ba-4536-aa36-70788a7a0a36"
TAIL = mapping.suffix(SUBSCRIPTION)
ACCOUNT = Account("brazetest", "42", "Braze Test")
NOW = 1_700_000_000.0


def record(number: int = 1) -> SQSRecord:
    return SQSRecord({"messageId": f"m-{number}", "body": "{}", "attributes": {}, "messageAttributes": {}})


def claimed(
    event_type: str = "Subscribe", claim: Any = "new", subscription: str = SUBSCRIPTION, number: int = 1
) -> plan.Claimed:
    webhook = RoktWebhook(f"e-{number}", event_type, ACCOUNT, subscription)
    return plan.Claimed(record(number), webhook, ACCOUNT, subscription, claim, 0.0)


def rokt(subscriber_id: str | None = "user42", tags: tuple[str, ...] = ("A",), **fields: Any) -> dict[str, Any]:
    return {
        "subscriberId": subscriber_id,
        "calendar": {"code": "sports", "id": "c-1", "name": "Sports"},
        "subscriptionType": "WebCal",
        "tags": [{"name": t} for t in tags],
        "isActive": True,
        "createdAt": "2024-01-02T03:04:05Z",
        **fields,
    }


def test_a_new_claim_stages_its_custom_event_and_a_sent_one_does_not():
    new = plan.stage(claimed(), rokt(), None, "email", NOW)
    sent = plan.stage(claimed(claim="sent"), rokt(), None, "email", NOW)

    assert new is not None
    assert new.event is not None
    assert new.event["name"] == "subscribe"
    assert new.event["external_id"] == "user42"
    assert not new.sent_before
    assert sent is not None
    assert sent.event is None
    assert sent.sent_before


def test_nobody_to_write_to_is_no_staged_record():
    assert plan.stage(claimed(), rokt(subscriber_id=None), None, "none", NOW) is None


def test_a_subscription_rokt_no_longer_knows_removes_what_the_ledger_says_was_written():
    written = LedgerEntry({"external_id": "user42"}, {"rokt:tags": [f"Sports/A/{TAIL}"]})
    staged = plan.stage(claimed("Unsubscribe"), None, written, "email", NOW)

    assert staged is not None
    [group] = plan.groups([staged])

    assert group.attributes == [{"external_id": "user42", "rokt:tags": {"remove": [f"Sports/A/{TAIL}"]}}]
    assert group.ledger is None  # the subscription ended: forgotten after Braze is told
    assert group.ahead is None  # nothing is added, nothing to write ahead


def test_new_values_are_in_the_ledger_before_braze_is_told_and_exactly_after():
    written = LedgerEntry({"external_id": "user42"}, {"rokt:tags": [f"Sports/A/{TAIL}"]})
    staged = plan.stage(claimed(), rokt(tags=("B",)), written, "email", NOW)
    assert staged is not None

    [group] = plan.groups([staged])

    assert group.ahead is not None
    assert group.ahead.values["rokt:tags"] == [f"Sports/A/{TAIL}", f"Sports/B/{TAIL}"]  # a superset while in flight
    assert group.ledger is not None
    assert group.ledger.values["rokt:tags"] == [f"Sports/B/{TAIL}"]  # exactly what Braze holds after the call
    assert group.attributes[0]["rokt:tags"] == {"add": [f"Sports/B/{TAIL}"], "remove": [f"Sports/A/{TAIL}"]}


def test_a_moved_subscription_is_taken_off_the_old_profile_in_the_same_call():
    written = LedgerEntry({"external_id": "old"}, {"rokt:subscription_id": [SUBSCRIPTION]})
    staged = plan.stage(claimed(), rokt(subscriber_id="new"), written, "email", NOW)
    assert staged is not None

    [group] = plan.groups([staged])

    old, new = group.attributes
    assert old == {"external_id": "old", "rokt:subscription_id": {"remove": [SUBSCRIPTION]}}
    assert new["external_id"] == "new"
    assert group.ahead is not None
    assert group.ahead.identity == {"external_id": "new"}
    assert group.ahead.former == ({"external_id": "old"},)  # until a write known to have landed removes them


def test_every_former_profile_is_cleared_until_a_write_is_known_to_have_landed():
    """Moved to "b", the answer lost (the ledger names "a" as former), then moved to "c"."""
    uncertain = LedgerEntry(
        {"external_id": "b"}, {"rokt:subscription_id": [SUBSCRIPTION]}, former=({"external_id": "a"},)
    )
    staged = plan.stage(claimed(), rokt(subscriber_id="c"), uncertain, "email", NOW)
    assert staged is not None

    [group] = plan.groups([staged])

    removed = [o["external_id"] for o in group.attributes if "remove" in o.get("rokt:subscription_id", {})]
    assert removed == ["b", "a"]
    assert group.attributes[-1]["external_id"] == "c"
    assert group.ahead is not None
    assert group.ahead.former == ({"external_id": "b"}, {"external_id": "a"})
    assert group.ledger is not None
    assert (group.ledger.identity, group.ledger.former) == ({"external_id": "c"}, ())  # after the call: "c" only


def test_records_of_one_subscription_share_one_attribute_object_and_keep_their_events():
    first = plan.stage(claimed(number=1), rokt(), None, "email", NOW)
    second = plan.stage(claimed("SubscriptionDetailsUpdated", number=2), rokt(), None, "email", NOW)
    assert first is not None
    assert second is not None

    [group] = plan.groups([first, second])

    assert len(group.attributes) == 1
    assert [s.webhook.event_id for s in group.records] == ["e-1", "e-2"]


def test_chunks_hold_whole_subscriptions_within_braze_limits():
    staged = []
    for number in range(MAX_OBJECTS_PER_KIND + 5):
        subscription = f"{number:08d}-b6ba-4536-aa36-70788a7a0a36"
        item = plan.stage(claimed(subscription=subscription, number=number), rokt(), None, "email", NOW)
        assert item is not None
        staged.append(item)

    chunks = plan.chunks(plan.groups(staged))

    assert [len(c) for c in chunks] == [MAX_OBJECTS_PER_KIND, 5]
    for chunk in chunks:
        assert sum(len(g.attributes) for g in chunk) <= MAX_OBJECTS_PER_KIND
        assert sum(1 for g in chunk for s in g.records if s.event is not None) <= MAX_OBJECTS_PER_KIND
