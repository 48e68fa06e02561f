"""The gateway: the dashboard, websocket push, and the federation's REST resources."""
