"""The account page (issue #17): static files served at /account/, a small single-page app that
calls the public JSON API exactly as a customer's SPA would."""
