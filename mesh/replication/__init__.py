"""The per-slot replicated log: Raft log replication with elections by the controller.

* ``replica``: one slot's log on this node as leader, follower or learner;
* ``manager``: every local replica, roles from the slot table, node-to-node handlers;
* ``append_pipe``: coalesces the appends of all slots to one peer into one request.

::

    slot table --> Replication (manager) --> SlotReplica per slot --> Store
                        ^  mesh handlers (repl.*)       |
                        +------ AppendPipes <-----------+ appends to followers
"""
