"""The channel between the headless runtime and its windows (ZeroMQ, no Qt).

Stream (PUB/SUB): sample batches, tag-table additions and events, each with a session id
and a sequence number, plus a heartbeat. Requests (ROUTER/DEALER): snapshot and commands.
See docs/architecture.md for the protocol.
"""
