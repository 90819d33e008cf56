"""Coding agents through the gateway: a scripted fake upstream in every format, the clients'
invocations, and the runner (`python -m bench.agents`, see its module)."""
