"""Subscription regexes of KIP-848 groups, resolved as Kafka 4's coordinator does
(GroupMetadataManager.maybeUpdateRegularExpressions, refreshRegularExpressions and
handleRegularExpressionsResult).

A member's regex is not matched on its heartbeat: a member bringing a regex the group does
not hold yet is assigned its literal topics first, and the group's regexes are resolved
afterwards, off the heartbeat (a task run once the heartbeat is answered). The result is
persisted per regex (ConsumerGroupRegularExpression records: topics, metadata version,
time) and bumps the group epoch when the topics changed, so the regex's topics come in a
later epoch. The regexes of a group are refreshed together, at most every 10 s, when one is
unresolved or topics were created since they were resolved; the last member of a regex
leaving deletes it. Not task-safe.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .consumer_group import (
    ConsumerGroup,
    ConsumerGroupMember,
    ResolvedRegex,
    compile_regex,
    compute_subscription_metadata,
)
from .records import (
    CONSUMER_GROUP_METADATA_KEY,
    CONSUMER_GROUP_REGULAR_EXPRESSION_KEY,
    ConsumerGroupMetadataValue,
    RecordKey,
)

if TYPE_CHECKING:
    from .consumer import ConsumerGroupManager

REGEX_BATCH_REFRESH_INTERVAL_MS = 10_000  # Kafka's: at most one refresh per group per 10 s
Records = list[tuple[RecordKey, Any]]


class RegexResolver:
    """Resolves the groups' regexes. ``metadata_version`` counts the changes of the set of
    topic names the coordinator has seen (Kafka uses its metadata image's offset); it starts
    from the highest version the loaded records hold, so it only grows."""

    def __init__(self, consumer: ConsumerGroupManager) -> None:
        self.consumer = consumer
        self.shard = consumer.shard
        self.metadata_version = 0
        self.new_topics_version = 0  # the metadata version that last brought new topics
        self._names: frozenset[str] | None = None

    def observe(self, cluster: Mapping[str, Any]) -> None:
        """Note the topics the cluster has now; new names call for a refresh."""
        names = frozenset(cluster)
        if names == self._names:
            return
        if self._names is None or names - self._names:
            self.metadata_version += 1
            self.new_topics_version = self.metadata_version
        else:
            self.metadata_version += 1  # deletions only: nothing new to match
        self._names = names

    def on_loaded(self, group: ConsumerGroup) -> None:
        for resolved in group.resolved_regexes.values():
            self.metadata_version = max(self.metadata_version, resolved.version)

    # -- a member's heartbeat ------------------------------------------------------------

    def maybe_update(
        self,
        group: ConsumerGroup,
        member: ConsumerGroupMember,
        updated: ConsumerGroupMember,
        records: Records,
    ) -> bool:
        """Kafka's maybeUpdateRegularExpressions: records for a regex nobody uses any more,
        a refresh scheduled when needed; True when the group epoch must be bumped (the
        member took a regex the group has already resolved)."""
        gid = group.group_id
        old, new = member.subscribed_topic_regex or "", updated.subscribed_topic_regex or ""
        in_group = member.member_id in group.members
        bump = require_refresh = False
        if old != new:
            if old and in_group and group.regex_subscribers(old) == 1:
                records.append(_tombstone(gid, old))
            if new:
                if group.regex_subscribers(new) == 0:
                    compile_regex(new)  # validated with the request: raises re.error if not
                    require_refresh = True
                else:
                    bump = new in group.resolved_regexes
        counts = {r: group.regex_subscribers(r) for r in group.subscribed_regexes()}
        if old and in_group:
            counts[old] -= 1
            if not counts[old]:
                del counts[old]
        if new:
            counts[new] = counts.get(new, 0) + 1
        if not counts:
            return bump
        key = ("cg-regex", gid)
        if key in self.shard.timers:
            return bump  # a refresh is on its way
        if self.shard.now_ms <= group.last_regex_refresh_ms() + REGEX_BATCH_REFRESH_INTERVAL_MS:
            return bump
        require_refresh |= len(counts) != len(group.resolved_regexes)
        require_refresh |= group.last_regex_version() < self.new_topics_version
        if require_refresh:
            regexes = frozenset(counts)
            task = lambda: self._refresh(gid, regexes)  # noqa: E731
            # Due now: it runs once the heartbeat that asked for it is answered.
            self.shard.timers.schedule(key, self.shard.now_ms, task)
        return bump

    def on_member_removed(self, group: ConsumerGroup, leaving: set[str], records: Records) -> None:
        """Tombstones for the regexes only the leaving members used."""
        left = {
            m.subscribed_topic_regex
            for m in group.members.values()
            if m.member_id in leaving and m.subscribed_topic_regex
        }
        staying = {
            m.subscribed_topic_regex for m in group.members.values() if m.member_id not in leaving
        }
        for regex in sorted(left - staying):
            if regex in group.resolved_regexes:
                records.append(_tombstone(group.group_id, regex))

    # -- the resolution ------------------------------------------------------------------

    def _refresh(self, group_id: str, regexes: frozenset[str]) -> None:
        """Resolve ``regexes`` against the topics now; Kafka's handleRegularExpressionsResult."""
        group = self.consumer.group(group_id)
        if group is None:
            return
        cluster = self.shard.metadata()
        self.observe(cluster)
        now, version = self.shard.now_ms, self.metadata_version
        records: Records = []
        bump = False
        for regex in sorted(regexes):
            if group.regex_subscribers(regex) == 0:
                continue  # nobody subscribes to it any more
            try:
                pattern = compile_regex(regex)
            except re.error:
                matched: tuple[str, ...] = ()
            else:
                matched = tuple(sorted(t for t in cluster if pattern.fullmatch(t)))
            old = group.resolved_regexes.get(regex)
            if old is None or set(old.topics) != set(matched):
                bump = True
            key = RecordKey(CONSUMER_GROUP_REGULAR_EXPRESSION_KEY, group_id, regex=regex)
            records.append((key, ResolvedRegex(matched, version, now)))
        resolved = dict(group.resolved_regexes)
        resolved.update({key.regex: value for key, value in records})
        topics: set[str] = set()
        for m in group.members.values():
            topics |= m.subscribed_topics(resolved)
        metadata = compute_subscription_metadata(topics, cluster)
        if metadata != group.subscription_metadata:
            bump = True
            records.append(self.consumer.partition_metadata_record(group_id, metadata))
        if bump:
            records.append(
                (
                    RecordKey(CONSUMER_GROUP_METADATA_KEY, group_id),
                    ConsumerGroupMetadataValue(group.group_epoch + 1),
                )
            )
        for key, value in records:
            self.shard.write(key, value)


def _tombstone(group_id: str, regex: str) -> tuple[RecordKey, None]:
    return RecordKey(CONSUMER_GROUP_REGULAR_EXPRESSION_KEY, group_id, regex=regex), None
