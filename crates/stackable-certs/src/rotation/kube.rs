//! A [`Store`](super::Store) backed by a Kubernetes Secret (feature `kube`).
