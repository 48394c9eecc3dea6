"""The console's pages, one module per page of the navigation bar."""
