"""Helpers for the orchestration tests: a fake analyzer entry point and polling utilities."""
