"""What the gateway tells about itself: Prometheus metrics (`metrics`, their bounded `labels`,
the /metrics page in `export`), the access log, the cooldowns gauge (`cooldown_watch`).
`install` is the entry point: it plugs them into the app and the engine's event hooks."""
