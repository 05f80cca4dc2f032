"""Tenants: API keys with their models, limits and priority (the keys file), the limits' arithmetic and
backends (in-process, or Redis shared by every replica), and the usage accounting per tenant, model and day.

Nothing here speaks HTTP: `gateway/api/auth.py`, `api/tenancy.py` and `api/usage.py` apply it to requests.
"""
