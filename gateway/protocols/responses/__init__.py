"""The OpenAI Responses protocol (POST /v1/responses and its stored objects) and the Conversations API."""
