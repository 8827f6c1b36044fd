"""A script that fails while loading: Yate and the other scripts must not notice."""
raise SystemExit(3)
