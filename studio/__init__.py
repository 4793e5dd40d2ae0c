"""Image generation, configuration, the studio database and the services the UI calls."""
