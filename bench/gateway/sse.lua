wrk.method = "POST"
wrk.body   = '{"model":"sse","stream":true,"messages":[{"role":"user","content":"Stream a short answer."}],"max_tokens":64}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-client-key-0001"
