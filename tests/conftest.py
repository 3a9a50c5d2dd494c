"""Test session setup: gevent monkey-patching first (the node code is gevent code)."""
from gevent import monkey

monkey.patch_all()
