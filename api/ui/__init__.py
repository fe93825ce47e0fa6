"""The catalog page (`GET /athena/ui`): routes.py (the page and its sign-in), view.py (what
it shows, from the catalog), render.py (the HTML)."""
