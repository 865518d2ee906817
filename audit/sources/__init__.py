"""Sources turn input files into facts: Dockerfile models (dockerfile), container specs from
YAML or JSON documents (the registry in documents: Compose, Kubernetes, docker inspect, OCI
config), image facts (image). Dockerfiles and images are read by their own paths in the
engine (a Dockerfile is not YAML, an image is streamed)."""
