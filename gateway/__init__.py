"""The client gateway: WuKongIM clients' connections to this node.

Pure codecs: ``wkproto`` (binary WKProto v1-v5), ``jsonrpc`` (the JSON-RPC dialect),
``session_crypto`` (key exchange and payload encryption). ``session`` is one
connection's state machine; ``gateway`` holds every session of the node (uid index,
kicks, local delivery); ``listeners`` are the TCP and WebSocket transports;
``ports`` the narrow interfaces to the rest of the node; ``client`` Skein's own
client (tests, benchmarks).
"""
