"""The real-time WebSocket API (the reference API's protocol) and its publisher.

- :mod:`.protocol` — message parsing, replies, channel keys and events (pure);
- :mod:`.periods` — which emotion periods are complete, and their numbers (pure);
- :mod:`.store` — connections and subscriptions in the connections table;
- :mod:`.push` — sending through the API Gateway management API;
- :mod:`.service` — the ``$connect``/``$disconnect``/``$default`` routes and the idle sweeper;
- :mod:`.publisher` — DynamoDB stream records → channel events;
- :mod:`.runtime` — the composition roots of the WebSocket and publisher functions (built once per cold start).
"""
