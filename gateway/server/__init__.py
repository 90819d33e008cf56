"""The HTTP server: listening and connections, the guards in front of every request, errors
answered in the route's shape, request bodies read and parsed, drain, the worker supervisor.
Nothing here knows a provider, a route's business or a policy."""
