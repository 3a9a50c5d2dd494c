"""Node-to-node networking over ZeroMQ.

* ``transport``: ROUTER/DEALER addressed requests and sequenced PUB/SUB broadcast;
* ``curve``: CURVE keys and the ZAP handler that keeps out nodes without them;
* ``wire``: the name of every mesh method and broadcast topic, and their payloads.
"""
