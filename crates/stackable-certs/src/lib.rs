//! CA and leaf certificate generation, inspection, Secret storage and trust-preserving rotation for Kubernetes webhooks.
