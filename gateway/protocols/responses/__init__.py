"""OpenAI Responses: POST /v1/responses, its stored objects (GET, DELETE, cancel, input_items), and the
Conversations API."""
