"""The per-slot replicated log: Raft log replication with elections by the controller.

Pure core (no gevent, sockets, disk or clock), in the style of etcd raft's raft.go/log.go:

* ``core``: one slot's replication state machine: term checks, prepare/promise answers,
  append consistency and conflict truncation, quorum commit (current term only), in-sync
  tracking, next-index backoff; messages and ticks in, a ``Ready`` out (hard state and
  entries to persist before answering, messages to send, entries to apply);
* ``log``: the log rules the core uses (positions, terms, matching, the memory tail).

The gevent shell around it:

* ``replica``: one slot's ``SlotReplica``: persists what the core asks, sends, and applies
  in one place, in index order;
* ``manager``: every local replica, roles from the slot table, node-to-node handlers;
* ``append_pipe``: coalesces the appends of all slots to one peer into one request.

::

    slot table --> Replication (manager) --> SlotReplica (shell) <--> core (pure)
                        ^  mesh handlers (repl.*)       |  persist --> LogStore
                        +------ AppendPipes <-----------+ appends to followers
"""
