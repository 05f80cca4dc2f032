"""The generation core: a neutral request (core/request.py) in, typed events out; it knows no protocol."""
