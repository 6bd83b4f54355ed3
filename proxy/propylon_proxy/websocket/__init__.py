"""WebSocket Apis (issue 14): upgrade checks, per-connection sessions and the route tables."""
