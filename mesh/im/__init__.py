"""The WuKongIM domain: what a slot's replicated state means for chat.

Pure rules (no I/O): ``channel_rules`` (channel types, person ids, send permission),
``slot_state`` (the slot's state machine: users, channels, conversations, seqs,
dedupe), ``sequencer`` (a slot leader's seqs and sends in flight), ``snowflake``
(message ids).

Services on top of slots and replication: ``messages`` (the write path and
delivery), ``history`` (reads), ``channels``, ``conversations``, ``users``,
``person_perms`` (the person-flags cache) and ``webhooks``.
"""
