"""Apps that tests run in `jobfleet worker` processes."""
