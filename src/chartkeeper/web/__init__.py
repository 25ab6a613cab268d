"""The web interface: the app factory, the technicians' pages and the REST routers."""
