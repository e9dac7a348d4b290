"""The long-running service: APScheduler wiring, catch-up, signals, systemd notification."""
