"""Sources turn input files into facts: Dockerfile models, container specs, image facts."""
