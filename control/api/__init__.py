"""The JSON API (/api/): the NinjaAPI and its routers, schemas, body parser; /healthz and the log tail."""
