"""The WuKongIM domain: what a slot's replicated state means for chat.

Pure rules (no I/O): ``channel_rules`` (channel types, person, agent and visitor ids,
send permission), ``slot_state`` (the slot's state machine: users, channels,
conversations, seqs, dedupe, CMD read positions, system uids, message events),
``sequencer`` (a slot leader's seqs and sends in flight), ``snowflake`` (message ids).

Services on top of slots and replication: ``messages`` (the write path and delivery),
``history`` (reads), ``channels``, ``conversations``, ``users``, ``person_perms`` (the
person-flags cache), ``cmd`` (CMD messages and their read positions), ``system_uids``
(system accounts), ``events`` (message events, AI streaming), ``send_batches``
(``/message/sendbatch``'s queued fan-out) and ``webhooks``.
"""
