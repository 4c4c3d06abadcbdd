//! A real kube-apiserver and etcd on 127.0.0.1, started from Rust, for operator tests.
