"""How long connections to the APIs a partner's turn waits on (Telegram, the model) are kept open when idle.

aiohttp keeps idle connections for 15 s by default (httpx for 5 s). A partner who writes again after a pause
would find them closed, and against the real APIs each new connection costs a TCP and TLS handshake, two or
three round trips, in front of the first draft or the reply. Half a minute stays under the usual server-side
keep-alive timeouts; a connection the server closed meanwhile is noticed and replaced.
"""

KEEPALIVE_SECONDS = 30.0
