"""Shared kit every part of a node uses; imports nothing else of Skein's.

* ``config``: every config key (type, default, doc), YAML and ``WK_*`` loading;
* ``logs``: the one-line log format with the node id;
* ``metrics``: every Prometheus metric, defined once;
* ``loop_lag``: event-loop lateness and GC pauses, as metrics and warnings;
* ``wake_loop``: a greenlet that runs a function when woken, coalescing wake-ups.
"""
