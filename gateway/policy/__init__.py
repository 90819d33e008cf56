"""The policies: who may call (gateway keys), what they may spend (limits), which upstream
answers (routing) and which rests (cooldowns), kept in this process or shared in Redis. The
engine reaches them only through its ports (`gateway.engine.ports`); the app plugs them in."""
