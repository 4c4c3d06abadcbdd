//! Injects caBundle into CRDs, webhook configurations, APIServices and ConfigMaps, in-process or standalone.
