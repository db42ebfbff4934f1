//! Prometheus remote write (issue 16): placeholder replaced below.
