"""pyaudit: the static gate for images, Dockerfiles, Compose files and Kubernetes manifests."""
