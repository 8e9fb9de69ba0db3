"""Device tokens (OWASP "device cookies", as a JSON field): a browser or app that logged in
to an account before; it keeps the owner's logins free of strangers' lockouts, and, when the
user asks, skips the challenge for a while ("remember this device")."""
