"""The HTTP side assembled: the app, its edge (headers, Host, Origin, CSRF), sessions and
rate limits: what every request passes before a feature answers it."""
