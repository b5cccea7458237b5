"""The fleet's HTTP service (`tokpulse api`): authenticated semantic search.

    from tokpulse.api import make_app, create_token, TokenVerifier
"""

from tokpulse.api.server import api_port, api_url, make_app
from tokpulse.api.tokens import TokenError, TokenInfo, TokenVerifier, create_token, list_tokens, revoke_token

__all__ = ["TokenError", "TokenInfo", "TokenVerifier", "api_port", "api_url", "create_token", "list_tokens",
           "make_app", "revoke_token"]
