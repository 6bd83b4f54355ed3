-- propylon-validated: POST a realistic order body that the Order model accepts.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"item": "green tea, loose leaf", "quantity": 3, "tags": ["a", "b", "c", "d", "e", "f", "g", "h"]}'
