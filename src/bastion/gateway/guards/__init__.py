"""Request guards for the serving gateway, one module per guard.

A guard decides, before a request reaches the model, whether it may pass: who is asking,
how often, and with what. Each guard is framework-agnostic at its core (plain functions and
small classes over strings and numbers) so it can be tested without a server; ``bastion
serve`` wires them into the ASGI app.

- :mod:`bastion.gateway.guards.rate_limit`: token-bucket rate limits per client, in-process
  or shared through Redis, and the client address behind trusted reverse proxies.
- :mod:`bastion.gateway.guards.body_size`: a cap on request bodies, before anything reads them.
- :mod:`bastion.gateway.guards.auth`: the registry's API tokens and the role of each route.
- :mod:`bastion.gateway.guards.schema`: validation against the release's feature schema.
- :mod:`bastion.gateway.guards.extraction`: a PRADA-style per-client extraction detector with
  query-coverage statistics and bounded state (not wired into ``bastion serve`` yet).
- :mod:`bastion.gateway.guards.ood`: out-of-distribution rows against the reference profile
  (per-feature ranges and a density score), flag or block, and burst tracking for alerts
  (not wired into ``bastion serve`` yet).
"""
