"""`managerToken` check: when set, every request needs it in the `token` header (else 401).

Health checks (`/health`, `/readyz`) stay open so load balancers can probe without
secrets; `/metrics` lives on the management port, which operators firewall.
"""
from __future__ import annotations

import hmac

import falcon

OPEN_PATHS = ("/health", "/readyz", "/openapi.json")


class ManagerToken:
    def __init__(self, token: str, open_paths: tuple[str, ...] = OPEN_PATHS,
                 open_prefixes: tuple[str, ...] = ()) -> None:
        self.token = token.encode()
        self.open_paths = open_paths
        self.open_prefixes = open_prefixes

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not self.token or req.method == "OPTIONS":
            return
        if req.path in self.open_paths or req.path.startswith(self.open_prefixes or ("\0",)):
            return
        given = (req.get_header("token") or "").encode()
        if not hmac.compare_digest(given, self.token):
            raise falcon.HTTPUnauthorized(title="token required: send the manager token in the 'token' header")
