"""Compatibility test: the official OpenAI Python client against a running Perimeter server.

Usage: python openai_client_test.py BASE_URL   (e.g. http://127.0.0.1:8123/v1)
Prints one line per check and a closing 'N passed, N failed' line; exits 1 on any failure.
"""
import sys
import traceback

import openai
from openai import OpenAI

BASE_URL = sys.argv[1]
client = OpenAI(base_url=BASE_URL, api_key="unused-until-keys-exist", max_retries=0, timeout=120)
results = []


def check(name):
    def wrap(fn):
        try:
            fn()
            results.append((name, None))
            print(f"ok      {name}", flush=True)
        except Exception as e:  # noqa: BLE001 - report every failure and go on
            results.append((name, e))
            print(f"FAILED  {name}: {e!r}", flush=True)
            traceback.print_exc()
        return fn
    return wrap


@check("models.list names the routed model and both embedded models")
def _():
    ids = {m.id for m in client.models.list()}
    assert {"perimeter", "smollm2-135m-instruct", "all-minilm-l6-v2"} <= ids, ids


@check("chat.completions.create (non-streaming) answers with citations")
def _():
    r = client.chat.completions.create(
        model="perimeter",
        messages=[{"role": "user", "content": "How many days of annual leave do full-time staff get?"}],
        max_tokens=48,
    )
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content.strip(), "empty answer"
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 50 and r.usage.completion_tokens > 0
    extra = r.model_extra["perimeter"]
    assert extra["decision"] == "route" and extra["backend"] == "embedded"
    sources = [c["source"] for c in extra["citations"]]
    assert any(s.endswith("internal/annual-leave.md") for s in sources), sources


@check("chat.completions.create (streaming) yields deltas, then usage")
def _():
    stream = client.chat.completions.create(
        model="perimeter",
        messages=[{"role": "user", "content": "What are the opening hours of the clinics?"}],
        max_tokens=32,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage, chunks = "", None, None, 0
    for chunk in stream:
        chunks += 1
        if chunk.choices:
            delta = chunk.choices[0].delta
            text += delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert chunks >= 3, chunks
    assert text.strip(), "no streamed text"
    assert finish in ("stop", "length"), finish
    assert usage is not None and usage.completion_tokens > 0


@check("plain gateway mode (retrieval off) answers without citations")
def _():
    r = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        extra_body={"perimeter": {"retrieval": False}},
    )
    assert r.model_extra["perimeter"]["citations"] == []


@check("embeddings.create returns unit vectors (base64 default and float)")
def _():
    r = client.embeddings.create(model="all-minilm-l6-v2", input=["first text", "second text"])
    assert len(r.data) == 2 and [d.index for d in r.data] == [0, 1]
    for d in r.data:
        assert len(d.embedding) == 384
        norm = sum(x * x for x in d.embedding) ** 0.5
        assert abs(norm - 1.0) < 1e-3, norm
    f = client.embeddings.create(model="all-minilm-l6-v2", input="first text", encoding_format="float")
    diff = max(abs(a - b) for a, b in zip(f.data[0].embedding, r.data[0].embedding))
    assert diff < 1e-5, diff
    assert r.usage.prompt_tokens > 0


@check("unknown model is a NotFoundError with an OpenAI error body")
def _():
    try:
        client.chat.completions.create(model="gpt-nope", messages=[{"role": "user", "content": "hi"}])
    except openai.NotFoundError as e:
        assert e.body["code"] == "model_not_found", e.body
        return
    raise AssertionError("no error raised")


@check("invalid parameters are a BadRequestError")
def _():
    try:
        client.chat.completions.create(model="perimeter", messages=[{"role": "user", "content": "hi"}], temperature=9)
    except openai.BadRequestError as e:
        assert e.body["param"] == "temperature", e.body
        return
    raise AssertionError("no error raised")


failed = sum(1 for _, e in results if e is not None)
print(f"{len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
