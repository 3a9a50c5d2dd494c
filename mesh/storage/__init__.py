"""This node's durable storage of the slots it replicates.

* ``entries``: the log entry type and the message row layout;
* ``log_store``: ``LogStore``, the interface (with its contract) replication is written against;
* ``store``: the write-ahead log (group commit, fdatasync) and DuckDB behind it;
* ``backup``: exports of a node's slots to Parquet and restores from them.

::

    replica --append/truncate--> Store --fdatasync--> wal/
                                   \\--flusher (batches)--> skein.duckdb
"""
