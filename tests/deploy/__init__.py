"""Tests of the deployment files (Dockerfile, compose/, compose/k8s/): no Docker needed."""
