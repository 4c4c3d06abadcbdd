//! A tower/hyper/rustls HTTPS server for Kubernetes admission and conversion webhooks, with in-place certificate swaps.
