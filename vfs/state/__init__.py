"""The control plane, ``state.sqlite``: the agent registry, mount records and
the audit of legacy imports. Nothing here stores workspace bytes."""
