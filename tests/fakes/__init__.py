"""Fake cloud APIs for tests: real HTTP servers on 127.0.0.1, checked against the published specs."""
