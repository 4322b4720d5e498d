"""The official OpenAI Python SDK, unmodified, against a running Multiplexer gateway.

Usage: python openai_sdk_check.py BASE_URL GOOD_KEY LIMITED_KEY
Prints one line per check; exits non-zero on the first failure.
"""
import sys

import openai
from openai import OpenAI

base, good, limited = sys.argv[1], sys.argv[2], sys.argv[3]
client = OpenAI(base_url=base + "/v1", api_key=good, max_retries=0)


def check(name, ok):
    print(("ok   " if ok else "FAIL ") + name)
    if not ok:
        sys.exit(1)


chat = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hello there"}], max_tokens=5)
check("chat: a ChatCompletion with content", chat.object == "chat.completion" and chat.choices[0].message.content.startswith("tok"))
check("chat: the upstream model is reported", chat.model == "upstream-a")
check("chat: usage", chat.usage is not None and chat.usage.completion_tokens == 5)

raw = client.chat.completions.with_raw_response.create(model="m", messages=[{"role": "user", "content": "x"}])
check("headers: x-multiplexer-provider and x-request-id", raw.headers.get("x-multiplexer-provider") == "a" and raw.headers.get("x-request-id"))

chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "stream"}], stream=True))
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check("streaming chat: chunks assemble to the answer", len(chunks) >= 3 and text.startswith("tok"))
check("streaming chat: no usage chunk unless asked", all(c.usage is None for c in chunks))
with_usage = list(
    client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "stream"}], stream=True, stream_options={"include_usage": True}
    )
)
check("streaming chat: usage chunk when asked", with_usage[-1].usage is not None and with_usage[-1].usage.completion_tokens == 8)

emb = client.embeddings.create(model="m", input=["one", "two"])
check("embeddings: two vectors", len(emb.data) == 2 and len(emb.data[0].embedding) == 4)

models = client.models.list()
check("models: the group and its alias", sorted(m.id for m in models.data) == ["gpt-4o-mini", "m"])

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    check("unknown model raises NotFoundError", False)
except openai.NotFoundError as e:
    check("unknown model raises NotFoundError", e.status_code == 404 and e.code == "model_not_found")

try:
    OpenAI(base_url=base + "/v1", api_key="not-a-key", max_retries=0).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}]
    )
    check("bad key raises AuthenticationError", False)
except openai.AuthenticationError as e:
    check("bad key raises AuthenticationError", e.status_code == 401 and e.code == "invalid_api_key")

try:
    c2 = OpenAI(base_url=base + "/v1", api_key=limited, max_retries=0)
    for _ in range(3):
        c2.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    check("over the key's limit raises RateLimitError", False)
except openai.RateLimitError as e:
    check("over the key's limit raises RateLimitError", e.status_code == 429 and int(e.response.headers["retry-after"]) > 0)

try:
    client.chat.completions.create(model="m", messages="not a list")
    check("a malformed request raises BadRequestError", False)
except openai.BadRequestError as e:
    check("a malformed request raises BadRequestError", e.status_code == 400 and e.param == "messages")

print("all OpenAI SDK checks passed")
