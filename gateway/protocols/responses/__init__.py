"""OpenAI Responses: POST /v1/responses (stateless: the store adds the stateful fields)."""
