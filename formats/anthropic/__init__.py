"""Anthropic's Messages API: the requests and answers of its clients (Claude Code, the anthropic
SDK) and of its upstreams, both ways through chat."""
