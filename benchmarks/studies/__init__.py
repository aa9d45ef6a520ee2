"""Pre-registered studies and one-off measurements, each a script of its own."""
