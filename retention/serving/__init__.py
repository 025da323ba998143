"""Serving: the composite RetentionModel (pyfunc), request/response schema, and the contact ledger."""
