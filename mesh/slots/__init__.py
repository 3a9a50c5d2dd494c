"""Keyed calls to the leader of a key's slot.

* ``router``: from any node, find the slot's leader and call it, with retries;
* ``service``: the leader's side, serving ``slot.call`` through registered handlers.
"""
