"""Operator CLI and embedded local stack."""
