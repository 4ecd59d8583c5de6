"""Schemathesis hooks for scripts/test-api-fuzz.sh.

A random `model` is almost always unknown (404), so the requests would never reach retrieval,
the policy or generation. For requests whose body is a JSON object, the model becomes
`perimeter` (routed by the policy) and the answer length stays short (the embedded model is
slow on two cores); every other part of the body stays as generated, valid or not.
"""
import schemathesis


@schemathesis.hook
def map_body(ctx, body):
    if isinstance(body, dict) and "model" in body:
        body["model"] = "perimeter"
        for key in ("max_tokens", "max_completion_tokens"):
            if isinstance(body.get(key), int) and body[key] > 8:
                body[key] = 8
    return body
