"""Project scripts that fetch reference data for the tests (`make upstream`, `make specs`)."""
