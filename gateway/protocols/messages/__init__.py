"""Anthropic Messages: POST /v1/messages and /v1/messages/count_tokens, for Claude Code and the Anthropic SDKs."""
