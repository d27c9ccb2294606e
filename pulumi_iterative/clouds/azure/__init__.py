"""cloud="azure": Spot VMs in a Flexible scale set, Blob storage, a task-scoped managed
identity. The Azure SDKs are imported inside the modules that call Azure, never here."""
