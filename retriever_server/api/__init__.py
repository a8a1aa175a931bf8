"""The HTTP layer (FastAPI): the application, its routes, middleware and the request/response models.

app.py         `create_app(settings)`: the lifespan that loads the service off the event loop
routes.py      thin handlers: auth, call the service, map its errors to status codes
schemas.py     the request and response models, the source of /openapi.json
middleware.py  the request-body cap and the per-route metrics
"""
