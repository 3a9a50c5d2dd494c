"""A Skein node: everything that runs inside one node process, filed by concern.

Entry points and the composition root stay at this level:

* ``__main__.py``: ``python -m mesh --config FILE`` (tests, development);
* ``wsgi.py``: the gunicorn worker's WSGI app and the node start after the fork;
* ``node.py``: the ``Node`` that builds every part below and runs its lifecycle.

The subpackages, lowest layer first (a package imports from those above it in this
list; the one exception today: ``replication`` and ``slots`` hold the slot's state
machine, ``im/slot_state.py``)::

    base/         config, logs, metrics, loop helpers        (imports nothing of ours)
    net/          node-to-node transport, CURVE, the wire      -> base
    storage/      write-ahead log, DuckDB store, backups       -> base
    replication/  per-slot replicated log, replica manager     -> base, net, storage
    slots/        keyed calls routed to slot leaders           -> base, net, replication
    im/           the WuKongIM domain (messages, channels,     -> all of the above
                  conversations, users, history, webhooks)
"""
