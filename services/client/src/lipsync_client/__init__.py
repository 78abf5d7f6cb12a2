"""The client side of the proxy's binary protocols, for Python clients: tests, load generators, fuzzing."""
