"""Project scripts: the upstream files the tests read (`make upstream`, `make upstream-lock`), the import graph."""
