"""Direct notifications: webhooks after cycles, dead-man's-switch pings around them."""
