"""The request engine: from a route's `Call` to the client's answer.

The dispatcher plans the candidates and runs the attempts (retries, key rotation, fallbacks);
an attempt opens its upstream and reads it to the first content; the stream's owner sends it
on; the transport is the upstream HTTP client. The policies (routing, cooldowns, keys and
limits) and the observers (metrics, access log) are reached through protocols (`ports`,
`events`), plugged in by the app: nothing here imports one.
"""
