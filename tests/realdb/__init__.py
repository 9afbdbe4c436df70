"""The real-database tier: Postgres, Redis and moto's S3 server as processes, the scripts run unchanged."""
