"""The REST API: FastAPI app, dependencies, request/response schemas, one router per resource."""
