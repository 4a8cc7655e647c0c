"""etcd: the one client module (pyetcd), pure member logic, the member layout decision."""
