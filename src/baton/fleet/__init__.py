"""A fleet of Baton nodes that update as one: the desired state in etcd, artifacts in S3 (or
a shared directory), rollouts in waves driven by one elected coordinator, and every node
reporting what it actually serves. etcd is the only coordinator; nothing here is consensus."""

__all__: list[str] = []
