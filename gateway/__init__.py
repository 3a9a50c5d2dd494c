"""The client gateway: WuKongIM clients' connections to this node.

Pure codecs: ``wkproto`` (binary WKProto v1-v5), ``jsonrpc`` (the JSON-RPC dialect),
``websocket`` (the WebSocket handshake and frames), ``session_crypto`` (key exchange
and payload encryption). ``session`` is one
connection's state machine; ``gateway`` holds every session of the node (uid index,
kicks, local delivery); ``listeners`` the TCP listener and what the listeners share, ``ws_listener`` the
WebSocket listeners;
``ports`` the narrow interfaces to the rest of the node; ``client`` Skein's own
client (tests, benchmarks).
"""
