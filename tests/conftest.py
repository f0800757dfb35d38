"""Fixtures shared by every test; broker and registry fixtures are in integration/conftest.py."""
