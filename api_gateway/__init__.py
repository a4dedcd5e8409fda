"""The ingress: routes, auth, envelope, errors, OpenAPI."""
