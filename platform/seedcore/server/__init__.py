"""The server process: gunicorn and the HTTP front, the tether that ends children with it."""
