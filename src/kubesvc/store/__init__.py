"""Storage: the etcd-shaped Store interface (base) and its backends (sqlite, etcd)."""
