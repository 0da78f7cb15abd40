"""The pages and their htmx partials: the dashboard, the session page, the log viewer."""
