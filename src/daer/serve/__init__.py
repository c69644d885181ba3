"""HTTP service and web page: a thin layer over the library (the library never imports it)."""
